import re
from pathlib import Path

import pytest
import yaml

from mwc_dist.config import SEED_KEYS, Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
SEED_README = ROOT.parent / "shared" / "seed" / "MWC_README.md"


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, Config)


def test_default_yaml_lists_every_key_with_its_default():
    tree = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert tree == Config().to_dict()


def test_seed_config_maps_through_the_table():
    cfg = load_config(ROOT / "configs" / "seed_training_config.yaml")
    assert cfg.data.source == "MrDragonFox/Elise" and cfg.data.source_type == "huggingface"
    assert cfg.data.hf_split == "train"
    assert cfg.data.formats == ["wav", "mp3", "flac", "ogg", "m4a", "aac", "wma"]
    assert cfg.model.use_distillation and cfg.model.distillation_alpha == 0.5
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj", "k_proj", "out_proj"]
    assert cfg.train.mixed_precision == "fp16" and cfg.train.learning_rate == 5e-5
    assert cfg.train.gradient_accumulation_steps == 4 and cfg.data.num_workers == 8
    assert cfg.checkpoint.save_steps == 5 and cfg.checkpoint.resume_from_checkpoint.endswith("checkpoint-25")
    assert cfg.export.onnx_opset_version == 14 and cfg.export.onnx_optimize
    # keys with no effect are reported by name, not dropped silently
    assert any("data.target_sample_rate" in n and "no effect" in n for n in cfg.notes)
    assert any("data.audio_path" in n for n in cfg.notes)


def test_seed_local_folder_selects_audio_path(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text("data:\n  use_huggingface: false\n  audio_path: /data/x.csv\n  huggingface_dataset: a/b\n")
    cfg = load_config(path)
    assert cfg.data.source == "/data/x.csv" and cfg.data.source_type == "auto"
    assert any("huggingface_dataset" in n for n in cfg.notes)


def _readme_yaml_keys() -> set[str]:
    keys = set()
    text = SEED_README.read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        tree = yaml.safe_load(block) or {}
        for section, body in tree.items():
            for key in body or {}:
                keys.add(f"{section}.{key}")
    return keys


@pytest.mark.skipif(not SEED_README.is_file(), reason="the seed README lives in ../shared (not in a bare clone)")
def test_every_key_in_the_seed_readme_is_mapped_or_native():
    native = {f"{s}.{k}" for s, body in Config().to_dict().items() for k in body}
    keys = _readme_yaml_keys()
    assert len(keys) > 40
    assert not (keys - set(SEED_KEYS) - native)
    shipped = yaml.safe_load((ROOT / "configs" / "seed_training_config.yaml").read_text())
    shipped_keys = {f"{s}.{k}" for s, body in shipped.items() for k in body}
    assert keys <= shipped_keys


def test_overrides_are_typed_and_win_over_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  max_duration_seconds: 30\n")
    cfg = load_config(
        path,
        [
            "data.max_duration_seconds=20",
            "data.normalize=false",
            "model.lora_target_modules=[q_proj,v_proj]",
            "train.learning_rate=3e-4",
        ],
    )
    assert cfg.data.max_duration_seconds == 20.0 and cfg.data.normalize is False
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.train.learning_rate == pytest.approx(3e-4)


def test_all_problems_in_one_error_with_suggestions():
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            [
                "data.max_duraton_seconds=3",
                "train.lr=1",
                "modle.x=1",
                "train.num_epochs=abc",
                "data.train_split_ratio=0.5",
            ],
        )
    msg = str(err.value)
    assert msg.startswith("5 configuration problem(s)")
    assert "did you mean 'data.max_duration_seconds'" in msg
    assert "did you mean 'train.learning_rate'" in msg
    assert "unknown section 'modle'" in msg and "did you mean 'model'" in msg
    assert "train.num_epochs: expected an integer, got 'abc'" in msg
    assert "sum to 1" in msg


def test_seed_key_with_no_effect_still_rejects_a_harmful_value():
    with pytest.raises(ConfigError, match="16000"):
        load_config(None, ["data.target_sample_rate=22050"])


def test_seed_and_native_key_for_the_same_setting_conflict():
    with pytest.raises(ConfigError, match="both set"):
        load_config(None, {"training.fp16": True, "train.mixed_precision": "bf16"})


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_bare_no_stays_a_string(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("checkpoint:\n  save_strategy: no\ntrain:\n  mixed_precision: no\n")
    cfg = load_config(path)
    assert cfg.checkpoint.save_strategy == "no" and cfg.train.mixed_precision == "no"
    assert load_config(None, ["checkpoint.save_strategy=no"]).checkpoint.save_strategy == "no"


def test_the_readme_mixing_and_augmentation_example_loads(tmp_path):
    text = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "augment:" in b]
    (tmp_path / "noise").mkdir()
    path = tmp_path / "run.yaml"
    path.write_text(block.replace("noise_dir: noise/", f"noise_dir: {tmp_path / 'noise'}"))
    cfg = load_config(path)
    assert cfg.augment.speed_factors == [0.9, 1.0, 1.1] and cfg.augment.noise_dir == str(tmp_path / "noise")
    assert (cfg.augment.noise_prob, cfg.augment.snr_db_min, cfg.augment.snr_db_max) == (0.5, 5, 20)
    assert cfg.train.spec_augment is True and cfg.train.max_steps == 20000
    assert (cfg.data.mix_shard_dirs, cfg.data.mix_weights, cfg.data.mix_temperature) == (
        ["shards/es", "shards/ca"],
        [3.0, 1.0],
        1.0,
    )
    with pytest.raises(ConfigError, match=r"augment\.snr_db_min \(30\.0\) must not exceed augment\.snr_db_max"):
        load_config(path, ["augment.snr_db_min=30.0"])


def test_every_key_is_documented_where_it_is_defined():
    """`mwc config` reads each key's documentation from the comment beside its field (in the module of the component
    that owns the section): none is empty."""
    from mwc_dist.config_docs import field_docs, sections

    docs = {f"{name}.{key}": doc for name, cls in sections().items() for key, doc in field_docs(cls).items()}
    assert [key for key, doc in docs.items() if not doc] == []
    assert len(docs) == sum(len(v) for v in Config().to_dict().values())


def test_mwc_config_prints_every_default_as_loadable_yaml(tmp_path, capsys):
    """The printed file is YAML whose values are the defaults, so it can start a run.yaml as it is."""
    from mwc_dist.cli import main

    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed) == Config().to_dict()
    assert "  learning_rate: 5.0e-05  # AdamW's peak learning rate\n" in printed
    (tmp_path / "run.yaml").write_text(printed.replace("learning_rate: 5.0e-05", "learning_rate: 3.0e-04"))
    assert load_config(tmp_path / "run.yaml").train.learning_rate == 3e-4
    assert main(["config", "train"]) == 0 and set(yaml.safe_load(capsys.readouterr().out)) == {"train"}
    assert main(["config", "trian"]) == 2
    assert "unknown config section(s) ['trian']: choose from data, model, train" in capsys.readouterr().err


def test_each_section_lives_and_is_validated_with_its_component():
    """The sections are defined in the packages that read them (mwc_dist/config.py only puts them together), and each
    validates itself: a bad value is reported by its own section's check, naming the key."""
    from mwc_dist.config_docs import sections

    homes = {name: cls.__module__ for name, cls in sections().items()}
    assert homes == {
        "data": "mwc_dist.data.config",
        "model": "mwc_dist.models.config",
        "train": "mwc_dist.loop.config",
        "checkpoint": "mwc_dist.resume.config",
        "export": "mwc_dist.export",
        "augment": "mwc_dist.audio.augment",
        "tracking": "mwc_dist.tracking",
    }
    bad = {
        "data": ("shard_samples", 0),
        "model": ("task", "transcribir"),
        "train": ("learning_rate", 0.0),
        "checkpoint": ("save_strategy", "often"),
        "export": ("onnx_opset_version", 11),
        "augment": ("noise_prob", 2.0),
        "tracking": ("report_to", ["mlflow"]),
    }
    for name, (field, value) in bad.items():
        section, problems = getattr(Config(), name), []
        setattr(section, field, value)
        section.validate(problems)
        assert len(problems) == 1 and problems[0].startswith(f"{name}.{field}"), (name, problems)
        with pytest.raises(ConfigError, match=rf"{name}\.{field}"):
            load_config(None, {f"{name}.{field}": value})
