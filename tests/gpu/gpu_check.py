"""`make gpu-check`: what only a GPU can show, in one script (under 8 minutes on one H100/H200), one summary table.

    python tests/gpu/gpu_check.py              # on a CUDA machine; without CUDA it prints SKIP and exits 0
    python tests/gpu/gpu_check.py --cpu-smoke  # the same script on CPU where CPU can do it (fp16, CUDA NF4 and
                                               # NCCL rows say SKIP): checks the script itself before a GPU run

Rows (each a real run of mwc-dist's own training loop, `python -m mwc_dist.train`, on shards this script writes
from synthetic audio, so nothing needs espeak-ng, the hub or a dataset on the GPU machine):
  nccl           torch.distributed with NCCL on the device: init and an all_reduce (world of 1, one GPU)
  fp16 full      train.mixed_precision=fp16: 3 steps; the grad scaler's scale reported (must be finite)
  bf16 full      train.mixed_precision=bf16: 3 steps
  bf16 qlora     bitsandbytes NF4 (CUDA kernels) + LoRA, bf16 compute: 3 steps
  zero2 bf16     DeepSpeed ZeRO-2 through accelerate (1 process): 3 steps
  loss goes down 30 steps of bf16 full fine-tuning on 16 clips: the last 5 steps' mean loss < 0.7 x the first 5's
  throughput     bench/gpu_throughput.py (samples/s, MFU, peak memory per preset and method)
Exit status 1 when any row fails; the table says which and why.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WORDS = "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince".split()


def make_shards(root: Path, n: int = 32) -> Path:
    """n clips of chords (a few seconds each) with number-word transcripts, sharded by mwc-dist itself."""
    import soundfile as sf

    from mwc_dist.config import DataConfig
    from mwc_dist.data.shard import shard_source

    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), 4)]
        t = np.arange(int(16000 * (2 + i % 3))) / 16000
        freqs = [200 + 40 * WORDS.index(w) for w in words]
        wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) * 0.2 + rng.normal(0, 0.01, t.shape)
        sf.write(src / f"clip{i:03d}.wav", wave.astype(np.float32), 16000)
        rows.append((f"clip{i:03d}.wav", " ".join(words)))
    with open(src / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file_name", "text"), *rows])
    out = root / "shards"
    shard_source(
        DataConfig(
            source=str(src),
            shard_samples=4,
            max_duration_seconds=10,
            train_split_ratio=1.0,
            validation_split_ratio=0.0,
            language="es",
        ),
        out,
        workers=1,
        progress=False,
    )
    return out


def train(
    name: str,
    shards: Path,
    out: Path,
    *overrides: str,
    launcher: list[str] | None = None,
    env: dict | None = None,
    timeout: int = 240,
) -> dict:
    """One training run through the real entry point; its run_summary.json, losses and log tail."""
    base = [
        f"data.shard_dir={shards}",
        f"train.output_dir={out}",
        "model.language=es",
        "train.eval_steps=-1",
        "train.log_every_steps=1",
        "data.num_workers=1",
        "checkpoint.save_strategy=no",
        "train.per_device_train_batch_size=4",
        "export.export_onnx=false",
        "export.export_ct2=false",
    ]
    cmd = [*(launcher or [sys.executable]), "-m", "mwc_dist.train", *base, *overrides]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=out.parent,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.perf_counter() - start
    result = {"name": name, "ok": proc.returncode == 0, "seconds": took, "log": (proc.stdout + proc.stderr)[-1500:]}
    if result["ok"]:
        result["summary"] = json.loads((out / "run_summary.json").read_text())
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        result["losses"] = [r["loss"] for r in rows if "loss" in r]
    return result


def check_nccl() -> dict:
    import torch
    import torch.distributed as dist

    start = time.perf_counter()
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=torch.device("cuda", 0))
    x = torch.ones(1024, device="cuda")
    dist.all_reduce(x)
    torch.cuda.synchronize()
    ok = bool((x == 1).all())
    dist.destroy_process_group()
    return {
        "name": "nccl",
        "ok": ok,
        "seconds": time.perf_counter() - start,
        "detail": f"backend nccl, all_reduce ok={ok}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="run what CPU can, to check this script")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print("SKIP: no CUDA device (torch.cuda.is_available() is False); `--cpu-smoke` runs the CPU-capable rows")
        return 0
    preset = "whisper-base-random" if cuda else "tiny-random"
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mwc-gpu-check-") as tmp:
        tmp = Path(tmp)
        shards = make_shards(tmp / "data", n=32 if cuda else 16)
        model = [f"model.base_model={preset}"]
        short = [*model, "train.max_steps=3", "train.learning_rate=1e-4"]

        def skip(name: str, why: str) -> None:
            rows.append({"name": name, "ok": None, "seconds": 0.0, "detail": f"SKIP: {why}"})

        if cuda:
            rows.append(check_nccl())
            rows.append(train("fp16 full", shards, tmp / "fp16", *short, "train.mixed_precision=fp16"))
        else:
            skip("nccl", "needs CUDA")
            skip("fp16 full", "fp16 needs CUDA (refused on CPU by design)")
        rows.append(train("bf16 full", shards, tmp / "bf16", *short, "train.mixed_precision=bf16"))
        if cuda:
            rows.append(
                train(
                    "bf16 qlora",
                    shards,
                    tmp / "qlora",
                    *short,
                    "train.mixed_precision=bf16",
                    "model.use_4bit_quantization=true",
                    "model.bnb_4bit_compute_dtype=bfloat16",
                    "model.lora_r=16",
                )
            )
        else:
            skip("bf16 qlora", "bitsandbytes' CUDA NF4 kernels need CUDA")
        accelerate = [
            str(Path(sys.executable).parent / "accelerate"),
            "launch",
            "--config_file",
            str(ROOT / "accelerate_configs" / "zero2.yaml"),
            "--num_processes",
            "1",
        ]
        rows.append(
            train(
                "zero2 bf16" if cuda else "zero2 fp32",
                shards,
                tmp / "zero2",
                *short,
                *(["train.mixed_precision=bf16"] if cuda else []),
                launcher=accelerate,
            )
        )
        steps = 30
        down = train(
            "loss goes down",
            shards,
            tmp / "down",
            *model,
            f"train.max_steps={steps}",
            f"train.learning_rate={1e-3 if cuda else 3e-3}",
            "train.warmup_steps=3",
            "train.lr_scheduler_type=constant_with_warmup",
            *(["train.mixed_precision=bf16"] if cuda else []),
        )
        if down["ok"]:
            first, last = np.mean(down["losses"][:5]), np.mean(down["losses"][-5:])
            down["ok"] = bool(last < 0.7 * first)
            down["detail"] = f"mean loss, first 5 steps {first:.3f} -> last 5 {last:.3f} (needs < 0.7x)"
        rows.append(down)
        if args.skip_bench:
            skip("throughput", "--skip-bench")
        else:
            bench = [sys.executable, str(ROOT / "bench" / "gpu_throughput.py")]
            if not cuda:
                bench += ["--device", "cpu", "--presets", "tiny-random", "--steps", "2", "--batch", "2"]
            start = time.perf_counter()
            proc = subprocess.run(bench, capture_output=True, text=True, timeout=420, cwd=ROOT)
            rows.append(
                {
                    "name": "throughput",
                    "ok": proc.returncode == 0,
                    "seconds": time.perf_counter() - start,
                    "detail": "\n".join(proc.stdout.strip().splitlines()[-8:]) or proc.stderr[-800:],
                }
            )
    print(
        f"\n# mwc-dist gpu-check on {torch.cuda.get_device_name(0) if cuda else 'CPU (--cpu-smoke)'}, "
        f"torch {torch.__version__}, model {preset}\n"
    )
    print("| check | result | seconds | detail |\n| --- | --- | --- | --- |")
    for r in rows:
        detail = r.get("detail")
        if detail is None and r["ok"]:
            s = r["summary"]
            detail = (
                f"{s['precision']}; world {s['world_size']}; {s['steps']} steps; "
                f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}"
            )
        elif detail is None:
            detail = "FAILED: " + r["log"].strip().splitlines()[-1] if r.get("log") else "FAILED"
        status = "skip" if r["ok"] is None else ("ok" if r["ok"] else "FAIL")
        print(f"| {r['name']} | {status} | {r['seconds']:.1f} | {detail.replace(chr(10), '<br>')} |")
    failed = [r["name"] for r in rows if r["ok"] is False]
    for r in rows:
        if r["ok"] is False and r.get("log"):
            print(f"\n--- {r['name']} (log tail)\n{r['log']}")
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
