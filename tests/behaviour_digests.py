"""Behaviour digests: fixed-seed 2-process training runs, their losses and final weight digests, as JSON.

    python tests/behaviour_digests.py OUT.json [--root CHECKOUT]

A refactor that must not change behaviour runs this on the checkout before and after and compares the two files
(``diff``): every loss logged and every rank's weight digest must be equal. The runs (tiny-random, 60 espeak clips,
`accelerate launch` with 2 gloo processes):

- ddp: gradient accumulation 2 + SpecAugment
- kd: a 1-decoder-layer student distilled from a 2-layer teacher (alpha 0.5)
- lora: LoRA adapters, merged at the end
- endless: a resampled mix of two shard folders (weights 1:3)
- resumed: 4 steps, stopped, resumed from its checkpoint to 8

``--root`` imports and launches that checkout's ``mwc_dist`` (default: this one); the corpus is made by the checkout
that runs the script, so both sides train on the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_run import CPU_2PROC, run_args  # noqa: E402

COMMON = (
    "train.per_device_train_batch_size=4",
    "train.learning_rate=1e-3",
    "train.warmup_steps=2",
    "train.max_steps=8",
    "train.eval_steps=-1",
    "train.seed=7",
)


def runs(shards: Path, work: Path) -> dict[str, list[list[str]]]:
    """name -> the override lists of its launches, in order."""
    from mwc_dist.models.build import materialize_preset
    from mwc_dist.models.student import make_student_folder

    teacher = materialize_preset("tiny-random", seed=11)
    student, _ = make_student_folder(str(teacher), 1, str(work / "student"))
    return {
        "ddp": [["train.gradient_accumulation_steps=2", "train.spec_augment=true", "checkpoint.save_strategy=no"]],
        "kd": [
            [
                f"model.base_model={student}",
                "model.use_distillation=true",
                f"model.teacher_model={teacher}",
                "model.distillation_alpha=0.5",
                "checkpoint.save_strategy=no",
            ]
        ],
        "lora": [["model.use_lora=true", "train.learning_rate=1e-2", "checkpoint.save_strategy=no"]],
        "endless": [
            [f"data.mix_shard_dirs=[{shards},{shards}]", "data.mix_weights=[1,3]", "checkpoint.save_strategy=no"]
        ],
        "resumed": [
            ["train.max_steps=4", "checkpoint.save_strategy=steps", "checkpoint.save_steps=4"],
            ["checkpoint.save_strategy=steps", "checkpoint.save_steps=4", "checkpoint.resume_from_checkpoint=latest"],
        ],
    }


def launch(root: Path, shards: Path, out: Path, overrides: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), ACCELERATE_USE_CPU="true")
    accelerate = Path(sys.executable).parent / "accelerate"
    args = run_args(shards, out, *COMMON, *overrides)
    cmd = [str(accelerate), "launch", *CPU_2PROC, "-m", "mwc_dist.train", *args]
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(overrides)}: exit {done.returncode}\n{done.stderr[-3000:]}")


def digest(out: Path) -> dict:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [[r["step"], r["loss"]] + ([r["kl"]] if "kl" in r else []) for r in rows if "loss" in r]
    summary = json.loads((out / "run_summary.json").read_text())
    return {"losses": losses, "param_digests": summary["param_digests"], "steps": summary["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--only", nargs="*", help="run names (default: all)")
    args = parser.parse_args()
    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source
    from mwc_dist.demo.corpus import make_demo_corpus

    work = Path(tempfile.mkdtemp(prefix="digests-"))
    make_demo_corpus(work / "data", count=60, test_fraction=0.1, progress=False)  # as the tests' demo_shards
    shards = work / "shards"
    config = DataConfig(source=str(work / "data"), max_duration_seconds=10, shard_samples=9)
    shard_source(config, shards, workers=1, progress=False)
    result = {}
    for name, launches in runs(shards, work).items():
        if args.only and name not in args.only:
            continue
        out = work / "runs" / name
        for overrides in launches:
            launch(Path(args.root), shards, out, overrides)
        result[name] = digest(out)
        print(name, result[name]["param_digests"][0][:16], f"{len(result[name]['losses'])} losses", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
