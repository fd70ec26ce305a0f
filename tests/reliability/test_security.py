"""No pickle from files a user did not create; secrets never written to disk."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parents[2]
SECRETS = {
    "WANDB_API_KEY": "wandb-sekrit-0123456789abcdef0123456789abcdef",
    "HF_TOKEN": "hf_SekritTokenXYZ987",
    "HUGGING_FACE_HUB_TOKEN": "hf_OtherSekrit555",
}


def test_no_unsafe_deserialisation_in_the_code():
    """Static: no pickle/marshal/dill imports, and every torch.load passes weights_only=True."""
    for path in (ROOT / "mwc_dist").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"pickle", "cPickle", "dill", "marshal", "joblib"} & set(names), f"{path}: imports {names}"
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "load"
                and getattr(getattr(node.func, "value", None), "id", None) == "torch"
            ):
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, (
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
                )


def test_resume_reads_no_pickle(tmp_path, demo_shards, monkeypatch):
    """A real save + resume: every torch.load call is weights_only=True and nothing in the checkpoint needs more."""
    from accelerate.utils import load as accelerate_load

    from mwc_dist.config import load_config
    from mwc_dist.train import Trainer

    args = [
        f"data.shard_dir={demo_shards}",
        f"train.output_dir={tmp_path / 'run'}",
        "data.num_workers=1",
        "model.language=es",
        "train.eval_steps=-1",
        "checkpoint.save_strategy=steps",
        "checkpoint.save_steps=2",
    ]
    first = Trainer(load_config(None, [*args, "train.max_steps=2"]))
    first.setup()
    first.train()
    ckpt = tmp_path / "run" / "checkpoint-2"
    for f in ckpt.rglob("*"):
        if f.is_file() and f.suffix not in (".safetensors", ".json", ".yaml", ".txt", ".tiktoken", ".model", ".md"):
            accelerate_load(f, map_location="cpu")  # weights_only=True with accelerate's numpy allowlist: no objects

    calls = []
    real_load = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    second = Trainer(load_config(None, [*args, "train.max_steps=4", "checkpoint.resume_from_checkpoint=latest"]))
    second.setup()
    assert second.state.step == 2
    assert calls and all(c is True for c in calls), calls
    assert not list(ckpt.rglob("custom_checkpoint_*"))  # the scheduler is JSON, not a pickled object


def test_secrets_never_reach_disk(tmp_path, demo_shards):
    """Train + evaluate + export with secrets in the environment: no file under the run folder contains one."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", **SECRETS)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mwc_dist.train",
            f"data.shard_dir={demo_shards}",
            f"train.output_dir={out}",
            "data.num_workers=1",
            "model.language=es",
            "train.max_steps=2",
            "train.eval_steps=2",
            "train.eval_max_samples=2",
            "train.generation_max_length=8",
            "checkpoint.save_strategy=steps",
            "checkpoint.save_steps=2",
            "tracking.report_to=[wandb,tensorboard]",
            "export.export_pytorch=true",
        ],
        env=env,
        capture_output=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:].decode(errors="replace")
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert (out / "final" / "model.safetensors").is_file() and list((out / "exports").rglob("pytorch_model.bin"))
    assert any(".wandb" in f.name for f in files) and any(f.name == "config.yaml" for f in files)
    for f in files:
        data = f.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name} written into {f}"
    for stream in (proc.stdout, proc.stderr):
        for value in SECRETS.values():
            assert value.encode() not in stream
