"""The Arena tab: ask once, read 2-4 blind columns as they stream, rate them, vote, then see the names.

Handlers only adapt Gradio values to `workbench.session.ArenaSession`. Blindness: what goes to the browser
before the vote is the column labels A-D and `render.column_html` of `Column`s, which carry no variant name;
the session (with its label -> variant map) lives server-side in `gr.State`. The variant checkboxes name the
variants being compared, not which column shows which.
"""

from __future__ import annotations

import secrets

import gradio as gr

from workbench.data.loaders import BadInputError
from workbench.session import LABELS, Arena, ArenaSession, Column
from workbench.ui.render import CSS, column_html, reveal_html

STARS = [1, 2, 3, 4, 5]


def _vote_choices(labels: list[str]) -> list[tuple[str, str]]:
    return [(f"{label} is best", label) for label in labels] + [("Tie", "tie"), ("All bad", "all_bad")]


def rater_id(stored: str | None, request: gr.Request | None) -> str:
    """The login name when Gradio auth is on, else this browser's random id."""
    username = getattr(request, "username", None) if request is not None else None
    return username or stored or f"browser-{secrets.token_hex(6)}"


class ArenaTab:
    """The components of the Arena tab and their handlers; build inside a `gr.Blocks` context."""

    def __init__(self, arena: Arena):
        self.arena = arena
        self.session = gr.State(None)
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
        self.status = gr.Markdown(elem_id="wb-status")
        self.columns, self.htmls, self.stars, self.flags = [], [], [], []
        with gr.Row(equal_height=False):
            for label in LABELS:
                with gr.Column(min_width=220) as column:
                    self.columns.append(column)
                    self.htmls.append(gr.HTML(column_html(Column(label)), css_template=CSS, elem_id=f"wb-col-{label}"))
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
        ask_outputs |= {*self.columns, *self.htmls, *self.stars, *self.flags}
        for trigger in (self.ask.click, self.question.submit):
            trigger(
                self.on_ask,
                [self.question, self.variants, self.session, self.rater],
                ask_outputs,
                concurrency_limit=1,
                concurrency_id="generate",
                show_progress="hidden",
            )
        self.submit.click(
            self.on_submit,
            [self.session, *self.stars, *self.flags, self.vote, self.comment],
            {self.status, self.revealed, *self.htmls},
        )
        self.reset.click(self.on_reset, [self.session], ask_outputs)

    def on_load(self, stored: str, request: gr.Request):
        """Fill the variant choices (this builds the engine on the first visit) and settle the rater id."""
        choices, chosen = self.arena.choices(), self.arena.defaults()
        rater = rater_id(stored, request)
        note = f"You rate as **{rater}**." if self.arena.name else "No prepared run to compare."
        if self.arena.detector_problem:
            note += f" Claims are not checked: {self.arena.detector_problem}."
        return rater, gr.update(choices=choices, value=chosen), note

    def _cleared(self, session: ArenaSession | None, count: int) -> dict:
        """Empty columns (the first `count` shown) and rating controls."""
        labels = session.labels if session else list(LABELS[:count])
        out = {
            self.session: session,
            self.revealed: "",
            self.comment: "",
            self.vote: gr.update(choices=_vote_choices(labels), value=None),
        }
        for i, label in enumerate(LABELS):
            out[self.columns[i]] = gr.update(visible=i < len(labels))
            out[self.htmls[i]] = column_html(Column(label))
            out[self.stars[i]] = None
            out[self.flags[i]] = False
        return out

    def on_ask(self, question: str, chosen: list[str], session: ArenaSession | None, stored: str, request: gr.Request):
        try:
            fresh = session is None or session.voted or sorted(session.variants) != sorted(chosen or [])
            if fresh:
                session = self.arena.session(rater_id(stored, request), chosen or [])
            first = self._cleared(session, len(session.labels))
            for i, label in enumerate(session.labels):
                first[self.htmls[i]] = column_html(Column(label), question, session.history(label))
            first[self.status] = "New conversation. " if fresh else ""
            yield first
            index = {label: i for i, label in enumerate(session.labels)}
            for column in session.ask(question):
                yield {self.htmls[index[column.label]]: column_html(column, question, session.history(column.label))}
        except BadInputError as exc:
            raise gr.Error(str(exc)) from None
        yield {self.status: f"Turn {session.turns} answered. Rate the answers and vote to see which is which."}

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

    def on_reset(self, session: ArenaSession | None):
        if session is not None:
            try:
                session.reset()
            except BadInputError as exc:
                raise gr.Error(str(exc)) from None
        out = self._cleared(session, len(session.labels) if session else len(LABELS))
        out[self.status] = "New conversation: the columns get a new random order."
        return out
