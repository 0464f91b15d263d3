"""The Eval tab and its background job: real `workbench eval` children on the tiny model over the indexed demo run
(finished, stopped then resumed, failed with the CLI's error), and the tab's HTML escaped."""

import shutil
import time

import gradio as gr
import pytest

from workbench.config import Config
from workbench.eval.job import EvalRequest, EvalStatus, eval_job
from workbench.store import Store
from workbench.ui.eval_tab import EvalTab, evals_frame, figures_html, judge_choices, progress_html, variant_choices
from workbench.workspace import run_paths


@pytest.fixture
def home(demo_index, tmp_path):
    """A copy of the prepared and indexed demo workspace (no adapter: base and rag can answer)."""
    shutil.copytree(demo_index[0], tmp_path / "home")
    return tmp_path / "home"


def _config(tiny_llama_folder, max_new_tokens: int = 8) -> Config:
    return Config.model_validate(
        {"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": max_new_tokens}}
    )


def _tab(home, config) -> EvalTab:
    with gr.Blocks() as app, gr.Tab("Eval") as opened:
        tab = EvalTab(home, "demo", config, tab=opened)
    assert app.get_config_file()["components"], "the app serialises for the browser"
    return tab


FORM = (["base", "rag"], "test", 2, ["reference"], "local")


def test_the_tab_offers_what_the_run_can_answer_and_runs_an_eval_to_the_end(home, tiny_llama_folder):
    tab = _tab(home, _config(tiny_llama_folder))
    assert tab.variants.choices == [] and not tab.timer.active, "nothing per variant is sent with the page"
    opened = tab.on_open(None, None)
    assert opened[tab.variants].choices == [("base", "base"), ("prompt", "prompt"), ("rag", "rag")]
    assert opened[tab.variants].value == ["base", "rag"] and opened[tab.timer].active
    assert "No eval started" in opened[tab.progress] and opened[tab.table].empty

    started = tab.on_start(*FORM)
    eval_id = eval_job("demo", home).status().eval_id
    assert f"Started eval <b>{eval_id}</b>" in started[tab.message] and eval_id.startswith("ui-")
    assert not started[tab.start].interactive and started[tab.stop].interactive
    assert started[tab.chosen].value == eval_id
    assert eval_job("demo", home).wait(120)

    status = eval_job("demo", home).status()
    assert status.state == "finished" and status.stored == status.total == 4 and status.error is None
    refreshed = tab.on_refresh(None)
    assert f"eval <b>{eval_id}</b>: finished: 4 / 4 answers in " in refreshed[tab.progress]
    row = refreshed[tab.table].iloc[0].to_dict()
    assert row["id"] == eval_id and row["variants"] == "base, rag" and row["stored / total"] == "4 / 4"
    assert row["questions"] == 2 and row["split"] == "test" and row["finished"]
    figures = refreshed[tab.figures]
    assert refreshed[tab.chosen].value == eval_id and "finished" in figures
    assert "<td>base</td><td>2</td>" in figures and "<td>rag</td><td>2</td>" in figures and "token_f1" in figures
    assert refreshed[tab.start].interactive and not refreshed[tab.stop].interactive
    assert (home / ".jobs" / "demo.eval.log").is_file() and (home / ".jobs" / "demo.eval.yaml").is_file()


def test_stop_keeps_the_answers_and_start_with_the_same_form_answers_only_the_rest(home, tiny_llama_folder):
    tab, job = _tab(home, _config(tiny_llama_folder, max_new_tokens=32)), eval_job("demo", home)
    form = (["base", "rag"], "test", 20, ["reference"], "local")
    tab.on_start(*form)
    assert "already evaluating" in tab.on_start(*form)[tab.message]
    deadline, running = time.monotonic() + 120, None
    while time.monotonic() < deadline and not (job.status().stored or 0) >= 1:
        time.sleep(0.05)
    running = progress_html(job.status())
    assert "running: " in running and " / 40 answers" in running
    assert "Stopping" in tab.on_stop(None)[tab.message]
    assert job.wait(120)

    status = job.status()
    assert status.state == "stopped" and 2 <= status.stored < status.total == 40, status
    assert f"stopped: {status.stored} of 40 stored; Start resumes" in tab.on_refresh(None)[tab.progress]
    with Store.open(home=home) as store:
        first = {a["id"]: (a["qa_id"], a["variant"]) for a in store.answers(eval_id=status.eval_id)}
    assert len(first) == status.stored

    resumed = tab.on_start(*form)
    assert f"Started eval <b>{status.eval_id}</b>" in resumed[tab.message]
    assert job.wait(120) and job.status().state == "finished"
    with Store.open(home=home) as store:
        answers = store.answers(eval_id=status.eval_id)
        assert store.eval(status.eval_id)["finished_at"] is not None
    assert len(answers) == 40 and len({(a["qa_id"], a["variant"]) for a in answers}) == 40
    assert {a["id"]: (a["qa_id"], a["variant"]) for a in answers if a["id"] in first} == first
    assert "finished: 40 / 40 answers" in tab.on_refresh(None)[tab.progress]
    assert "No eval is running" in tab.on_stop(None)[tab.message]


def test_a_failing_start_shows_the_cli_error_line(home, tiny_llama_folder):
    tab = _tab(home, _config(tiny_llama_folder))
    assert "choose at least one variant" in tab.on_start([], "test", 2, ["reference"], "local")[tab.message]
    for limit in (-1, 2.5):
        refused = tab.on_start(["base"], "test", limit, ["reference"], "local")[tab.message]
        assert f"Not started: Questions: {limit} is not a whole number" in refused
    tab.on_start(["base", "ft"], "test", 2, ["reference"], "local")
    assert eval_job("demo", home).wait(120)
    status = eval_job("demo", home).status()
    assert status.state == "failed" and status.stored is None
    assert (
        status.error == "--variants: ft cannot answer here: no adapter 'default': run `workbench finetune --name demo`"
    )
    progress = tab.on_refresh(None)[tab.progress]
    assert 'class="wb-failed"' in progress and "failed: --variants: ft cannot answer here: no adapter" in progress
    run_paths("demo", home).split("val").write_text("")  # a split without questions: said before anything starts
    refused = tab.on_start(["base"], "val", 2, ["reference"], "local")[tab.message]
    assert "Not started: the val split of demo holds no question with a reference answer" in refused
    assert "synthetic QA pairs" in refused and "--" not in refused


def test_choices_follow_the_run_files_and_judges_leave_out_pairwise(home):
    config = Config.model_validate({"chat": {"variants": ["base", "ft_rag"]}})
    assert variant_choices(home, "demo", config) == (["base", "prompt", "rag"], ["base"])
    adapter = run_paths("demo", home).adapter
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    assert variant_choices(home, "demo", config) == (["base", "prompt", "ft", "rag", "ft_rag"], ["base", "ft_rag"])
    run_paths("demo", home).split("train").write_text("")  # no training questions: nothing to show `prompt`
    assert variant_choices(home, "demo", config)[0] == ["base", "ft", "rag", "ft_rag"]
    assert variant_choices(home, None, config) == ([], [])
    assert judge_choices() == ["reference", "correctness", "groundedness", "helpfulness"]
    assert EvalRequest(("base", "rag"), "val", 3, ("reference", "correctness")).arguments() == [
        "--variants", "base,rag", "--split", "val", "--judge-model", "local",
        "--judges", "reference,correctness", "--limit", "3",
    ]  # fmt: skip


def test_progress_figures_and_evals_are_escaped():
    running = EvalStatus("demo", "running", "ui-1", 37, 168, 41.0, 0.9, 145.0, False, None)
    assert "eval <b>ui-1</b>: running: 37 / 168 answers, 0.9 answers/s, ETA 2 min" in progress_html(running)
    bad = EvalStatus("demo", "failed", "<b>x</b>", None, None, 3.0, None, None, False, "no <script>alert(1)</script>")
    assert "<script" not in progress_html(bad) and "&lt;script&gt;alert(1)&lt;/script&gt;" in progress_html(bad)
    assert "&lt;b&gt;x&lt;/b&gt;" in progress_html(bad)

    record = {"id": "<img src=x onerror=alert(1)>", "split": "test", "questions": 2, "finished_at": None}
    judges = {
        "token_f1": {"mean": 0.25, "scored": 2, "failed": 0},
        "<i>j</i>": {"mean": None, "scored": 0, "failed": 2},
    }
    row = {"answers": 2, "errors": 1, "attributed": 2, "gold_shown": 0.5, "wrong_gold_shown": 1}
    figures = {"<script>alert(2)</script>": row | {"wrong_gold_missed": 1, "judges": judges, "flagged": 0.5}}
    html = figures_html(record, figures)
    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert (
        "<td>2 (1 failed)</td>" in html and ">0.250</span>" in html and "<td>50%</td><td>50%</td><td>1 / 1</td>" in html
    )
    assert "not finished" in html and "No answers stored yet" in figures_html(record, {})

    evals = [{"id": "a", "split": "val", "variants": ["base"], "questions": 3, "stored": 1}]
    evals += [{"id": "b", "split": "test", "variants": ["base", "rag"], "questions": 2, "stored": 4}]
    evals[0] |= {"started_at": "2026-01-01T10:00:00+00:00", "finished_at": None}
    evals[1] |= {"started_at": "2026-01-02T10:00:00+00:00", "finished_at": "2026-01-02T10:01:00+00:00"}
    frame = evals_frame(evals)
    assert frame["id"].tolist() == ["b", "a"] and frame["stored / total"].tolist() == ["4 / 4", "1 / 3"]
    assert frame["finished"].tolist()[1] == ""


def test_an_admin_queues_the_forms_questions_for_raters_from_the_tab(home):
    tab = _tab(home, Config())
    assert "No rater queue" in tab.on_open(None, None)[tab.queues]
    done = tab.on_queue(["base", "rag"], "test", 3, "week<1>", 2)
    assert "Not queued" in done[tab.message] and "week&lt;1&gt;" in done[tab.message]
    done = tab.on_queue(["base"], "test", 3, "week1", 2)
    assert "Not queued" in done[tab.message] and "2 to 4 variants" in done[tab.message]
    done = tab.on_queue(["base", "rag"], "test", 3, "week1", 2)
    assert "Queued 3 question(s) as <b>week1</b>" in done[tab.message]
    assert "<td>week1</td><td>base, rag</td><td>3</td><td>0 (by 2)</td>" in done[tab.queues]
    assert "already loaded" in tab.on_queue(["base", "rag"], "test", 0, "week1", 2)[tab.message]
