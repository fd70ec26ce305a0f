"""The checkpoint files: atomic save, rotate (last K), find the latest complete one, load; the best evaluated model.

A checkpoint folder ``<output_dir>/checkpoint-<step>/`` holds:

    model/                 a loadable HF folder: safetensors weights (or the LoRA adapter), configs, processor
    state/                 accelerate.save_state: optimizer, scheduler, grad scaler, RNG of every rank
    trainer_state.json     TrainState: step, epoch, position in the epoch's data of every rank, best metric
    config.yaml            the run's resolved config

    scheduler.json         the LR scheduler's state (JSON: nothing in a checkpoint is unpickled on resume)
    files.json             every other file's size, checked before a checkpoint is trusted

Every rank writes its own part into ``.tmp-checkpoint-<step>`` (collective); after a barrier the main
process lists the files, fsyncs them, writes ``trainer_state.json`` last and renames the folder into
place, so a folder named ``checkpoint-*`` is complete. A crash mid-write leaves only a ``.tmp-*`` folder,
removed next time; a ``checkpoint-*`` whose files do not match files.json (a truncated copy, a full disk)
is passed over for the previous one, with a message.

``<output_dir>/best/`` is the model (a loadable HF folder, or the LoRA adapter) of the best evaluation so far,
written when it is evaluated, whatever the checkpoint cadence, with ``best.json`` (step, metric, value);
written beside and renamed into place like a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mwc_dist.models.lora import check_adapter, is_peft
from mwc_dist.resume.state import TrainState

STATE_FILE = "trainer_state.json"


FILES = "files.json"


def problem(path: Path) -> str | None:
    """Why ``path`` is not a complete checkpoint, or None when it is."""
    if not path.is_dir():
        return "not a folder"
    for need in (STATE_FILE, "model", "state"):
        if not (path / need).exists():
            return f"{need} is missing"
    if not (path / FILES).is_file():
        return None  # written before files.json existed: the names are all there is to check
    try:
        expected = json.loads((path / FILES).read_text())
    except (OSError, ValueError) as exc:
        return f"{FILES} is unreadable ({exc})"
    for rel, size in expected.items():
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        if f.stat().st_size != size:
            return f"{rel} has {f.stat().st_size} bytes, {size} were written"
        if rel.endswith(".safetensors") and not _safetensors_ok(f):
            return f"{rel} is not a readable safetensors file"
    return None


def _safetensors_ok(path: Path) -> bool:
    """safetensors itself checks that the header parses and the tensors end exactly at the end of the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt"):
            return True
    except (SafetensorError, OSError):
        return False


def is_complete(path: Path) -> bool:
    return problem(path) is None


def _numbered(output_dir: Path) -> list[Path]:
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return [p for p in _numbered(output_dir) if is_complete(p)]


def resolve_resume(spec: str | None, output_dir: Path, log=print) -> Path | None:
    """``None``/``""`` -> no resume; ``latest`` -> newest complete checkpoint (or None); else that folder."""
    if not spec:
        return None
    if spec == "latest":
        for path in reversed(_numbered(output_dir)):
            why = problem(path)
            if why is None:
                return path
            log(f"warning: {path} is incomplete ({why}); trying the one before it")
        return None
    path = Path(spec)
    why = problem(path)
    if why is not None:
        raise ValueError(
            f"checkpoint.resume_from_checkpoint: {path} is not a complete checkpoint ({why}); "
            f"use 'latest' (the newest complete one) or another checkpoint-* folder"
        )
    return path


def _fsync_tree(root: Path) -> dict[str, int]:
    """fsync every file and folder under root (the rename that follows must not outlive the data); their sizes."""
    sizes = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            f = Path(dirpath) / name
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            sizes[str(f.relative_to(root))] = f.stat().st_size
        _fsync_dir(Path(dirpath))
    return sizes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator,
    model,
    processor,
    scheduler,
    state: TrainState,
    output_dir: Path,
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Collective: every rank calls it. Returns the checkpoint folder."""
    from accelerate.utils import gather_object

    is_main = accelerator.is_main_process
    final = Path(output_dir) / f"checkpoint-{state.step}"
    tmp = Path(output_dir) / f".tmp-checkpoint-{state.step}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"), safe_serialization=True)  # collective; per-rank RNG files
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3
    positions = gather_object([(accelerator.process_index, state.position(accelerator.process_index))])
    if is_main:
        state.saved_by(dict(positions))  # every rank's data position, and the world size that wrote them
        _write_model(tmp / "model", accelerator.unwrap_model(model), state_dict, processor)
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        sizes = _fsync_tree(tmp)
        (tmp / FILES).write_text(json.dumps(sizes, indent=1))
        text = state.to_json()
        with open(tmp / STATE_FILE, "w") as fh:  # last: marks the folder complete
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(Path(output_dir))
        rotate(Path(output_dir), keep_last)
    accelerator.wait_for_everyone()
    return final


def _write_model(folder: Path, unwrapped, state_dict: dict, processor) -> None:
    unwrapped.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    if is_peft(unwrapped):  # an adapter folder: never let an empty one pass as a checkpoint
        check_adapter(folder)
    processor.save_pretrained(folder)


BEST_DIR, BEST_FILE = "best", "best.json"


def save_best(accelerator, model, processor, output_dir: Path, info: dict[str, Any]) -> Path:
    """Collective: ``<output_dir>/best/`` = this model, with ``info`` (step, metric, value) in best.json."""
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3
    best, tmp = Path(output_dir) / BEST_DIR, Path(output_dir) / f".tmp-{BEST_DIR}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        _write_model(tmp, accelerator.unwrap_model(model), state_dict, processor)
        (tmp / BEST_FILE).write_text(json.dumps(info, indent=2))
        _fsync_tree(tmp)
        old = Path(output_dir) / f".old-{BEST_DIR}"
        shutil.rmtree(old, ignore_errors=True)
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        _fsync_dir(Path(output_dir))
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return best


def read_best(output_dir: Path) -> dict[str, Any] | None:
    """best.json of ``<output_dir>/best/``, or None when there is no complete one."""
    path = Path(output_dir) / BEST_DIR / BEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def rotate(output_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints; clear stale temp folders."""
    found = list_checkpoints(output_dir)
    for path in found[: max(0, len(found) - keep_last)]:
        shutil.rmtree(path)
    for stale in output_dir.glob(".tmp-checkpoint-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(accelerator, scheduler, path: Path) -> TrainState:
    """Collective: restores model, optimizer, scheduler, scaler and RNG; returns the TrainState.

    accelerate reads its files with torch.load(weights_only=True); the scheduler comes from JSON.
    """
    accelerator.load_state(str(Path(path) / "state"))
    scheduler.load_state_dict(json.loads((Path(path) / "scheduler.json").read_text()))
    return TrainState.from_file(Path(path) / STATE_FILE)
