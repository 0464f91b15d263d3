"""The Ratings tab: per variant, answers, mean stars, votes, ties and all-bad, human and automatic flags; CSV export.

It is filled when the tab is opened or refreshed, never with the page, so the page carries no results per variant
while a rater is still voting blind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from workbench.report.exports import export_ratings_csv
from workbench.report.summary import variant_summary
from workbench.session import Arena
from workbench.ui.render import CSS, esc, summary_html


class RatingsTab:
    """The components of the Ratings tab; build inside a `gr.Tab` context and pass the tab itself."""

    def __init__(self, arena: Arena, tab: gr.Tab):
        self.arena = arena
        self.export_dir = Path(tempfile.mkdtemp(prefix="workbench-ratings-"))
        self.refresh = gr.Button("Refresh", elem_id="wb-ratings-refresh")
        self.table = gr.HTML(css_template=CSS, elem_id="wb-ratings")
        self.download = gr.DownloadButton("Download ratings (CSV)", visible=False, elem_id="wb-ratings-csv")
        for trigger in (self.refresh.click, tab.select):
            trigger(self.on_refresh, None, [self.table, self.download])

    def on_refresh(self):
        name = self.arena.name
        if not name:
            return "<p>No prepared run.</p>", gr.update(visible=False)
        path = self.export_dir / f"ratings-{name}.csv"
        rows = export_ratings_csv(self.arena.store, path, name)
        table = summary_html(variant_summary(self.arena.store, name))
        return f"{table}<p>{rows} ratings stored for run {esc(name)}.</p>", gr.update(value=str(path), visible=True)
