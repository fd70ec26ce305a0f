"""GPU training throughput: samples/s, audio-hours per hour and MFU, whisper-small and -medium sized, bf16.

    python bench/gpu_throughput.py                       # on a CUDA machine: small + medium x full/LoRA/QLoRA
    python bench/gpu_throughput.py --device cpu --presets tiny-random --steps 3 --batch 2   # smoke test here

Random-weight models of the real sizes (presets in mwc_dist/models/build.py; nothing from the hub), 30-s
inputs (1500 encoder positions), 64-token labels, AdamW, one step = forward + backward + optimizer step,
under bf16 autocast (QLoRA: NF4 base weights, bf16 compute). The log-mel runs on the device inside the
step, as in training. Timed after warm-up with device synchronisation.

MFU = model FLOPs per second / the device's peak dense bf16 FLOPs (H100/H200 SXM: 989 TFLOP/s; pass
--peak-tflops for another device). Model FLOPs per sample: 2 x params x tokens for the forward (encoder
params x 1500 + decoder params x 64) plus attention (4 x positions^2 x d_model per layer), times 3 for full
fine-tuning (forward + backward for inputs and weights) and times 2 for LoRA/QLoRA (no weight gradients
for the frozen base).

The last line is `ratio=<x>`: bf16 samples/s over fp32 samples/s for the first preset's full fine-tune
(the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwc_dist.audio.features import LogMel  # noqa: E402
from mwc_dist.config import ModelConfig  # noqa: E402
from mwc_dist.models.build import build_model  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
LABEL_TOKENS = 64


def model_flops_per_sample(model, trainable_only: bool) -> float:
    cfg = model.config
    enc = sum(p.numel() for n, p in model.named_parameters() if ".encoder." in f".{n}" and "lora_" not in n)
    dec = sum(p.numel() for n, p in model.named_parameters() if ".decoder." in f".{n}" and "lora_" not in n)
    src = cfg.max_source_positions
    forward = 2 * (enc * src + dec * LABEL_TOKENS)
    forward += cfg.encoder_layers * 4 * src * src * cfg.d_model
    forward += cfg.decoder_layers * 4 * (LABEL_TOKENS * LABEL_TOKENS + LABEL_TOKENS * src) * cfg.d_model
    return forward * (2 if trainable_only else 3)


def measure(preset: str, method: str, device: str, batch: int, steps: int, dtype) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(
        base_model=preset,
        use_lora=method == "lora",
        use_4bit_quantization=method == "qlora",
        bnb_4bit_compute_dtype="bfloat16",
    )
    model, _ = build_model(cfg, seed=0, device=device)
    model.to(device).train()
    window = model.config.max_source_positions * 2 / 100  # seconds of audio the encoder sees
    log_mel = LogMel(model.config.num_mel_bins, window).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    audio = torch.randn(batch, int(window * 16000), device=device) * 0.1
    vocab = model.config.vocab_size
    labels = torch.randint(0, min(vocab, 50000), (batch, LABEL_TOKENS), device=device)

    def step():
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            loss = model(input_features=log_mel(audio), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    flops = model_flops_per_sample(model, trainable_only=method != "full") * batch / seconds
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    model = opt = None  # free the device memory before the next preset
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "samples_s": batch / seconds,
        "audio_h_per_h": batch * window / seconds,
        "tflops": flops / 1e12,
        "step_s": seconds,
        "memory_gib": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--presets",
        default=None,
        help="default: whisper-small-random,whisper-medium-random on CUDA, tiny-random (a smoke test) on CPU",
    )
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--batch", type=int, default=None, help="default: 16 on CUDA, 2 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default: 10 on CUDA, 2 on CPU")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if not gpu:
        print("no CUDA device: a CPU smoke test of the script (tiny-random); the numbers that matter need a GPU")
    args.presets = args.presets or ("whisper-small-random,whisper-medium-random" if gpu else "tiny-random")
    args.batch = args.batch or (16 if gpu else 2)
    args.steps = args.steps or (10 if gpu else 2)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    print(f"device: {name}; peak bf16 {peak or '?'} TFLOP/s; batch {args.batch}, {args.steps} timed steps")
    presets = args.presets.split(",")
    first = None
    for preset in presets:
        for method in args.methods.split(","):
            r = measure(preset, method, args.device, args.batch, args.steps, torch.bfloat16)
            mfu = f"{100 * r['tflops'] / peak:5.1f}%" if peak else "  n/a"
            print(
                f"  {preset:<22} {method:<6} bf16  {r['samples_s']:8.2f} samples/s  "
                f"{r['audio_h_per_h']:9.1f} audio-h/h  "
                f"{r['tflops']:7.2f} TFLOP/s  MFU {mfu}  {r['memory_gib']:6.1f} GiB peak"
            )
            if first is None and method == "full":
                first = (preset, r)
    preset, bf16 = first
    fp32 = measure(preset, "full", args.device, args.batch, args.steps, torch.float32)
    print(f"  {preset:<22} full   fp32  {fp32['samples_s']:8.2f} samples/s  (the baseline)")
    print(f"baseline: {preset} full fine-tune in fp32, same batch, same run")
    print(f"ratio={bf16['samples_s'] / fp32['samples_s']:.2f}")


if __name__ == "__main__":
    main()
