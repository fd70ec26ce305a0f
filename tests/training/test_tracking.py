"""W&B (offline) and TensorBoard from the loop, read back from the run files; the curves PNG; no secrets written."""

import glob
import json
import struct
from pathlib import Path


def _wandb_records(path: Path):
    """Records of a .wandb file (LevelDB log blocks of protobuf Records); wandb 0.31 ships no Python reader."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf = path.read_bytes(), 7, b""  # 7-byte header ":W&B" + magic + version
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf + chunk if kind == 4 else chunk)
            buf = b""
            yield record
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk


def test_wandb_offline_tensorboard_png_and_no_secrets(tmp_path, demo_shards, monkeypatch):
    from mwc_dist.config import load_config
    from mwc_dist.train import Trainer

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "sekrit-key-0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("HF_TOKEN", "hf_sekrit_token")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    cfg = load_config(
        None,
        [
            f"data.shard_dir={demo_shards}",
            f"train.output_dir={out}",
            "data.num_workers=1",
            "model.language=es",
            "train.max_steps=4",
            "train.log_every_steps=1",
            "train.eval_steps=2",
            "train.eval_max_samples=4",
            "train.generation_max_length=10",
            "checkpoint.save_strategy=no",
            "tracking.report_to=[wandb,tensorboard]",
            "tracking.run_name=demo-run",
            "tracking.tags=[cpu,test]",
            "tracking.group=g1",
        ],
    )
    trainer = Trainer(cfg)
    trainer.setup()
    trainer.train()

    run_file = Path(glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))[0])
    config, history, run = {}, [], None
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
        elif kind == "run":
            run = record.run
    assert run.display_name == "demo-run" and list(run.tags) == ["cpu", "test"] and run.run_group == "g1"
    assert config["train.max_steps"] == 4 and config["model.language"] == "es"
    losses = [float(h["loss"]) for h in history if "loss" in h]
    assert len(losses) >= 4
    assert any("eval/wer" in h for h in history)
    tables = sorted(
        glob.glob(
            str(out / "wandb" / "offline-run-*" / "files" / "media" / "table" / "eval" / "predictions_*.table.json")
        )
    )
    assert len(tables) == 2
    table = json.loads(Path(tables[0]).read_text())
    assert table["columns"] == ["key", "reference", "prediction"] and len(table["data"]) == 4
    assert list((out / "mwc-dist").rglob("events.out.tfevents.*"))  # TensorBoard
    # the PNG of the curves is a real image
    import matplotlib.image as mpimg

    image = mpimg.imread(out / "training_curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 600 and image.std() > 0.01
    # secrets never reach any file of the run
    for path in out.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert b"sekrit" not in blob, path
    assert not (tmp_path / "wandb").exists()  # W&B writes inside the run folder
