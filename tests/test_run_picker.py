"""Runs and their steps, and switching the run the app serves without restarting it: new conversations move to the
chosen run, a conversation already started keeps its own, and the tabs read the run when they act."""

import shutil
from types import SimpleNamespace

import gradio as gr
import pytest

from workbench.config import Config
from workbench.data.upload import prepare_upload
from workbench.retrieval.index import build_index
from workbench.runs import RunState, run_states
from workbench.session import Arena, ArenaError
from workbench.ui.eval_tab import EvalTab
from workbench.workspace import run_paths

KETTLES = "# Kettles\n\n## Return window\nA Skylark kettle may be returned within 45 days of delivery, unused.\n"


@pytest.fixture
def home(demo_index, tmp_path):
    """The prepared and indexed demo, and a second run `kettles` prepared from an upload (no index)."""
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    upload = tmp_path / "kettles.md"
    upload.write_text(KETTLES)
    prepare_upload("kettles", [upload], home=home, progress=False)
    return home


def test_run_states_come_from_the_files_each_step_leaves_and_the_store(home):
    assert run_states(home) == [RunState("demo", indexed=True), RunState("kettles")]
    (run_paths("kettles", home).adapter).mkdir(parents=True)
    (run_paths("kettles", home).adapter / "adapter_config.json").write_text("{}")
    (home / "runs" / ".demo.staging").mkdir()  # a step's staging folder is no run
    (home / "runs" / "empty").mkdir()  # nor a folder without prepared data
    store = SimpleNamespace(evals=lambda: [{"run": "demo", "stored": 4}, {"run": "kettles", "stored": 0}])
    labels = [state.label for state in run_states(home, store)]
    assert labels == ["demo · prepared, indexed, evaluated", "kettles · prepared, trained"]
    assert run_states(home / "nowhere") == []


def test_switching_moves_new_conversations_and_the_tabs_without_a_restart(home, tiny_llama_folder):
    from workbench.ui.app import build_app

    config = Config.model_validate(
        {"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 4, "variants": ["base", "rag"]}}
    )
    arena = Arena(config, "demo", home)
    app = build_app(home, "demo", config, arena=arena)
    pick = next(fn.fn for fn in app.fns.values() if fn.api_name == "on_pick_run")
    started = arena.session("rita", ["base", "rag"])
    assert started.run == "demo" and arena.references

    report, _eval, _drift, body, *_ = pick("kettles")
    assert "Data quality report: kettles" in report and "Run kettles chosen" in body
    assert arena.name == "kettles" and arena.version == 1 and arena.references == {}  # no QA set: no references
    assert arena.choices() == ["base"]  # its own engine: no index yet, so no rag
    with pytest.raises(ArenaError, match="rag cannot answer here"):
        arena.session("rita", ["base", "rag"])
    build_index("kettles", config, home, progress=False)
    arena.reload("demo")  # a build of another run leaves the engine alone
    assert arena.version == 1 and arena.choices() == ["base"]
    arena.reload("kettles")
    assert arena.version == 2 and arena.choices() == ["base", "rag"]
    assert arena.session("rita", ["base", "rag"]).run == "kettles"
    assert started.run == "demo" and started.engine.name == "demo"  # the started conversation keeps its run

    pick("no-such-run")  # not a prepared run: nothing switches
    assert arena.name == "kettles" and arena.version == 2
    with gr.Blocks():
        evals = EvalTab(home, None, config, store=arena.store, current=lambda: arena.name)
    assert evals.name == "kettles"
    arena.switch("demo")
    assert evals.name == "demo" and evals.on_open(None, None)[evals.variants].choices == [
        ("base", "base"),
        ("prompt", "prompt"),
        ("rag", "rag"),
    ]
    arena.store.close()
