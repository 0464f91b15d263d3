"""The Arena tab: ask once, read 2-4 blind columns as they stream, rate them, vote, then see the names.

Handlers only adapt Gradio values to `workbench.session.ArenaSession`. Blindness: what goes to the browser
before the vote is the column labels A-D and `render.column_html` of `Column`s, which carry no variant name;
the session (with its label -> variant map) lives server-side in `gr.State`. The variant checkboxes name the
variants being compared, not which column shows which, and so does the line on the run's background fine-tune,
which a `gr.Timer` polls so that the fine-tuned variants join the choices when their adapter is written.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

import gradio as gr

from workbench.data.loaders import BadInputError
from workbench.session import LABELS, Arena, ArenaSession, Column
from workbench.training_job import JobRunning, JobStatus, TrainingJob
from workbench.ui.access import Access
from workbench.ui.memory import release_freed_memory
from workbench.ui.render import CSS, column_html, esc, legend_html, reveal_html
from workbench.variants import is_tuned

STARS = ["1", "2", "3", "4", "5"]
"""Star choices as text: Gradio's API schema calls a Radio's value a string whatever its choices are."""


def _vote_choices(labels: list[str]) -> list[tuple[str, str]]:
    return [(f"{label} is best", label) for label in labels] + [("Tie", "tie"), ("All bad", "all_bad")]


def rater_id(stored: str | None, request: gr.Request | None) -> str:
    """The login name when Gradio auth is on, else this browser's random id."""
    username = getattr(request, "username", None) if request is not None else None
    return username or stored or f"browser-{secrets.token_hex(6)}"


def eta_s(step: int | None, total: int | None, elapsed_s: float | None) -> float | None:
    """Seconds left if the remaining steps go as fast as the `step` done in `elapsed_s`; None before the first."""
    if not step or not total or elapsed_s is None:
        return None
    return max(0.0, elapsed_s / step * (total - step))


def duration(seconds: float) -> str:
    """A wait as a rater reads it: `40 s`, `3 min`, `1 h 05 min` (rounded up)."""
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def training_html(status: JobStatus | None) -> str:
    """The run's fine-tune in one line: progress and ETA, the failure, or ready; empty when none ran here."""
    if status is None or status.state == "idle":
        return ""
    if status.state == "failed":
        return f'<p class="wb-bad">Training the fine-tuned variants failed: {esc(status.error or "no reason")}</p>'
    if status.has_adapter:
        return "<p>Fine-tuned variants ready.</p>"
    if status.stop_requested or status.step is None:
        progress = "stopping after this step" if status.stop_requested else "starting"
    else:
        left = eta_s(status.step, status.total, status.train_s)
        progress = f"step {status.step}" + (f" / {status.total}" if status.total else "")
        progress += f", ETA {duration(left)}" if left is not None else ""
    return f"<p>Training the fine-tuned variants: {progress}. They join the choices above when done.</p>"


NO_RUN = "No prepared run to compare yet: an admin adds documents in the **Data** tab (or runs `workbench prepare`)."


class ArenaTab:
    """The components of the Arena tab and their handlers; build inside a `gr.Blocks` context.

    `job` is the run's training job (None without a run), or `job_for(run)` gives the job of the run the arena
    serves when it can switch runs: its state shows above the columns, polled every `every_s` seconds, with a retry
    after a failure. The same poll brings new variant choices when the arena switched runs or reloaded its engine.
    """

    def __init__(
        self,
        arena: Arena,
        job: TrainingJob | None = None,
        every_s: float = 3.0,
        access: Access | None = None,
        job_for: Callable[[str], TrainingJob] | None = None,
    ):
        self.arena, self._job, self._job_for = arena, job, job_for
        self.session = gr.State(None)
        self.offered = gr.State(None)  # the variant choices this browser shows
        self.seen = gr.State(None)  # the arena's version they were offered for (`Arena.version`)
        self.rater = gr.BrowserState("", storage_key="workbench-rater")
        with gr.Row():
            self.question = gr.Textbox(
                label="Question", placeholder="Ask every variant at once", scale=5, elem_id="wb-question"
            )
            self.ask = gr.Button("Ask", variant="primary", scale=1, elem_id="wb-ask")
        self.variants = gr.CheckboxGroup(
            label="Variants to compare (2-4): columns are shown in a random order, named only after your vote",
            elem_id="wb-variants",
        )
        with gr.Row(visible=False) as self.queue_row:  # shown when an admin loaded a rater queue (Eval tab)
            self.queue = gr.Dropdown([], label="Rater queue: questions every rater answers the same way", scale=3)
            self.next_queued = gr.Button("Next queued question", scale=1, elem_id="wb-next-queued")
        with gr.Row(equal_height=True, visible=False) as self.training_row:
            self.training = gr.HTML(css_template=CSS, elem_id="wb-training")
            self.retry = gr.Button("Retry training", visible=False, scale=0, min_width=160, elem_id="wb-retry")
        self.status = gr.Markdown(elem_id="wb-status")
        self.legend = gr.HTML(legend_html(), css_template=CSS, elem_id="wb-legend")
        self.columns, self.htmls, self.ratings, self.stars, self.flags = [], [], [], [], []
        with gr.Row(equal_height=False):
            for label in LABELS:
                with gr.Column(min_width=220) as column:
                    self.columns.append(column)
                    self.htmls.append(gr.HTML(column_html(Column(label)), css_template=CSS, elem_id=f"wb-col-{label}"))
        with gr.Row():  # a row of their own: every column's stars line up, however long the answers above
            for label in LABELS:
                with gr.Column(min_width=220) as rating:
                    self.ratings.append(rating)
                    self.stars.append(gr.Radio(STARS, label=f"Stars for {label}", elem_id=f"wb-stars-{label}"))
                    self.flags.append(gr.Checkbox(label=f"{label} states something false", elem_id=f"wb-flag-{label}"))
        with gr.Row():
            self.vote = gr.Radio(_vote_choices(list(LABELS)), label="Your vote", scale=2, elem_id="wb-vote")
            self.comment = gr.Textbox(label="Comment (optional)", scale=3, elem_id="wb-comment")
        with gr.Row():
            self.submit = gr.Button("Submit rating and reveal", variant="primary", elem_id="wb-submit")
            self.reset = gr.Button("New conversation", elem_id="wb-reset")
        self.revealed = gr.HTML(css_template=CSS, elem_id="wb-reveal")

        ask_outputs = {self.session, self.status, self.vote, self.comment, self.revealed}
        ask_outputs |= {*self.columns, *self.ratings, *self.htmls, *self.stars, *self.flags}
        # What `on_load` fills: the app wires it with `app.load(tab.on_load, [tab.rater], tab.loaded)`.
        self.loaded = [self.rater, self.variants, self.offered, self.status, self.legend, self.vote]
        self.loaded += [*self.columns, *self.ratings]
        self.loaded += [self.training_row, self.training, self.retry, self.seen, self.queue_row, self.queue]
        for trigger in (self.ask.click, self.question.submit):
            trigger(self.on_accept, [self.rater], None, queue=False, show_progress="hidden").success(
                self.on_ask,
                [self.question, self.variants, self.session, self.rater],
                ask_outputs,
                concurrency_limit=1,
                concurrency_id="generate",
                show_progress="hidden",
            )
        self.next_queued.click(self.on_accept, [self.rater], None, queue=False, show_progress="hidden").success(
            self.on_next_queued,
            [self.queue, self.rater],
            ask_outputs | {self.question, self.variants},
            concurrency_limit=1,
            concurrency_id="generate",
            show_progress="hidden",
        )
        self.submit.click(
            self.on_submit,
            [self.session, *self.stars, *self.flags, self.vote, self.comment],
            {self.status, self.revealed, *self.htmls},
        )
        self.reset.click(self.on_reset, [self.session, self.variants], ask_outputs)
        self.variants.input(self.on_pick, [self.variants, self.session], ask_outputs)
        if job is not None or job_for is not None:
            training = [self.training_row, self.training, self.retry]
            outputs = {*training, self.variants, self.offered, self.seen, self.queue_row, self.queue} | ask_outputs
            inputs = [self.offered, self.session, self.seen]
            gr.Timer(every_s).tick(self.on_tick, inputs, outputs, show_progress="hidden")
            self.retry.click((access or Access()).admin_only(self.on_retry), None, training)

    @property
    def job(self) -> TrainingJob | None:
        """The training job of the run the arena serves now."""
        if self._job_for is not None:
            return self._job_for(self.arena.name) if self.arena.name else None
        return self._job

    def on_load(self, stored: str, request: gr.Request):
        """Fill the variant choices (this builds the engine on the first visit) and settle the rater id."""
        version = self.arena.version
        choices, chosen = self.arena.choices(), self.arena.defaults()
        rater = rater_id(stored, request)
        note = f"You rate as **{rater}**." if self.arena.name else NO_RUN
        aliases = self.arena.adapter_aliases()
        if aliases:
            note += f" `ft` is the adapter `{aliases['ft']}`, `ft_rag` the adapter `{aliases['ft_rag']}`."
        if self.arena.detector_problem:
            note += f" Claims are not checked: {self.arena.detector_problem}."
        training = self.job is not None and self.job.status().state == "running"
        for variant, why in self.arena.unavailable().items():
            if not (training and is_tuned(variant)):  # the training line says when they join
                note += f"\n\n{variant} cannot answer: {why}"
        out = {self.rater: rater, self.variants: gr.update(choices=choices, value=chosen), self.offered: choices}
        out[self.seen] = version
        out[self.vote] = gr.update(choices=_vote_choices(list(LABELS[: len(chosen)])), value=None)
        out |= {self.status: note, self.legend: gr.update(visible=not self.arena.detector_problem)}
        out |= self._queues()
        return out | self._training(self.job.status() if self.job else None) | self._shown(len(chosen))

    def _queues(self) -> dict:
        """The rater queues of the run served, offered when there is one."""
        names = [q["queue"] for q in self.arena.queues()]
        value = names[-1] if names else None
        return {self.queue_row: gr.update(visible=bool(names)), self.queue: gr.update(choices=names, value=value)}

    def on_tick(self, offered: list[str] | None, session: ArenaSession | None = None, seen: int | None = None):
        """The training line; once the arena changed since this browser was offered its variants (`seen`: an adapter
        was written, an index built, another run chosen), the variants that can answer now are offered, and chosen
        with their columns unless a conversation is waiting for its vote (then they are chosen after it)."""
        job = self.job
        out = self._training(job.status() if job is not None else None)
        version = self.arena.version
        if offered is None or (seen is not None and seen == version):
            return out
        out |= self._queues()
        choices = self.arena.choices()
        if choices != offered:
            out |= {self.variants: gr.update(choices=choices), self.offered: choices}
            if session is not None and not session.voted:
                return out
            chosen = self.arena.defaults()
            out |= self._cleared(None, len(chosen)) | {self.variants: gr.update(choices=choices, value=chosen)}
            out[self.status] = (
                "Other variants can answer now; the next question starts a new conversation."
                if session is not None
                else "The variants are ready: ask a question."
            )
        return out | {self.seen: version}

    def on_retry(self):
        """Start the failed fine-tune again, from its last checkpoint when it wrote one."""
        try:
            self.job.start(self.arena.config)
        except JobRunning as exc:
            gr.Warning(str(exc))
        return self._training(self.job.status())

    def on_pick(self, chosen: list[str], session: ArenaSession | None):
        """Other variants: as many empty columns as chosen, and the next question starts a new conversation."""
        out = self._cleared(None, len(chosen or []))
        out[self.status] = "The next question starts a new conversation with these variants." if session else ""
        return out

    def _training(self, status: JobStatus | None) -> dict:
        line, failed = training_html(status), status is not None and status.state == "failed"
        shown = {self.training_row: gr.update(visible=bool(line)), self.retry: gr.update(visible=failed)}
        return shown | {self.training: line}

    def _shown(self, count: int) -> dict:
        """The first `count` columns and their rating controls visible, the others hidden."""
        parts = (self.columns, self.ratings)
        return {part[i]: gr.update(visible=i < count) for part in parts for i in range(len(LABELS))}

    def _cleared(self, session: ArenaSession | None, count: int) -> dict:
        """Empty columns (the first `count` shown) and rating controls."""
        labels = session.labels if session else list(LABELS[:count])
        out = {
            self.session: session,
            self.revealed: "",
            self.comment: "",
            self.vote: gr.update(choices=_vote_choices(labels), value=None),
        } | self._shown(len(labels))
        for i, label in enumerate(LABELS):
            out[self.htmls[i]] = column_html(Column(label))
            out[self.stars[i]] = None
            out[self.flags[i]] = False
        return out

    def on_accept(self, stored: str, request: gr.Request) -> None:
        """Before the shared queue: refuse a rater's question while their last one is still queued or answering."""
        try:
            self.arena.begin_ask(rater_id(stored, request))
        except BadInputError as exc:
            raise gr.Error(str(exc)) from None

    def on_ask(self, question: str, chosen: list[str], session: ArenaSession | None, stored: str, request: gr.Request):
        rater = rater_id(stored, request)
        try:
            fresh = session is None or session.voted or sorted(session.variants) != sorted(chosen or [])
            fresh = fresh or session.run != self.arena.name  # the app switched runs: a new conversation on the new one
            if fresh:
                session = self.arena.session(rater, chosen or [])
            yield from self._stream(session, question, "New conversation. " if fresh else "")
        except BadInputError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            self.arena.end_ask(rater)
            release_freed_memory()
        yield {self.status: f"Turn {session.turns} answered. Rate the answers and vote to see which is which."}

    def on_next_queued(self, queue: str | None, stored: str, request: gr.Request):
        """The rater's next question of the queue, as the first turn of a new conversation with its variants."""
        rater = rater_id(stored, request)
        try:
            if not queue:
                raise BadInputError("choose a rater queue first")
            session, item = self.arena.queued_session(rater, queue)
            shown = {self.question: item.question, self.variants: gr.update(value=list(item.variants))}
            line = f"Queued question from {queue} (rated by {item.voted} of {item.raters_wanted} raters so far). "
            for i, update in enumerate(self._stream(session, item.question, line, item.id)):
                yield update | shown if i == 0 else update
        except BadInputError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            self.arena.end_ask(rater)
            release_freed_memory()
        yield {self.status: "Rate the answers and vote to see which is which; then take the next queued question."}

    def _stream(self, session: ArenaSession, question: str, line: str, queue_question_id: int | None = None):
        """Empty columns for `session`, then each column as its answer grows."""
        first = self._cleared(session, len(session.labels))
        for i, label in enumerate(session.labels):
            first[self.htmls[i]] = column_html(Column(label), question, session.history(label))
        first[self.status] = line
        yield first
        index = {label: i for i, label in enumerate(session.labels)}
        for column in session.ask(question, queue_question_id):
            yield {self.htmls[index[column.label]]: column_html(column, question, session.history(column.label))}

    def on_submit(self, session: ArenaSession | None, *values):
        count = len(LABELS)
        stars, flags, (vote, comment) = values[:count], values[count : 2 * count], values[2 * count :]
        if session is None:
            raise gr.Error("ask a question first")
        labels = session.labels
        given = {label: s for label, s in zip(labels, stars) if s is not None}
        # An unticked box is a "no" only for an answer the rater rated or ticked; otherwise it says nothing.
        flagged = {label: bool(f) for label, f in zip(labels, flags) if f or label in given}
        try:
            session.rate({k: int(v) for k, v in given.items()}, vote or None, flagged, comment)
        except BadInputError as exc:
            raise gr.Error(str(exc)) from None
        if not vote:
            return {self.status: "Rating saved. Vote (best, tie or all bad) to see which variant is which."}
        mapping = session.reveal()
        out = {self.status: "Thanks! Ask again to start a new blind conversation.", self.revealed: reveal_html(mapping)}
        for i, column in enumerate(session.columns):
            out[self.htmls[i]] = column_html(
                column, session.question or "", session.history(column.label), mapping[column.label]
            )
        return out

    def on_reset(self, session: ArenaSession | None, chosen: list[str]):
        if session is not None:
            try:
                session.reset()
            except BadInputError as exc:
                raise gr.Error(str(exc)) from None
        out = self._cleared(session, len(chosen or []))
        out[self.status] = "New conversation: the columns get a new random order."
        return out
