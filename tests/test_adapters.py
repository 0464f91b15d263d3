"""Named adapters: the layout `runs/NAME/adapters/ADAPTER/`, the old layout's migration, the aliases `ft` / `ft_rag`,
and the variants that name an adapter."""

import json

import pytest

from workbench.config import Config, ConfigError, config_from_dict
from workbench.runs import run_states, tuned_variants
from workbench.variants import Variant, VariantUnavailable, is_tuned, uses_retrieval, variant
from workbench.workspace import (
    adapter_aliases,
    adapter_names,
    default_adapter,
    read_json,
    read_metrics,
    run_paths,
    write_json_atomic,
)

OLD_FT = {
    "adapter/adapter_config.json": "{}",
    "adapter/adapter_model.safetensors": "weights",
    "checkpoint/state.pt": "state",
    "metrics.csv": "step,train_loss\n1,2.5\n",
    "events.jsonl": '{"step": 1, "kind": "best", "message": "m"}\n',
}


def _old_run(home, raft: bool = True):
    """A run folder as training left it before named adapters: the ft adapter's files at the top, raft's in
    `raft/`, both summaries in the run manifest."""
    root = home / "runs" / "old"
    files = dict(OLD_FT) | ({f"raft/{k}": v for k, v in OLD_FT.items()} if raft else {})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "quality.md").write_text("# quality\n")
    (root / "documents.jsonl").write_text("")
    manifest = {"name": "old", "prepare": {"x": 1}, "finetune": {"recipe": "qa", "steps": 7}}
    if raft:
        manifest["finetune_rag"] = {"recipe": "raft", "steps": 3}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_an_old_run_folder_is_moved_to_named_adapters_once_and_loads_as_before(tmp_path):
    home = tmp_path / "home"
    root = _old_run(home)
    assert adapter_names("old", home) == ["default", "raft"]
    for adapter, steps, recipe in (("default", 7, "qa"), ("raft", 3, "raft")):
        paths = run_paths("old", home, adapter)
        assert (paths.adapter / "adapter_model.safetensors").read_text() == "weights"
        assert (paths.checkpoint / "state.pt").read_text() == "state"
        assert read_metrics(paths.metrics) == [{"step": 1, "train_loss": 2.5}]
        assert read_json(paths.adapter_manifest) == {"recipe": recipe, "steps": steps, "adapter": adapter}
    assert sorted(p.name for p in root.iterdir()) == ["adapters", "documents.jsonl", "manifest.json", "quality.md"]
    assert read_json(root / "manifest.json") == {"name": "old", "prepare": {"x": 1}}
    assert adapter_aliases("old", home) == {"ft": "default", "ft_rag": "raft"}
    assert run_states(home)[0].trained
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    run_paths("old", home)  # nothing left to move: nothing is touched
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert not list(root.rglob(".*"))  # no staging folder left behind


def test_without_a_raft_adapter_ft_rag_is_the_default_adapter_shown_sources(tmp_path):
    home = tmp_path / "home"
    _old_run(home, raft=False)
    assert adapter_names("old", home) == ["default"]
    assert adapter_aliases("old", home) == {"ft": "default", "ft_rag": "default"}
    assert tuned_variants("old", home) == ["ft", "ft_rag"]
    assert tuned_variants("old", home, indexed=False) == ["ft"]


def test_the_promoted_adapter_is_what_ft_means_and_every_other_is_offered_by_name(tmp_path):
    home = tmp_path / "home"
    _old_run(home, raft=False)
    for trial in ("trial-1", "trial-2"):
        folder = run_paths("old", home, trial).adapter
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
    paths = run_paths("old", home)
    write_json_atomic(paths.manifest, read_json(paths.manifest) | {"default_adapter": "trial-2"})
    assert default_adapter("old", home) == "trial-2"
    assert adapter_aliases("old", home) == {"ft": "trial-2", "ft_rag": "trial-2"}
    assert tuned_variants("old", home) == [
        "ft",
        "ft_rag",
        "ft:default",
        "ft_rag:default",
        "ft:trial-1",
        "ft_rag:trial-1",
    ]


def test_variants_name_their_adapter_and_bad_names_are_clear_errors():
    chat = Config().chat
    assert variant("ft:trial-3", chat) == Variant("ft:trial-3", tuned=True, adapter="trial-3")
    assert variant("ft_rag:raft", chat) == Variant("ft_rag:raft", tuned=True, adapter="raft", retrieval=True)
    assert variant("ft", chat) == Variant("ft", tuned=True)  # the run's default adapter (the engine resolves it)
    assert [is_tuned(v) for v in ("ft", "ft:a", "ft_rag:a", "rag", "base", "remote:x")] == [1, 1, 1, 0, 0, 0]
    assert [uses_retrieval(v) for v in ("ft", "ft:a", "ft_rag:a", "rag", "ft_rag")] == [0, 0, 1, 1, 1]
    with pytest.raises(VariantUnavailable, match="invalid adapter name"):
        variant("ft:../x", chat)
    with pytest.raises(VariantUnavailable, match="ft:ADAPTER"):
        variant("lora:x", chat)
    assert config_from_dict({"chat": {"variants": ["base", "ft:trial-1", "ft_rag:raft"]}}).chat.variants[1] == (
        "ft:trial-1"
    )
    with pytest.raises(ConfigError, match="ft:ADAPTER"):
        config_from_dict({"chat": {"variants": ["base", "ft:"]}})


def test_finetune_refuses_a_bad_adapter_name_on_the_command_line(capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit):
        main(["finetune", "--name", "demo", "--adapter", "../elsewhere"])
    assert "invalid adapter name" in capsys.readouterr().err
