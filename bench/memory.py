"""Peak memory of QLoRA vs full fine-tuning of the same Whisper model, a few training steps each.

    python bench/memory.py [--preset whisper-base-random] [--steps 2] [--batch 2]

Each mode runs in its own process, with gradient checkpointing on in both (what memory-bound training
uses). Memory is the peak anonymous resident memory (RssAnon, sampled every 2 ms from model loading to
the last step) minus the same after imports and input creation: what the model, its gradients, the
optimizer state and the activations add. On a GPU machine the same script reports torch.cuda.max_memory_allocated.
Each pair runs twice: with glibc's defaults, and with a fixed mmap threshold (MALLOC_MMAP_THRESHOLD_) so
that freed tensors leave RSS at once (glibc otherwise keeps up to ~1 GiB of freed activations in its heap
here, which is the allocator's high-water mark, not what the training holds).
Baseline: full fine-tuning (AdamW on every parameter) in the same run. Last line: ratio=<QLoRA / full>,
the second measurement (the CPU analogue of torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# glibc raises its mmap threshold after large frees (up to 32 MiB), so freed activations stay in the heap and
# in RSS: RSS then measures the allocator's high-water mark, not live tensors. A fixed threshold returns
# every freed tensor of 128 KiB or more to the OS at once, so RSS follows live memory.
LIVE = "freed tensors returned (mmap 128 KiB)"
ALLOCATORS = {"glibc defaults": {}, LIVE: {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def worker(mode: str, preset: str, steps: int, batch: int) -> dict:
    import torch

    from mwc_dist.config import ModelConfig
    from mwc_dist.models.build import build_model, materialize_preset

    device = "cuda" if torch.cuda.is_available() else "cpu"
    materialize_preset(preset, 0)  # written once, outside the measurement
    torch.manual_seed(0)
    features = torch.randn(batch, 80, 3000, device=device)
    labels = torch.randint(0, 50000, (batch, 32), device=device)
    base = _status("RssAnon")
    cfg = ModelConfig(base_model=preset, use_4bit_quantization=mode == "qlora", bnb_4bit_compute_dtype="float32")
    model, _ = build_model(cfg, seed=0, device=device, gradient_checkpointing=True)
    if mode == "full":  # both modes recompute activations: what memory-bound training does
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.to(device).train()
    sampler = _PeakSampler() if device == "cpu" else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    start = time.perf_counter()
    for _ in range(steps):
        model(input_features=features, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    out = {
        "mode": mode,
        "seconds_per_step": (time.perf_counter() - start) / steps,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if device == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        out["peak_bytes"] = sampler.stop() - base
    return out


class _PeakSampler:
    """Highest anonymous resident memory (RssAnon) seen, sampled every 2 ms in a thread.

    RssAnon, not VmRSS: safetensors memory-maps the weights file, and its pages count in VmRSS although
    they are the file's, not the training's.
    """

    def __init__(self):
        import threading

        self.peak, self.running = _status("RssAnon"), True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.peak = max(self.peak, _status("RssAnon"))
            time.sleep(0.002)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return max(self.peak, _status("RssAnon"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="whisper-base-random")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--worker", choices=["full", "qlora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.preset, args.steps, args.batch)))
        return
    results = {}
    for allocator, env in ALLOCATORS.items():
        for mode in ("full", "qlora"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    "--preset",
                    args.preset,
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
                check=True,
                env=dict(os.environ, **env),
            )
            results[allocator, mode] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{mode:<6} {args.preset}, {allocator:<32}: peak +{r['peak_bytes'] / 2**20:8.1f} MiB, "
                f"{r['trainable'] / 1e6:7.2f} M trainable, {r['seconds_per_step']:.2f} s/step "
                f"(batch {args.batch} x 30 s)"
            )
        ratio = results[allocator, "qlora"]["peak_bytes"] / results[allocator, "full"]["peak_bytes"]
        print(f"  QLoRA / full with {allocator}: {ratio:.3f}")
    print("baseline: full fine-tuning (AdamW on all parameters) of the same model, same batch, same run")
    print("ratio: with freed tensors returned to the OS (what torch.cuda.max_memory_allocated measures on a GPU)")
    print(f"ratio={results[LIVE, 'qlora']['peak_bytes'] / results[LIVE, 'full']['peak_bytes']:.3f}")


if __name__ == "__main__":
    main()
