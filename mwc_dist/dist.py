"""Accelerator construction, seeding, printing from rank 0, and SLURM's variables -> RANK/WORLD_SIZE.

Under `accelerate launch` the launcher sets RANK/WORLD_SIZE/LOCAL_RANK. Under SLURM with one task per
process (``srun python -m mwc_dist.train``), accelerate ignores SLURM_*; ``slurm_env_to_torch()`` maps
them so torch.distributed and the shard stream see the right rank. On a machine with no GPU the
Accelerator runs on CPU with the gloo backend (ACCELERATE_USE_CPU=true, or simply no CUDA device).
"""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta

import numpy as np
import torch

from mwc_dist.loop.config import TrainConfig


def slurm_env_to_torch() -> None:
    """Export RANK/WORLD_SIZE/LOCAL_RANK from SLURM_* when a SLURM step started us without a launcher."""
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = str(local_device_index())
        os.environ.setdefault("MASTER_PORT", "29500")
        if os.environ.get("SLURM_NNODES", "1") == "1":
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")


def local_device_index() -> int:
    """This SLURM task's GPU among the ones it can see: SLURM_LOCALID, unless SLURM narrowed CUDA_VISIBLE_DEVICES.

    With ``--gpus-per-task``/``--gpu-bind`` every task sees only its own GPU(s), renumbered from 0, so the local
    task id would name a device that is not there; the task's own first device is then index 0.
    """
    local = int(os.environ.get("SLURM_LOCALID", "0"))
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    narrowed = "SLURM_GPUS_PER_TASK" in os.environ or (visible and local >= len(visible))
    return 0 if narrowed else local


def build_accelerator(t: TrainConfig, report_to: list[str]):
    """The run's Accelerator from the train section (precision, accumulation, clipping, timeout, output folder)
    and the trackers to report to; gloo when on CPU."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    slurm_env_to_torch()
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # DeepSpeed on CPU needs gloo named explicitly (docs/DISTRIBUTED.md); naming a backend in one process would
    # make accelerate expect a process group, so only when the launcher started several
    backend = "gloo" if use_cpu and distributed else None
    kwargs = [InitProcessGroupKwargs(backend=backend, timeout=timedelta(seconds=t.dist_timeout_seconds))]
    trackers = list(report_to)
    # a DeepSpeed config file leaves these "auto": they come from the mwc config
    for var, value in (
        ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", t.gradient_accumulation_steps),
        ("ACCELERATE_GRADIENT_CLIPPING", t.max_grad_norm),
    ):
        if os.environ.get(var) == "auto":
            os.environ[var] = str(value)
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    check_precision(t.mixed_precision, use_cpu)
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")  # from `accelerate launch --mixed_precision` or its YAML
    if launcher and launcher != t.mixed_precision and os.environ.get("RANK", "0") == "0":
        print(
            f"note: the accelerate launcher asked for mixed_precision={launcher}; train.mixed_precision="
            f"{t.mixed_precision} from the mwc config is what this run uses",
            flush=True,
        )
    accelerator = Accelerator(
        cpu=use_cpu and not deepspeed,  # cpu=True would silently replace DeepSpeed with plain MULTI_CPU
        mixed_precision=t.mixed_precision,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        log_with=trackers or None,
        kwargs_handlers=kwargs,
        project_config=ProjectConfiguration(project_dir=t.output_dir, logging_dir=t.output_dir),
    )
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # we stream our own batches, so DeepSpeed cannot infer the micro-batch size
        ds = plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = t.per_device_train_batch_size
        ds["train_batch_size"] = (
            t.per_device_train_batch_size * t.gradient_accumulation_steps * accelerator.num_processes
        )
    check_world(accelerator.num_processes)
    return accelerator


def check_world(joined: int) -> None:
    """Refuse a run whose processes did not all join: what the launcher was asked for, or started, vs the world."""
    asked = launcher_asked_processes()
    if asked is not None and asked != joined:  # e.g. `accelerate launch --cpu --num_processes 2`
        raise ValueError(
            f"accelerate launch was asked for {asked} processes but {joined} joined "
            f"(with --cpu, or a MULTI_CPU config, accelerate starts one process). On CPUs run `ACCELERATE_USE_CPU=true "
            f"accelerate launch --multi_gpu --num_processes {asked} --num_machines 1 -m mwc_dist.train ...` or "
            f"`accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m mwc_dist.train ...` "
            f"(docs/DISTRIBUTED.md)"
        )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != joined:  # the silent trap: N independent "rank 0 of 1" runs
        raise RuntimeError(
            f"the launcher started {launched} processes but this one sees a world of {joined}. "
            "On a machine without GPUs run `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu ...` "
            "(see accelerate_configs/README.md)."
        )


def launcher_asked_processes(pid: int | None = None) -> int | None:
    """The ``--num_processes`` of the `accelerate launch` command that started this process (its parent's command
    line), or None when no such launcher is our parent or it named no count."""
    args = _launch_args(pid or os.getppid())
    for n, arg in enumerate(args or ()):
        flag, _, value = arg.partition("=")
        if flag in ("--num_processes", "--num-processes"):
            value = value or (args[n + 1] if n + 1 < len(args) else "")
            return int(value) if value.isdigit() else None
    return None


def _launch_args(pid: int) -> list[str] | None:
    """The command line of process ``pid`` when it is `accelerate launch`; None otherwise."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "launch" not in args or not any(os.path.basename(a).startswith("accelerate") for a in args):
        return None
    return args


def build_process_state():
    """Rank and world for collective work outside training (``mwc pseudo-label``): accelerate's PartialState,
    gloo on CPU, with the launcher check of build_accelerator."""
    from accelerate import PartialState

    slurm_env_to_torch()
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    state = PartialState(cpu=use_cpu, **({"backend": "gloo"} if use_cpu and launched > 1 else {}))
    if launched != state.num_processes:
        raise RuntimeError(
            f"the launcher started {launched} processes but this one sees a world of {state.num_processes}; on a "
            "machine without GPUs run `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu ...`"
        )
    return state


def check_precision(mixed_precision: str, use_cpu: bool) -> None:
    """fp16 needs a GPU: accelerate would run it on CPU as plain fp32 without a word (no autocast, no scaler)."""
    if mixed_precision == "fp16" and use_cpu:
        raise ValueError(
            "train.mixed_precision=fp16 (the seed's training.fp16: true) needs a CUDA GPU, and this run is on CPU: "
            "accelerate would silently train in fp32. Set train.mixed_precision=bf16 (autocast, works on CPU) or "
            "train.mixed_precision=no."
        )


def describe_precision(accelerator) -> str:
    """What the run really computes in: the requested precision and whether autocast/a loss scaler took effect."""
    mp = accelerator.mixed_precision
    if mp == "no":
        return "fp32 (train.mixed_precision=no)"
    if accelerator.distributed_type.value == "DEEPSPEED":
        return f"{mp} (DeepSpeed engine: {mp} weights and activations)"
    how = "autocast" if accelerator.native_amp else "NOT applied"
    scaler = ", dynamic loss scaling" if accelerator.scaler is not None else ""
    return f"{mp} ({how} on {accelerator.device.type}{scaler})"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def print0(accelerator, *args, **kwargs) -> None:
    if accelerator.is_main_process:
        print(*args, **kwargs, flush=True)


# ------------------------------------------------------------------------------------- refusals
def say_refusal(message: str) -> None:
    """A refused config or data problem, said once: by rank 0 only, and where torch elastic launched us
    (`accelerate launch`, `torchrun`) after the launcher's own failure report, so the message, not the
    ChildFailedError banner, is the last thing the user reads. Every rank then exits 2 without a traceback.

    The launcher (torch elastic, or accelerate's one-process launcher, which raises CalledProcessError) prints its
    report once its processes have exited, so rank 0 leaves a small process behind
    that waits for the launcher to finish, then writes the message to the same stderr. Under SLURM (whose step
    ends every process left behind) and without a launcher, the message is written at once.
    """
    import sys

    if launch_rank() != 0:
        if "TORCHELASTIC_RUN_ID" in os.environ:  # the launcher stops every process once one exits: give rank 0,
            time.sleep(2.0)  # refusing the same input, time to leave its message behind first
        return
    text = f"error: {message}\n".encode()
    launcher = os.getppid()
    reports = "TORCHELASTIC_RUN_ID" in os.environ or _launch_args(launcher) is not None  # prints its own failure
    if not reports or "SLURM_JOB_ID" in os.environ or not _alive(launcher):
        sys.stderr.write(text.decode())
        sys.stderr.flush()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:  # the child only waits and writes (no torch, no Python-level I/O): safe after threads
        try:
            os.setsid()
            # the launcher's own stderr (a terminal, a pipe, a log file: appended to); every inherited descriptor
            # closed, so a launcher that reads our stderr through a pipe (accelerate's one-process launcher) sees
            # its end and finishes
            out = os.open(f"/proc/{launcher}/fd/2", os.O_WRONLY | os.O_APPEND)
            os.closerange(0, out)
            os.closerange(out + 1, 1024)
            deadline = time.monotonic() + 300
            while _alive(launcher) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.write(out, text)
        finally:
            os._exit(0)


def launch_rank() -> int:
    """This process's global rank as its launcher set it (torch elastic's RANK, else SLURM's task id), before any
    process group exists."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def _alive(pid: int) -> bool:
    """The process runs (not gone, not a zombie waiting for its parent to collect its exit status)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
