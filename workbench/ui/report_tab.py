"""The Report tab: the decision report of the run (the same `build_report` as `workbench report`), its downloads
(HTML, Markdown, JSON), the arena's ratings so far with their CSV, and the exports of `workbench export` (arena and
eval answers, DPO pairs and SFT examples from the votes) as JSONL.

Like every tab with per-variant figures, it is filled when opened or refreshed, never with the page, so a rater
voting blind is sent none. The report is rendered by `workbench.report.render`, which escapes every stored text.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

import gradio as gr

from workbench.data.loaders import BadInputError
from workbench.report import build_report, load_rows
from workbench.report.exports import export_ratings_csv, export_rows, write_rows
from workbench.report.render import render_html, render_html_body, render_markdown
from workbench.report.summary import variant_summary
from workbench.session import Arena
from workbench.ui.access import Access
from workbench.ui.arena import rater_id
from workbench.ui.render import CSS, esc, summary_html

LATEST = "latest"
NO_DRIFT = "none"
WARNING_CSS = ".wb-warning { color: #92400e; background: #fef3c7; padding: 0.4em 0.6em; border-radius: 4px; }"


def _eval_label(row: dict) -> str:
    """An eval as the picker shows it: id, split, questions, answers stored and when it started."""
    started = (row["started_at"] or "")[:16].replace("T", " ")
    return f"{row['id']} · {row['split']} · {row['questions']} questions · {row['stored']} answers · {started}"


class ReportTab:
    """The components of the Report tab; build inside a `gr.Tab` context and pass the tab itself."""

    def __init__(self, arena: Arena, tab: gr.Tab, access: Access | None = None):
        self.arena = arena
        self.out = Path(tempfile.mkdtemp(prefix="workbench-report-"))
        with gr.Row():
            self.eval = gr.Dropdown([LATEST], value=LATEST, label="Eval", elem_id="wb-report-eval", scale=2)
            self.against = gr.Dropdown(
                [NO_DRIFT], value=NO_DRIFT, label="Drift since eval", elem_id="wb-report-against", scale=2
            )
            self.by = gr.Textbox(
                label="Also break down by (QA fields, comma-separated)", elem_id="wb-report-by", scale=2
            )
            self.refresh = gr.Button("Refresh", elem_id="wb-report-refresh", scale=1)
        self.body = gr.HTML(elem_id="wb-report", css_template=WARNING_CSS)
        with gr.Row():
            self.downloads = [
                gr.DownloadButton(label, visible=False, elem_id=f"wb-report-{kind}")
                for kind, label in (("html", "Report (HTML)"), ("md", "Report (Markdown)"), ("json", "Report (JSON)"))
            ]
        gr.Markdown("### Arena ratings so far")
        self.ratings = gr.HTML(css_template=CSS, elem_id="wb-ratings")
        self.ratings_csv = gr.DownloadButton("Ratings (CSV)", visible=False, elem_id="wb-ratings-csv")
        outputs = [self.eval, self.against, self.body, *self.downloads, self.ratings, self.ratings_csv]
        self.outputs = outputs
        gr.Markdown("### Exports")
        with gr.Row():
            self.what = gr.Dropdown(
                [
                    ("Arena answers, with judges and claims", "answers"),
                    ("Eval answers, with judges and claims", "evals"),
                    ("DPO pairs from the votes (TRL's chat form)", "dpo"),
                    ("SFT examples: the answers raters liked", "sft"),
                ],
                value="dpo",
                label="Export (JSONL; unvoted turns name no variant)",
                scale=3,
                elem_id="wb-export-what",
            )
            self.export = gr.Button("Export", scale=1, elem_id="wb-export")
            self.exported = gr.DownloadButton("Download", visible=False, scale=1, elem_id="wb-export-file")
        self.export_note = gr.HTML(elem_id="wb-export-note")
        admin = (access or Access()).admin_only
        self.export.click(admin(self.on_export), [self.what], [self.export_note, self.exported])
        self.refresh.click(admin(self.on_refresh), [self.eval, self.by, self.against], outputs)
        for picker in (self.eval, self.against):  # a pick shows its report at once (`input`: the user's picks only)
            picker.input(admin(self.on_refresh), [self.eval, self.by, self.against], outputs)
        tab.select(admin(self.on_refresh, quiet=True), [self.eval, self.by, self.against], outputs)

    def on_refresh(
        self,
        chosen: str | None,
        by: str,
        against: str | None,
        progress=gr.Progress(),  # noqa: B008 - Gradio's own idiom
    ):
        """The report on eval `chosen` (or the latest), broken down `by` fields, with the drift since eval `against`
        when one is chosen."""
        hidden = [gr.update(visible=False)] * 3
        name = self.arena.name
        if not name:
            none = "<p>No prepared run yet.</p>"
            empty = gr.update(choices=[NO_DRIFT], value=NO_DRIFT)
            return gr.update(choices=[LATEST], value=LATEST), empty, none, *hidden, none, gr.update(visible=False)
        store = self.arena.store
        evals = [e for e in reversed(store.evals(name)) if e["stored"]]
        ids = [e["id"] for e in evals]
        chosen = chosen if chosen in ids else LATEST
        labels = [(LATEST, LATEST)] + [(_eval_label(e), e["id"]) for e in evals]
        picker = gr.update(choices=labels, value=chosen)
        against = against if against in ids else NO_DRIFT
        drift_picker = gr.update(choices=[(NO_DRIFT, NO_DRIFT)] + labels[1:], value=against)
        progress(0.2, desc="reading the stored answers")
        rows = load_rows(store, name, self.arena.config, self.arena.home, None if chosen == LATEST else chosen)
        before = None
        if against != NO_DRIFT and rows.eval and against != rows.eval["id"]:
            before = load_rows(store, name, self.arena.config, self.arena.home, against)
        progress(0.5, desc="computing intervals")
        fields, warning = [f.strip() for f in (by or "").split(",") if f.strip()], ""
        try:
            report = build_report(rows, by=fields, before=before)
        except BadInputError as exc:  # a field the questions lack: say so above the report without it
            warning = f'<p class="wb-warning">{esc(str(exc).removeprefix("--by "))}</p>'
            report = build_report(rows, before=before)
        body = warning + render_html_body(report)
        files = [gr.update(value=str(path), visible=True) for path in self._write(name, report)]
        csv = self.out / f"ratings-{name}.csv"
        count = export_ratings_csv(store, csv, name)
        table = summary_html(variant_summary(store, name)) + f"<p>{count} ratings stored for run {esc(name)}.</p>"
        return picker, drift_picker, body, *files, table, gr.update(value=str(csv), visible=True)

    def on_export(self, what: str):
        """Export `what` of the run the app serves to a JSONL file to download, and say how many rows it holds."""
        name = self.arena.name
        if not name:
            return "<p>No prepared run yet.</p>", gr.update(visible=False)
        path = self.out / f"{what}-{name}.jsonl"
        count = write_rows(export_rows(self.arena.store, what, name), path)
        if not count:
            why = " (DPO pairs and SFT examples come from voted arena turns)" if what in ("dpo", "sft") else ""
            return f"<p>No {esc(what)} rows in run {esc(name)} yet{why}: nothing to download.</p>", gr.update(
                visible=False
            )
        return f"<p>{count} {esc(what)} row(s) of run {esc(name)}.</p>", gr.update(value=str(path), visible=True)

    def cleared(self, name: str | None) -> list:
        """The tab emptied after another run was chosen (values for `outputs`): it fills again when opened or
        refreshed, rather than computing a report nobody may look at."""
        hidden = gr.update(visible=False)
        note = (
            f"<p>Run {esc(name)} chosen: press Refresh for its report.</p>" if name else "<p>No prepared run yet.</p>"
        )
        drift = gr.update(choices=[NO_DRIFT], value=NO_DRIFT)
        return [gr.update(choices=[LATEST], value=LATEST), drift, note, hidden, hidden, hidden, "", hidden]

    def _write(self, name: str, report: dict) -> list[Path]:
        stem = self.out / f"report-{name}"
        html, md, js = stem.with_suffix(".html"), stem.with_suffix(".md"), stem.with_suffix(".json")
        html.write_text(render_html(report), encoding="utf-8")
        md.write_text(render_markdown(report), encoding="utf-8")
        js.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        return [html, md, js]


class RatingsTab:
    """Your ratings: what this rater gave, per variant over the turns they voted on, and their own ratings as CSV
    (turns not voted on yet name the column, not the variant). Filled when opened, like every per-variant view."""

    def __init__(self, arena: Arena, tab: gr.Tab, rater: gr.BrowserState):
        self.arena = arena
        self.out = Path(tempfile.mkdtemp(prefix="workbench-ratings-"))
        self.table = gr.HTML(css_template=CSS, elem_id="wb-mine")
        self.csv = gr.DownloadButton("Your ratings (CSV)", visible=False, elem_id="wb-mine-csv")
        tab.select(self.on_open, [rater], [self.table, self.csv])

    def on_open(self, stored: str, request: gr.Request):
        name, rater = self.arena.name, rater_id(stored, request)
        if not name:
            return "<p>No prepared run yet.</p>", gr.update(visible=False)
        csv = self.out / f"ratings-{name}-{secrets.token_hex(4)}.csv"
        count = export_ratings_csv(self.arena.store, csv, name, rater=rater)
        summary = variant_summary(self.arena.store, name, rater=rater)
        table = summary_html(summary) + f"<p>{count} ratings by {esc(rater)} on run {esc(name)}.</p>"
        return table, gr.update(value=str(csv), visible=True)
