"""The Eval tab: run `workbench eval` over a held-out split in the background, follow it, and read the figures.

The eval runs in an `EvalJob` (a `workbench eval` child process at the lowest CPU priority), so the tab only starts
it, interrupts it and polls it with a `gr.Timer`; the progress, the past evals and their figures are read from the
store, which the child fills one answer at a time. The variants offered are worked out from the run's files (an
adapter, an index), without loading the model. As with the Ratings tab, the variants, evals and figures are filled
when the tab is opened (and the timer starts then), never with the page, so a rater voting blind is sent none.

Start with the form unchanged after a stop (or a failure) resumes the same eval: the job passes the same
`--eval-id` and the child answers only what is missing (see `workbench.eval.job`). A changed form, or a start after
the eval finished, begins a new eval.

Every value from the store (eval ids, variants, judge names, errors) is escaped before it reaches `gr.HTML`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.eval.job import EvalJob, EvalRequest, EvalRunning, EvalStatus, eval_job
from workbench.fewshot import training_pairs
from workbench.report.summary import eval_figures
from workbench.runs import has_questions, tuned_variants
from workbench.ui.access import Access
from workbench.ui.render import CSS, esc
from workbench.variants import REMOTE_PREFIX
from workbench.workspace import index_paths

NO_RUN = "No prepared run yet: add your data and a QA set in the Data tab (or run `workbench prepare`) first."
SPLITS = ("test", "val")
EVAL_COLUMNS = ["id", "split", "variants", "questions", "stored / total", "started", "finished"]
TAB_CSS = CSS + ".wb-failed { color: #b42318; white-space: pre-wrap; }\n"


def variant_choices(home: Path, name: str | None, config: Config) -> tuple[list[str], list[str]]:
    """(the variants that can answer for run `name`, the configured ones among them), from the run's files: `prompt`
    needs training questions, the fine-tuned ones an adapter (`ft:A` each of the run's adapters), `rag` an index,
    `ft_rag` both; remote endpoints are offered as configured."""
    if not name:
        return [], []
    index = index_paths(name, home).manifest.is_file()
    ready = {"base": True, "prompt": bool(training_pairs(name, home)), "rag": index}
    tuned = tuned_variants(name, home, indexed=index)
    choices = [v for v, ok in ready.items() if ok] + tuned + [REMOTE_PREFIX + r for r in config.chat.remotes]
    order = {v: i for i, v in enumerate(["base", "prompt", "ft", "rag", "ft_rag"])}
    choices.sort(key=lambda v: order.get(v, len(order)))  # the built-in ones in their usual order, then the rest
    return choices, [v for v in config.chat.variants if v in choices]


def judge_choices() -> list[str]:
    """`reference` (every reference judge) and the shipped LLM rubrics that score one answer (not pairwise)."""
    from workbench.judge import load_rubric, rubric_names

    return ["reference", *(name for name in rubric_names() if load_rubric(name).kind == "score")]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress_html(status: EvalStatus | None) -> str:
    """One line: the job's state, answers stored of the total, speed and time left, or why it failed."""
    if status is None:
        return f"<p>{esc(NO_RUN)}</p>"
    if status.state == "idle":
        return "<p>No eval started in this session.</p>"
    counted = status.total is not None
    done = f"{status.stored} / {status.total} answers" if counted else ""
    if status.state == "running":
        if not counted:
            line = "starting: loading the model and the questions"
        else:
            line = ("stopping" if status.stop_requested else "running") + f": {done}"
            line += f", {status.rate:.1f} answers/s" if status.rate else ""
            line += f", ETA {_duration(status.eta_s)}" if status.eta_s is not None else ""
    elif status.state == "finished":
        line = f"finished: {done}" + (f" in {_duration(status.elapsed_s)}" if status.elapsed_s else "")
    elif status.state == "stopped":
        stored = f"{status.stored} of {status.total} stored" if counted else "nothing stored"
        line = f"stopped: {stored}; Start resumes"
    else:
        line = f"failed: {status.error}"
    css = ' class="wb-failed"' if status.state == "failed" else ""
    return f"<p{css}>eval <b>{esc(status.eval_id)}</b>: {esc(line)}</p>"


def _when(stamp: str | None) -> str:
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else ""


def evals_frame(rows: list[dict]) -> pd.DataFrame:
    """The run's evals (rows of `Store.evals`), newest first."""
    table = [
        [
            row["id"],
            row["split"],
            ", ".join(row["variants"]),
            row["questions"],
            f"{row['stored']} / {row['questions'] * len(row['variants'])}",
            _when(row["started_at"]),
            _when(row["finished_at"]),
        ]
        for row in reversed(rows)
    ]
    return pd.DataFrame(table, columns=EVAL_COLUMNS).astype({"questions": "int64"})


def _number(value: float | None, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


def figures_html(record: dict | None, figures: dict[str, dict]) -> str:
    """`workbench.report.summary.eval_figures` of one eval as a table: a row per variant, judge means, the share of
    answers with an unsupported claim, how often a gold source was shown, and wrong answers by retrieval outcome."""
    if record is None:
        return "<p>No eval chosen.</p>"
    state = "finished" if record["finished_at"] else "not finished"
    head = (
        f"<p>eval <b>{esc(record['id'])}</b> · {esc(record['split'])} · {esc(record['questions'])} questions · "
        f"{state}</p>"
    )
    if not figures:
        return head + "<p>No answers stored yet.</p>"
    judges = sorted({j for row in figures.values() for j in row["judges"]})
    columns = ["variant", "answers", *judges, "flagged", "gold shown", "wrong: gold shown / missed"]
    rows = []
    for variant, row in figures.items():
        failed = f" ({row['errors']} failed)" if row["errors"] else ""
        cells = [esc(variant), esc(f"{row['answers']}{failed}")]
        for judge in judges:
            stats = row["judges"].get(judge) or {}
            tip = f"{stats.get('scored', 0)} scored, {stats.get('failed', 0)} not scorable"
            cells.append(f'<span title="{esc(tip)}">{_number(stats.get("mean"))}</span>')
        cells += [_number(row["flagged"], "{:.0%}"), _number(row["gold_shown"], "{:.0%}")]
        cells.append(f"{row['wrong_gold_shown']} / {row['wrong_gold_missed']}" if row["attributed"] else "–")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>"
    return f'{head}<table class="wb-table"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'


class EvalTab:
    """The components of the Eval tab and their handlers; build inside a `gr.Tab` context (pass the tab to refresh
    the variants offered when it is opened). `store` defaults to the workspace's; `job_for` to `eval_job`. The tab
    evaluates run `name`, or with `current` the run `current()` names at each event (the app's chosen run)."""

    def __init__(
        self,
        home: Path,
        name: str | None,
        config: Config,
        store=None,
        job_for: Callable[[str], EvalJob] | None = None,
        tab: gr.Tab | None = None,
        every_s: float = 2.0,
        access: Access | None = None,
        current: Callable[[], str | None] | None = None,
        queue_loader: Callable[..., int] | None = None,
    ):
        from workbench.store import Store

        self.home, self.config = home, config
        # `Arena.load_queue` in the app, so open arenas offer a new queue; else straight into the store
        self.queue_loader = queue_loader or self._load_queue
        self.current = current or (lambda: name)
        self.store = store or Store.open(home=home)
        self.job_for = job_for or (lambda run: eval_job(run, home))
        # Filled when the tab is opened (`on_open`), never with the page: like the Ratings tab, the page carries
        # no results per variant while a rater votes blind. The timer starts then too.
        with gr.Row():
            self.variants = gr.CheckboxGroup([], label="Variants", elem_id="wb-eval-variants")
            self.judges = gr.CheckboxGroup(
                judge_choices(), value=["reference"], label="Judges", elem_id="wb-eval-judges"
            )
        with gr.Row():
            self.split = gr.Dropdown(list(SPLITS), value="test", label="Split", elem_id="wb-eval-split")
            self.limit = gr.Number(0, precision=0, minimum=0, label="Questions (0: all)", elem_id="wb-eval-limit")
            models = ["local", *(REMOTE_PREFIX + r for r in config.chat.remotes)]
            self.judge_model = gr.Dropdown(
                models, value="local", label="LLM judge model", elem_id="wb-eval-judge-model"
            )
        with gr.Row():
            self.start = gr.Button("Start", variant="primary", interactive=bool(self.name), elem_id="wb-eval-start")
            self.stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="wb-eval-stop")
        with gr.Accordion("Rater queue: the same questions for several raters, blind", open=False):
            gr.Markdown(
                "Queue the split's questions (the form's split, question count and 2-4 variants above) for raters: "
                "each question is served in the arena to at least this many raters, who then judge the same answers, "
                "so the report can say how far they agree with each other and with the judges."
            )
            with gr.Row():
                self.queue_name = gr.Textbox(label="Queue name", placeholder="e.g. week1", elem_id="wb-queue-name")
                self.queue_raters = gr.Number(
                    2, precision=0, minimum=2, label="Raters per question", elem_id="wb-queue-raters"
                )
                self.queue_load = gr.Button("Queue for raters", elem_id="wb-queue-load")
            self.queues = gr.HTML(css_template=TAB_CSS, elem_id="wb-queues")
        self.message = gr.HTML(css_template=TAB_CSS, elem_id="wb-eval-message")
        self.progress = gr.HTML(css_template=TAB_CSS, elem_id="wb-eval-progress")
        self.table = gr.Dataframe(
            pd.DataFrame([], columns=EVAL_COLUMNS),
            label="Evals of this run",
            interactive=False,
            elem_id="wb-eval-table",
        )
        self.chosen = gr.Dropdown([], label="Eval", elem_id="wb-eval-chosen")
        self.figures = gr.HTML(css_template=TAB_CSS, elem_id="wb-eval-figures")
        self.timer = gr.Timer(every_s, active=tab is None)

        form = [self.variants, self.split, self.limit, self.judges, self.judge_model]
        live = [self.progress, self.table, self.chosen, self.figures, self.start, self.stop]
        admin = (access or Access()).admin_only
        self.start.click(admin(self.on_start), form, [self.message, *live])
        self.stop.click(admin(self.on_stop), [self.chosen], [self.message, *live])
        queue_form = [self.variants, self.split, self.limit, self.queue_name, self.queue_raters]
        self.queue_load.click(admin(self.on_queue), queue_form, [self.message, self.queues])
        self.timer.tick(admin(self.on_refresh, quiet=True), [self.chosen], live, show_progress="hidden")
        self.chosen.input(admin(self.on_choose), [self.chosen], [self.figures])
        self.opened = [self.variants, self.timer, self.queues, *live]  # what `on_open` fills from [variants, chosen]
        if tab is not None:
            tab.select(admin(self.on_open, quiet=True), [self.variants, self.chosen], self.opened)

    @property
    def name(self) -> str | None:
        """The run this tab evaluates now."""
        return self.current()

    def _job(self) -> EvalJob | None:
        return self.job_for(self.name) if self.name else None

    def _status(self) -> EvalStatus | None:
        job = self._job()
        return job.status() if job else None

    def _evals(self) -> list[dict]:
        return self.store.evals(self.name) if self.name else []

    def on_start(self, variants: list[str], split: str, limit: float | None, judges: list[str], judge_model: str):
        if not self.name:
            return {self.message: f"<p>{esc(NO_RUN)}</p>"} | self.on_refresh(None)
        problem = None
        if not variants or not judges:
            problem = "choose at least one variant" if not variants else "choose at least one judge"
        elif limit not in (None, "") and (float(limit) != int(limit) or int(limit) < 0):
            problem = f"Questions: {limit} is not a whole number of questions; 0 means all of them"
        elif not has_questions(self.name, split, self.home):
            problem = (
                f"the {split} split of {self.name} holds no question with a reference answer, so there is nothing to "
                "evaluate. Prepare the run with a QA set (Data tab), or generate synthetic QA pairs there and accept "
                "some of the test documents' pairs (unreviewed pairs never go to test); a run of a few documents may "
                f"have no {split} document at all"
            )
        if problem:
            return {self.message: f'<p class="wb-failed">Not started: {esc(problem)}.</p>'} | self.on_refresh(None)
        request = EvalRequest(
            tuple(variants), split, int(limit) if limit not in (None, "", 0) else None, tuple(judges), judge_model
        )
        try:
            eval_id = self._job().start(self.config, request)
        except EvalRunning as exc:
            return {self.message: f'<p class="wb-failed">Not started. {esc(exc)}</p>'} | self.on_refresh(None)
        return {self.message: f"<p>Started eval <b>{esc(eval_id)}</b>.</p>"} | self.on_refresh(eval_id)

    def on_stop(self, chosen: str | None):
        job = self._job()
        asked = job is not None and job.stop()
        message = "Stopping: the answers stored so far are kept." if asked else "No eval is running."
        return {self.message: f"<p>{esc(message)}</p>"} | self.on_refresh(chosen)

    def on_open(self, picked: list[str] | None, chosen: str | None):
        """The variants that can answer now (the configured ones ticked on the first visit), the live parts, and
        the timer that keeps them fresh."""
        choices, configured = variant_choices(self.home, self.name, self.config)
        value = [v for v in picked if v in choices] if picked else configured
        opened = {self.variants: gr.CheckboxGroup(choices=choices, value=value), self.timer: gr.Timer(active=True)}
        return opened | {self.queues: self.queues_html()} | self.on_refresh(chosen)

    def on_queue(self, variants: list[str], split: str, limit: float | None, queue: str, raters: float | None):
        """Queue the form's questions for raters under `queue`."""
        try:
            if not self.name:
                raise BadInputError(NO_RUN)
            if not (queue or "").strip():
                raise BadInputError("name the queue (letters, digits, '-', '_' and '.')")
            count_limit = int(limit) if limit not in (None, "", 0) else None
            raters = int(raters or 0)
            count = self.queue_loader(queue.strip(), split, list(variants or []), raters, count_limit)
        except (BadInputError, ValueError) as exc:
            return {self.message: f'<p class="wb-failed">Not queued: {esc(exc)}</p>', self.queues: self.queues_html()}
        line = f"<p>Queued {count} question(s) as <b>{esc(queue.strip())}</b>: raters find it in the Arena tab.</p>"
        return {self.message: line, self.queues: self.queues_html()}

    def _load_queue(self, queue: str, split: str, variants: list[str], raters: int, limit: int | None) -> int:
        from workbench.rater_queue import load_queue

        return load_queue(self.store, self.name, queue, split, variants, raters, limit, self.home, self.config.chat)

    def queues_html(self) -> str:
        """The run's rater queues and how far each is rated."""
        from workbench.rater_queue import queue_progress

        queues = queue_progress(self.store, self.name) if self.name else []
        if not queues:
            return "<p>No rater queue for this run yet.</p>"
        columns = ["queue", "variants", "questions", "fully rated", "started", "votes"]
        rows = [
            [
                q["queue"],
                ", ".join(q["variants"]),
                q["questions"],
                f"{q['complete']} (by {q['raters_wanted']})",
                q["started"],
                q["votes"],
            ]
            for q in queues
        ]
        header = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows)
        return f'<table class="wb-table"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'

    def on_choose(self, chosen: str | None) -> str:
        return self.figures_for(chosen)

    def figures_for(self, eval_id: str | None) -> str:
        """The figures table of eval `eval_id` of this run."""
        with self.store.snapshot():
            record = self.store.eval(eval_id) if eval_id else None
            if record is None or record["run"] != self.name:
                return figures_html(None, {})
            rows = [self.store.answers(eval_id=eval_id), self.store.judgements(eval_id=eval_id)]
            rows.append(self.store.claim_flags(eval_id=eval_id))
        return figures_html(record, eval_figures(*rows))

    def on_refresh(self, chosen: str | None):
        """Progress, the evals table, the chosen eval (default: the newest) and its figures, the buttons."""
        status, evals = self._status(), self._evals()
        ids = [row["id"] for row in reversed(evals)]
        if status is not None and status.eval_id and status.eval_id not in ids and status.state == "running":
            ids.insert(0, status.eval_id)  # started, not registered by the child yet
        chosen = chosen if chosen in ids else (ids[0] if ids else None)
        running = status is not None and status.state == "running"
        return {
            self.progress: progress_html(status),
            self.table: evals_frame(evals),
            self.chosen: gr.Dropdown(choices=ids, value=chosen),
            self.figures: self.figures_for(chosen),
            self.start: gr.Button(interactive=bool(self.name) and not running),
            self.stop: gr.Button(interactive=running and not status.stop_requested),
        }
