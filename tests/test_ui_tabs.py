import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from workbench.config import Config, FinetuneConfig
from workbench.training_job import training_job
from workbench.ui.index_tab import IndexTab
from workbench.ui.train_tab import TrainTab, alerts_html, loss_frame, perplexity_frame
from workbench.workspace import run_paths


@pytest.fixture
def home(demo_index, tmp_path):
    """A copy of the prepared and indexed demo workspace that a test may change."""
    shutil.copytree(demo_index[0], tmp_path / "home")
    return tmp_path / "home"


def _config(tiny_llama_folder) -> Config:
    probe = tiny_llama_folder.parent / "probe.txt"
    probe.write_text("Plain general prose for the forgetting probe. It has only a couple of sentences.\n")
    settings = {"batch_size": 8, "max_length": 128, "eval_every": 2, "general_text": str(probe)}
    return Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "finetune": settings})


def _app(home, config):
    with gr.Blocks() as app:
        with gr.Tab("Train"):
            train = TrainTab(home, "demo", config, lambda name: training_job(name, home))
        with gr.Tab("Index"):
            index = IndexTab(home, "demo", config)
    return app, train, index


def test_both_tabs_build_with_one_documented_input_per_setting(home, tiny_llama_folder):
    config = _config(tiny_llama_folder)
    app, train, index = _app(home, config)
    assert app.get_config_file()["components"], "the app serialises for the browser"
    fields = FinetuneConfig.model_fields
    assert list(train.fields) == list(fields)
    for name, component in train.fields.items():
        assert component.info == " ".join(fields[name].description.split()) and component.info
    assert isinstance(train.fields["recipe"], gr.Dropdown) and train.fields["recipe"].value == "qa"
    assert [choice for choice, _ in train.fields["recipe"].choices] == ["qa", "qa+docs", "paraphrase", "raft"]
    assert isinstance(train.fields["system_prompt"], gr.Textbox)
    assert isinstance(train.fields["lora_r"], gr.Number) and train.fields["lora_r"].precision == 0
    assert train.fields["max_length"].value == 128 and train.run.value == index.run.value == "demo"
    assert "| Chunks |" in index.stats.value and "Test MRR" in index.stats.value
    assert index.stats.value.startswith("| Statistic | Value |\n|---|---|\n")  # a header row that says something


def test_train_tab_validates_starts_refuses_a_second_start_and_cancels(home, tiny_llama_folder):
    _, tab, _ = _app(home, _config(tiny_llama_folder))
    form = {name: component.value for name, component in tab.fields.items()}

    bad = tab.on_start("demo", False, "", *(form | {"lora_r": 0, "learning_rate": -1}).values())
    assert "finetune.lora_r: Input should be greater than or equal to 1" in bad[tab.message]
    assert "finetune.learning_rate" in bad[tab.message] and "Not started" in bad[tab.message]
    assert training_job("demo", home).status().state == "idle"

    assert "invalid adapter name" in tab.on_start("demo", False, "../x", *form.values())[tab.message]
    started = tab.on_start("demo", False, "", *(form | {"max_steps": 6}).values())
    assert "Started training" in started[tab.message] and started[tab.cancel].interactive
    assert not started[tab.start].interactive
    again = tab.on_start("demo", False, "other", *form.values())
    assert "already training" in again[tab.message]
    cancelled = tab.on_cancel("demo")
    assert "Stopping after the current step" in cancelled[tab.message] and not cancelled[tab.cancel].interactive
    assert training_job("demo", home).wait(120)

    refreshed = tab.on_refresh("demo")
    assert "stopped on request" in refreshed[tab.progress] and "step 1 / 6" in refreshed[tab.progress]
    assert refreshed[tab.losses]["curve"].tolist() == ["train loss"] and refreshed[tab.start].interactive
    assert "step 1: stop requested" in refreshed[tab.alerts]
    assert "Nothing is training" in tab.on_cancel("demo")[tab.message]
    assert "No prepared run" in tab.on_start(None, False, "", *form.values())[tab.message]


def test_train_tab_runs_a_sweep_shows_its_table_and_overlays_the_trials_curves(home, tiny_llama_folder):
    val = run_paths("demo", home).split("val")
    val.write_text("".join(val.read_text().splitlines(keepends=True)[:4]))  # a short val eval
    _, tab, _ = _app(home, _config(tiny_llama_folder))
    form = {name: component.value for name, component in tab.fields.items()}
    bad = tab.on_sweep("demo", "speed=1,2", None, 2, False, *form.values())
    assert "Not started" in bad[tab.message] and "unknown setting &#x27;speed&#x27;" in bad[tab.message]
    started = tab.on_sweep("demo", "lr=1e-3,5e-3\n", None, 2, True, *form.values())
    assert "2 trials (lr1e-3, lr5e-3)" in started[tab.message] and not started[tab.sweep_start].interactive
    job = training_job("demo", home)
    assert job.wait(240)
    done = tab.on_refresh("demo")
    status = job.status()
    assert status.state == "finished" and status.trials == ("lr1e-3", "lr5e-3"), job.log_file.read_text()[-2000:]
    assert (
        "sweep of 2 trials" in done[tab.progress] and f"best trial: <b>{status.summary['best']}" in done[tab.progress]
    )
    table = done[tab.sweep_table]
    assert table["adapter"].tolist() == ["lr1e-3", "lr5e-3"] and table["best"].tolist().count("*") == 1
    assert table["steps"].tolist() == [2, 2] and table["val token F1"].notna().all()
    assert sorted(done[tab.compare].choices) == [("lr1e-3", "lr1e-3"), ("lr5e-3", "lr5e-3")]
    figure = tab.on_compare("demo", ["lr1e-3", "lr5e-3"])[tab.overlay]
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["lr1e-3 (1)", "lr5e-3 (1)"]  # evaluated once, at step 2
    assert all(list(line.get_xdata()) == [2] and line.get_marker() == "o" for line in lines)  # one point shows
    assert len({line.get_color() for line in lines}) == 2 and tab.on_compare("demo", [])[tab.overlay] is None
    assert f"The variant ft answers with adapter <b>{status.summary['best']}</b>" in done[tab.progress]  # promoted


def test_curves_and_alerts_render_for_the_plots_and_escaped():
    rows = [
        {"step": 1, "train_loss": 3.0, "val_loss": None, "val_perplexity": None},
        {"step": 2, "train_loss": 2.5, "val_loss": 2.75, "val_perplexity": 15.6},
    ]
    losses = loss_frame(rows)
    assert losses.values.tolist() == [[1, 3.0, "train loss"], [2, 2.5, "train loss"], [2, 2.75, "val loss"]]
    assert perplexity_frame(rows).values.tolist() == [[2, 15.6]]
    empty = gr.LinePlot(x="step", y="loss", color="curve").postprocess(loss_frame([]))
    assert empty.data == [] and empty.datatypes == {"step": "quantitative", "loss": "quantitative", "curve": "nominal"}

    events = [
        {"step": 2, "kind": "best", "message": "new best val loss 2.7500 at step 2"},
        {"step": 3, "kind": "spike", "message": "loss <script>alert(1)</script> & rising"},
    ]
    html = alerts_html(events)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; rising" in html and "<script" not in html
    assert "new best" not in html and alerts_html(events[:1]) == "<p>No alerts.</p>"


def test_index_tab_updates_with_stats_and_searches_escaped_chunks(home):
    config = Config()
    documents = run_paths("demo", home).documents
    rows = [json.loads(line) for line in documents.read_text().splitlines()]
    rows[0]["text"] += "\n\nThe Zephyrine calibration token is <script>alert('x')</script> and nothing else.\n"
    documents.write_text("".join(json.dumps(row) + "\n" for row in rows))
    shutil.copytree(run_paths("demo", home).root, run_paths("unindexed", home).root)
    built = []
    _, _, tab = _app(home, config)
    tab.on_built = built.append

    message, stats = tab.on_update("demo")
    assert "updated" in message and built == ["demo"]
    assert "| Build | update:" in stats and "reused" in stats and "Test recall | @1 " in stats

    results = tab.on_search("demo", "Zephyrine calibration token", 3)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in results and "<script" not in results
    assert "#1 · score" in results and f"{rows[0]['title']}" in results

    assert "type a question" in tab.on_search("demo", "  ", 3)
    assert tab.stats_for("unindexed").startswith("No index yet")
    assert "run `workbench index --name unindexed`" in tab.on_search("unindexed", "price", 3)


def test_an_export_with_no_rows_offers_nothing_to_download(tmp_path):
    from tests.test_report import stored_eval
    from workbench.session import Arena
    from workbench.ui.report_tab import ReportTab

    stored_eval(tmp_path, {"base": [0.2, 0.3]}, ["fact"] * 2)  # eval answers, no arena votes
    arena = Arena(Config(), "r1", tmp_path)
    with gr.Blocks(), gr.Tab("Report") as tab:
        report = ReportTab(arena, tab)
    note, exported = report.on_export("dpo")
    assert not exported["visible"] and "No dpo rows in run r1 yet (DPO pairs and SFT examples come from voted" in note
    note, exported = report.on_export("evals")
    assert exported["visible"] and "2 evals row(s) of run r1" in note
    arena.store.close()


def test_report_tab_renders_the_report_escaped_with_downloads(tmp_path):
    from tests.test_report import add_arena, stored_eval
    from workbench.session import Arena
    from workbench.ui.report_tab import LATEST, ReportTab

    stored_eval(tmp_path, {"base": [0.2, 0.3, 0.1, 0.2] * 2, "rag": [0.6, 0.7, 0.5, 0.6] * 2}, ["fact"] * 8)
    add_arena(tmp_path)
    arena = Arena(Config(), "r1", tmp_path)
    with gr.Blocks(), gr.Tab("Report") as tab:
        report = ReportTab(arena, tab)
    quiet = {"progress": lambda *a, **k: None}
    picker, drift, body, html, md, js, ratings, csv = report.on_refresh(LATEST, "product", None, **quiet)
    read = {
        kind: Path(button["value"]).read_text(encoding="utf-8")
        for kind, button in (("html", html), ("md", md), ("json", js))
    }
    assert [value for _, value in picker["choices"]] == [LATEST, "e1"] and "8 questions" in picker["choices"][1][0]
    assert "Decision" in body and "By product" in body
    assert body.count("<svg") >= 3 and "<script" not in body
    assert json.loads(read["json"])["decision"]["recommendation"] == "rag" and "## Decision" in read["md"]
    assert read["html"].startswith("<!DOCTYPE html>")
    assert "votes won" in ratings and csv["visible"]
    # a field the questions lack is a warning above the report without it, not a traceback
    _, _, body, html, *_ = report.on_refresh("e1", "channel", None, **quiet)
    assert 'class="wb-warning"' in body and "no field &#x27;channel&#x27;" in body
    assert "Decision" in body and "By product" not in body and html["visible"]
    assert "Drift" not in body and [value for _, value in drift["choices"]] == ["none", "e1"]
    # a later eval of the same questions where rag fell: the drift since e1, with the decline flagged
    stored_eval(
        tmp_path, {"base": [0.2, 0.3, 0.1, 0.2] * 2, "rag": [0.2, 0.3, 0.1, 0.2] * 2}, ["fact"] * 8, eval_id="e2"
    )
    _, drift, body, *_ = report.on_refresh("e2", "", "e1", **quiet)
    assert "<h2>Drift</h2>" in body and "Significant declines: rag on token_f1." in body and drift["value"] == "e1"
    note, exported = report.on_export("evals")  # the export of `workbench export`, as a file to download
    rows = Path(exported["value"]).read_text(encoding="utf-8").splitlines()
    assert len(rows) == 32 and exported["visible"] and "32 evals row(s) of run r1" in note
