"""The Arena tab without a model: the training line and its ETA, columns shown per chosen variant, the rendering of
claims, evidence, judges and sources. A fake arena and a fake training job stand in for the engine and training."""

from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest

from workbench.config import Config
from workbench.session import Column, Source
from workbench.training_job import JobRunning, JobStatus
from workbench.ui.arena import ArenaTab, duration, eta_s, training_html
from workbench.ui.render import column_html, legend_html

RUNNING = JobStatus("demo", "running", 30, 120, 75.0, False, None, None, train_s=60.0)  # 15 s of model loading


class FakeArena:
    """What the tab asks of an `Arena`: the variants that can answer now (ft only once `adapter` is set)."""

    def __init__(self):
        self.name, self.config, self.detector_problem, self.adapter = "demo", Config(), None, False
        self.version = 0  # `Arena.version`; the ticks below pass no `seen`, so each one looks at the choices

    def choices(self) -> list[str]:
        return ["base", "ft", "rag", "ft_rag"] if self.adapter else ["base", "rag"]

    def defaults(self) -> list[str]:
        return self.choices()

    def unavailable(self) -> dict[str, str]:
        return {} if self.adapter else {v: "no adapter yet" for v in ("ft", "ft_rag")}

    def adapter_aliases(self) -> dict[str, str]:
        return {"ft": "default", "ft_rag": "default"} if self.adapter else {}

    def queues(self) -> list[dict]:
        return []


class FakeJob:
    def __init__(self, status: JobStatus):
        self.now, self.starts = status, []

    def status(self) -> JobStatus:
        return self.now

    def start(self, config, resume: bool = False) -> None:
        if self.now.state == "running":
            raise JobRunning("already training")
        self.starts.append(resume)
        self.now = replace(RUNNING, step=None, total=None, elapsed_s=0.0)


def _tab(status: JobStatus):
    arena, job = FakeArena(), FakeJob(status)
    with gr.Blocks():
        tab = ArenaTab(arena, job)
    return tab, arena, job


def _visible(out: dict, components) -> list[bool]:
    return [out[c]["visible"] for c in components]


def test_eta_is_the_time_per_step_so_far_times_the_steps_left():
    assert eta_s(30, 120, 60.0) == 180.0 and eta_s(120, 120, 240.0) == 0.0
    assert eta_s(None, 120, 5.0) is None and eta_s(0, 120, 5.0) is None and eta_s(3, None, 5.0) is None
    assert [duration(s) for s in (0.2, 61, 180, 3901)] == ["1 s", "2 min", "3 min", "1 h 06 min"]


def test_the_training_line_shows_progress_failure_or_ready_and_names_no_column():
    assert training_html(None) == "" and training_html(replace(RUNNING, state="idle")) == ""
    assert "Training the fine-tuned variants: step 30 / 120, ETA 3 min." in training_html(RUNNING)
    assert "starting" in training_html(replace(RUNNING, step=None))
    assert "stopping after this step" in training_html(replace(RUNNING, stop_requested=True))
    failed = training_html(replace(RUNNING, state="failed", error="RuntimeError: <b>out of memory</b>"))
    assert "failed: RuntimeError: &lt;b&gt;out of memory&lt;/b&gt;" in failed and "<b>" not in failed
    assert "ready" in training_html(replace(RUNNING, state="finished"))
    lines = [training_html(replace(RUNNING, state=s)) for s in ("running", "failed", "finished", "stopped")]
    assert not any(name in line.split() for line in lines for name in ("ft", "rag", "ft_rag", "base"))


def test_fine_tuned_variants_join_the_choices_when_the_job_has_its_adapter():
    tab, arena, job = _tab(RUNNING)
    loaded = tab.on_load("", None)
    assert set(loaded) == set(tab.loaded) and loaded[tab.variants]["choices"] == ["base", "rag"]
    assert [value for _, value in loaded[tab.vote]["choices"]] == ["A", "B", "tie", "all_bad"]  # two columns
    assert "step 30 / 120" in loaded[tab.training] and not loaded[tab.retry]["visible"]

    ticked = tab.on_tick(loaded[tab.offered])
    assert "ETA" in ticked[tab.training] and tab.variants not in ticked  # nothing new to offer yet
    job.now = replace(RUNNING, state="finished", step=120)
    assert tab.variants not in tab.on_tick(loaded[tab.offered])  # the engine is not reloaded yet
    arena.adapter = True  # the on_finish hook reloaded the engine: the adapter's variants can answer
    waiting = SimpleNamespace(voted=False)  # a conversation waiting for its vote keeps its variants and columns
    ticked = tab.on_tick(loaded[tab.offered], waiting)
    assert ticked[tab.variants]["choices"] == ["base", "ft", "rag", "ft_rag"] and "value" not in ticked[tab.variants]
    assert tab.htmls[0] not in ticked
    ticked = tab.on_tick(loaded[tab.offered], None)  # no conversation yet: the new variants are chosen, 4 columns
    assert ticked[tab.variants]["value"] == ["base", "ft", "rag", "ft_rag"]
    assert all(ticked[column]["visible"] for column in tab.columns) and ticked[tab.session] is None
    assert "ready" in ticked[tab.training] and tab.variants not in tab.on_tick(ticked[tab.offered])


def test_a_failed_fine_tune_offers_a_retry_that_starts_it_again():
    tab, _, job = _tab(replace(RUNNING, state="failed", error="ValueError: bad batch"))
    ticked = tab.on_tick(None)
    assert ticked[tab.retry]["visible"] and "failed: ValueError: bad batch" in ticked[tab.training]
    retried = tab.on_retry()
    assert job.starts == [False] and not retried[tab.retry]["visible"] and "starting" in retried[tab.training]


def test_only_as_many_columns_and_rating_controls_as_chosen_variants_show():
    tab, _, _ = _tab(RUNNING)
    loaded = tab.on_load("", None)
    assert _visible(loaded, tab.columns) == _visible(loaded, tab.ratings) == [True, True, False, False]
    picked = tab.on_pick(["base", "ft", "rag"], None)
    assert _visible(picked, tab.columns) == _visible(picked, tab.ratings) == [True, True, True, False]
    assert [label for label, _ in picked[tab.vote]["choices"]][:3] == ["A is best", "B is best", "C is best"]
    assert picked[tab.session] is None and picked[tab.status] == ""
    reset = tab.on_reset(None, ["base", "ft"])
    assert _visible(reset, tab.columns) == [True, True, False, False]


def _claim(text: str, score: float, *evidence: tuple[str, str, float]) -> dict:
    passages = [
        {"chunk_id": chunk_id, "text": passage, "score": sim, "sentence": passage.split(". ")[0]}
        for chunk_id, passage, sim in evidence
    ]
    return {"text": text, "score": score, "supported": score < 0.7, "evidence": passages}


def test_the_tint_is_the_verdict_and_a_cut_answer_is_marked_and_tinted():
    # A supported claim with a middling score used to show pink while the list called it supported.
    claims = [_claim("It is 30 days.", 0.65, ("p#0", "It is 30 days. Other.", 0.9)), _claim("It costs €9.", 0.8)]
    page = column_html(Column("A", "It is 30 days. It costs €9", done=True, finish_reason="length", claims=claims))
    answer = page.split('<div class="wb-answer">')[1].split("</div>")[0]
    assert answer.count("wb-flag") == 1 and "It costs €9</span>" in answer.split("wb-flag")[1]
    assert "background" not in answer.split("wb-flag")[0]  # the supported claim is not tinted at all
    assert "[cut]" in answer and "cut at the token limit" in page
    assert "closest: “It is 30 days”" in page  # each claim quotes the sentence it was checked against
    assert "Red</span>: a claim likely unsupported" in legend_html()


def test_claims_list_each_evidence_passage_once_and_cite_it_by_number():
    passage = "The return window is 30 days. <script>x()</script> " + "Long policy text. " * 100
    other = "Refunds go to the original card."
    claims = [
        _claim("It is 45 days.", 0.9, ("p#0", passage, 0.61)),
        _claim("Returns are free.", 0.4, ("p#0", passage, 0.55), ("r#1", other, 0.5)),
        _claim("Keep the receipt.", 0.2, ("p#0", passage, 0.7)),
    ]
    page = column_html(Column("A", "It is 45 days. Returns are free. Keep the receipt.", done=True, claims=claims))
    assert page.count("Long policy text.") == 100 and page.count("&lt;script&gt;") == 1 and page.count(other) == 1
    assert "Evidence passages (2)" in page and "evidence [1] 0.61<" in page and "evidence [1] 0.55, [2] 0.50<" in page
    assert "evidence [1] 0.70<" in page and "<script" not in page


def test_judges_read_as_names_and_sources_as_ranks():
    column = Column(
        "B",
        "Thirty days.",
        done=True,
        judges={"token_f1": 0.5, "exact_match": 0.0, "contains": 1.0, "rouge_l": 0.4444, "embedding": None},
        sources=[Source("p#0", "Returns <i>", "text", 0.0291), Source("r#1", "Refunds", "text", 0.0164)],
    )
    page = column_html(column)
    assert "vs. reference answer: Token F1 0.50 · ROUGE-L 0.44 · contains the reference</div>" in page
    assert "token_f1" not in page and "exact" not in page and "embedding" not in page
    assert "1st of 2 retrieved" in page and "2nd of 2 retrieved" in page and "Returns &lt;i&gt;" in page
    assert "0.029" not in page and "0.016" not in page
    assert "could not be scored" in column_html(replace(column, judges={"token_f1": None}))
    assert "supported" in legend_html() and "likely unsupported" in legend_html()


def test_star_choices_are_the_strings_the_api_schema_promises():
    import gradio as gr

    from workbench.ui.arena import STARS

    info = gr.Radio(STARS).api_info()
    assert info["type"] == "string" and all(isinstance(choice, str) for choice in info["enum"])


def test_the_status_says_why_a_variant_cannot_answer_unless_its_adapter_is_training():
    tab, _, _ = _tab(RUNNING)
    assert "cannot answer" not in tab.on_load("", None)[tab.status]  # the training line says when they join
    failed = replace(RUNNING, state="failed", error="out of memory")
    tab, _, _ = _tab(failed)
    note = tab.on_load("", None)[tab.status]
    assert "ft cannot answer: no adapter yet" in note and "ft_rag cannot answer" in note


class QueuedArena(FakeArena):
    """A `FakeArena` with one rater queue whose question the session answers in two columns."""

    def __init__(self):
        super().__init__()
        self.asked, self.ended = [], []

    def queues(self) -> list[dict]:
        return [{"queue": "week1"}]

    def begin_ask(self, rater: str) -> None:
        pass

    def end_ask(self, rater: str) -> None:
        self.ended.append(rater)

    def queued_session(self, rater: str, queue: str):
        from workbench.rater_queue import QueuedQuestion, QueueError

        if queue != "week1":
            raise QueueError(f"no queue {queue!r}")
        arena = self

        class Session:
            labels, run, voted, turns = ["A", "B"], "demo", False, 0

            def history(self, label):
                return []

            def ask(self, question, queue_question_id=None):
                arena.asked.append((rater, question, queue_question_id))
                for label in self.labels:
                    yield Column(label, text=f"answer {label}", done=True)

        return Session(), QueuedQuestion(7, "week1", "Where is <b>it</b>?", ("base", "rag"), 1, 2)


def test_next_queued_question_asks_it_in_a_new_conversation_with_the_queues_variants():
    arena = QueuedArena()
    with gr.Blocks():
        tab = ArenaTab(arena, FakeJob(RUNNING))
    loaded = tab.on_load("", None)
    assert loaded[tab.queue_row]["visible"] and loaded[tab.queue]["choices"] == ["week1"]
    updates = list(tab.on_next_queued("week1", "r1", None))
    first = updates[0]
    assert first[tab.question] == "Where is <b>it</b>?" and first[tab.variants]["value"] == ["base", "rag"]
    assert "rated by 1 of 2 raters" in first[tab.status] and first[tab.session].labels == ["A", "B"]
    assert _visible(first, tab.columns) == [True, True, False, False]
    assert arena.asked == [("r1", "Where is <b>it</b>?", 7)] and arena.ended == ["r1"]
    assert "answer B" in updates[-2][tab.htmls[1]] and "vote" in updates[-1][tab.status]
    with pytest.raises(gr.Error, match="choose a rater queue"):
        list(tab.on_next_queued(None, "r1", None))
    with pytest.raises(gr.Error, match="no queue 'x'"):
        list(tab.on_next_queued("x", "r1", None))
    assert arena.ended == ["r1", "r1", "r1"]
