"""Languages are resolved to Whisper's code where they enter (config, source rows, --language) and an unknown one is
refused there, naming the nearest valid codes — never first inside a DataLoader worker."""

from __future__ import annotations

import pytest

from mwc_dist import cli
from mwc_dist.config import ConfigError, load_config
from mwc_dist.languages import LanguageError, resolve_language


@pytest.mark.parametrize("value", ["es", "ES", "spanish", "Spanish", "castilian"])
def test_codes_and_names_resolve_to_whispers_code(value):
    assert resolve_language(value) == "es"


@pytest.mark.parametrize("value", ["esp", "castellano", "sp"])
def test_unknown_languages_name_the_nearest_codes(value):
    with pytest.raises(LanguageError) as err:
        resolve_language(value, "model.language")
    assert "model.language" in str(err.value) and "es (spanish)" in str(err.value)


def test_config_resolves_and_refuses(tmp_path):
    cfg = load_config(None, ["model.language=Spanish", "data.language=english"])
    assert (cfg.model.language, cfg.data.language) == ("es", "en")
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.language=castellano", "data.language=esp"])
    assert "model.language: 'castellano'" in str(err.value) and "data.language: 'esp'" in str(err.value)


@pytest.mark.parametrize("value", ["esp", "castellano", "sp"])
def test_every_command_refuses_before_any_work(tmp_path, capsys, value):
    (tmp_path / "a.txt").write_text("x")
    assert cli.main(["shard", "--source", str(tmp_path), "--out", str(tmp_path / "o"), f"data.language={value}"]) == 2
    assert not (tmp_path / "o").exists()  # refused before planning a shard
    assert "es (spanish)" in capsys.readouterr().err
    from mwc_dist.train import main as train_main

    assert train_main(["--config", "configs/default.yaml", f"model.language={value}"]) == 2
    assert "es (spanish)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["transcribe", str(tmp_path), str(tmp_path / "a.txt"), "--language", value])
    assert exit_.value.code == 2 and "es (spanish)" in capsys.readouterr().err
