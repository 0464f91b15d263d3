"""The run picker at the top of the app (admins): every prepared run of the workspace with how far it has come
(`workbench.runs.run_states`), and the one the app serves.

Choosing a run switches the arena (`Arena.switch`: new conversations, raters' included, use that run; a conversation
waiting for its vote keeps its own), and the tabs follow it: Train and Index take the picker as their run input,
Eval, Report and Your ratings read the arena's run when they act, and the Data tab shows its quality report. With
logins the picker is shown to admins only and its handlers refuse anyone else (`Access.admin_only`); its choices
(run names and steps, nothing per variant) are in the page, as the tabs' run lists always were, because Gradio
accepts from a session only values among the choices it knows for it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.runs import is_prepared, run_states
from workbench.session import Arena


class RunPicker:
    """The dropdown (values: run names; labels: `name · prepared, indexed, ...`) and the arena it switches."""

    def __init__(self, home: Path, arena: Arena, visible: bool = True):
        self.home, self.arena = home, arena
        self.dropdown = gr.Dropdown(
            self.choices(),  # also the values the server accepts from a session that has not loaded the page
            value=arena.name,
            label="Run: the one the arena, Train, Index, Eval, Report and Data work on",
            visible=visible,
            elem_id="wb-run",
        )

    def choices(self) -> list[tuple[str, str]]:
        return [(state.label, state.name) for state in run_states(self.home, self.arena.store)]

    def serve(self, run: str | None, changed: bool = False) -> None:
        """Switch the arena to prepared run `run` unless it serves it already; `changed`: its data was prepared
        again, so switch anyway (new reference answers, an engine built afresh)."""
        if run and (changed or run != self.arena.name) and is_prepared(run, self.home):
            self.arena.switch(run)

    def on_load(self):
        """The runs with their steps, and the one the app serves now (another admin may have switched it)."""
        return gr.update(choices=self.choices(), value=self.arena.name)

    def on_refresh(self):
        """Fresh steps in the labels (after a prepare or an index build), the choice left as it is."""
        return gr.update(choices=self.choices())
