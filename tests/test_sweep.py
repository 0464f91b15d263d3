"""`workbench sweep`: a grid of settings trains one named adapter each, scored side by side on val; it resumes."""

import shutil

import pytest

from workbench.cli import main
from workbench.config import Config
from workbench.engine import Engine
from workbench.eval import run_eval
from workbench.store import Store
from workbench.sweep import SweepError, parse_grid, plan_trials, run_sweep, sweep_file
from workbench.workspace import adapter_aliases, adapter_names, read_json, run_paths


def test_a_grid_names_each_trial_after_its_settings_and_random_search_draws_from_it():
    axes = parse_grid(["lr=1e-4,3e-4", "r=8,16"])
    assert axes == {"learning_rate": ["1e-4", "3e-4"], "lora_r": ["8", "16"]}
    trials = plan_trials(axes)
    assert [t.adapter for t in trials] == ["lr1e-4-r8", "lr1e-4-r16", "lr3e-4-r8", "lr3e-4-r16"]
    assert trials[1].settings == {"learning_rate": "1e-4", "lora_r": "16"}
    drawn = plan_trials(axes, sample=2, seed=1)
    assert len(drawn) == 2 and drawn == plan_trials(axes, sample=2, seed=1) and all(t in trials for t in drawn)
    for bad, why in (
        (["speed=1,2"], "unknown setting 'speed'"),
        (["lr="], "give values after '='"),
        (["lr=1", "learning_rate=2"], "already in the grid"),
        (["max_steps=1,2"], "step budget"),
        ([], "at least one grid entry"),
    ):
        with pytest.raises(SweepError, match=why):
            parse_grid(bad)


@pytest.fixture(scope="module")
def tiny(tiny_llama_folder):
    settings = {"batch_size": 8, "eval_every": 1, "checkpoint_every": 1, "patience": 5}
    return Config.model_validate(
        {"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 8}, "finetune": settings}
    )


def test_a_four_trial_sweep_leaves_four_adapters_a_table_and_answers_side_by_side(demo_index, tiny, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    grid = ["lr=1e-3,5e-3", "r=4,8"]
    table = run_sweep("demo", grid, tiny, home, budget_steps=2, promote=True, progress=False, val_limit=3)
    trials = ["lr1e-3-r4", "lr1e-3-r8", "lr5e-3-r4", "lr5e-3-r8"]
    assert adapter_names("demo", home) == sorted(trials)
    assert table["order"] == trials and read_json(sweep_file("demo", home, table["id"])) == table
    for name in trials:
        row = table["trials"][name]
        assert row["steps"] == 2 and row["best_val_loss"] > 0 and 0 <= row["val_token_f1"] <= 1
        manifest = read_json(run_paths("demo", home, name).adapter_manifest)
        assert manifest["config"]["lora_r"] == int(row["settings"]["lora_r"]) and manifest["config"]["max_steps"] == 2
    ranked = sorted(table["trials"].values(), key=lambda r: (-r["val_token_f1"], r["best_val_loss"]))
    assert table["best"] == ranked[0]["adapter"] == table["promoted"]
    assert adapter_aliases("demo", home)["ft"] == table["best"]  # promoted: ft now means the best trial

    with Store.open(home=home) as store:  # the val eval holds every trial, side by side
        answers = store.answers(eval_id=table["eval_id"])
    assert sorted({a["variant"] for a in answers}) == [f"ft:{t}" for t in sorted(trials)] and len(answers) == 12

    # two trials in one arena turn and one eval: the engine serves them by name
    engine = Engine(tiny, "demo", home)
    turn = engine.answer("How long is the return window?", [f"ft:{trials[0]}", f"ft:{trials[3]}"])
    assert turn[f"ft:{trials[0]}"].adapter_id != turn[f"ft:{trials[3]}"].adapter_id
    done = run_eval("demo", tiny, home, variants=["base", f"ft:{trials[1]}"], limit=2, engine=engine, progress=False)
    assert done["finished"] and done["stored"] == 4

    # the same command again trains nothing and keeps the table
    before = {t: run_paths("demo", home, t).adapter_manifest.stat().st_mtime_ns for t in trials}
    assert (
        main(
            [
                "sweep",
                "--name",
                "demo",
                "--home",
                str(home),
                *[part for g in grid for part in ("--grid", g)],
                "--budget-steps",
                "2",
                "--val-limit",
                "3",
                "--config",
                str(_config_file(tiny, tmp_path)),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert {t: run_paths("demo", home, t).adapter_manifest.stat().st_mtime_ns for t in trials} == before
    assert f"best: {table['best']}" in out and "val token F1" in out and out.count("*") >= 1


def test_an_interrupted_trial_resumes_from_its_checkpoint(demo_index, tiny, tmp_path, monkeypatch):
    import workbench.finetune as finetune_module

    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    real = finetune_module.finetune
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:  # the first trial dies after writing a checkpoint at step 1
            real(*args, **kwargs | {"max_steps": 1})
            run_paths("demo", home, kwargs["adapter"]).adapter_manifest.unlink()
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("demo", ["lr=1e-3"], tiny, home, budget_steps=2, progress=False, val_limit=1)
    table = run_sweep("demo", ["lr=1e-3"], tiny, home, budget_steps=2, progress=False, val_limit=1)
    assert calls[1]["resume"] is True and table["trials"]["lr1e-3"]["steps"] == 2


def _config_file(config: Config, tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path
