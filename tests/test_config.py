from pathlib import Path

import pytest

from workbench.config import Config, ConfigError, config_from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))  # judges/ holds rubrics


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_starts_with_its_command(path):
    assert isinstance(load_config(path), Config)
    assert path.read_text().startswith("# workbench "), "each config opens with the command that uses it"


def test_default_yaml_spells_out_the_defaults_plus_the_demos_training_budget():
    demo = load_config(CONFIGS[0].parent / "default.yaml")
    assert demo.finetune.max_steps == 60
    demo.finetune.max_steps = None
    assert demo == Config()


def test_all_problems_are_reported_with_their_field_paths():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"prepare": {"seed": "x", "near_dup_threshold": 2, "colour": 1, "split": {"train": 0.5}}})
    message = str(info.value)
    for field in ("prepare.seed", "prepare.near_dup_threshold", "prepare.colour", "prepare.split"):
        assert field in message
    assert "4 invalid setting(s)" in message


def test_unknown_pii_kind_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="prepare.redact.0"):
        config_from_dict({"prepare": {"redact": ["passport"]}})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_fields_carry_their_docstrings_as_descriptions():
    field = Config.model_fields["prepare"].annotation.model_fields["near_dup_threshold"]
    assert "near-duplicates" in field.description


def test_chat_variants_must_be_built_in_or_configured_remotes():
    with pytest.raises(ConfigError, match="remote:vllm"):
        config_from_dict({"chat": {"variants": ["base", "remote:vllm"]}})
    remote = {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}
    config = config_from_dict({"chat": {"variants": ["base", "remote:vllm"], "remotes": {"vllm": remote}}})
    assert config.chat.variants == ["base", "remote:vllm"]
