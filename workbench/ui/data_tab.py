"""The Data tab: add your data from the browser (name a run, upload documents or a .zip and an optional QA set,
Prepare), read the run's quality report, and build its index with one more click.

Prepare is `workbench.data.upload.prepare_upload`: the upload lands in the workspace (refused whole, with the file
and what to do, when a name or a size is unsafe) and `workbench prepare`'s own function prepares it, so the quality
report is the CLI's. A prepared run becomes the one the app serves (the run picker shows it, the arena switches to
it). Build index is the Index tab's build (`IndexTab.on_build`) on the picker's run. File names and reasons shown
here are escaped; the quality report is the Markdown `prepare` wrote (corpus text escaped there).

Below, in its own section, synthetic QA for the picker's run (`workbench.ui.synth_panel`): generate pairs, review
them, apply them to the splits, as `workbench synth` does.
"""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.data.quality import literal
from workbench.data.upload import Upload, prepare_upload, uploads_folder
from workbench.runs import is_prepared
from workbench.ui.access import Access
from workbench.ui.index_tab import IndexTab
from workbench.ui.render import esc
from workbench.ui.run_picker import RunPicker
from workbench.ui.synth_panel import SynthPanel
from workbench.workspace import read_json, run_paths

CSS = (
    ".wb-failed { color: #b42318; white-space: pre-wrap; }\n.wb-warn { color: #b54708; }\n"
    ".wb-skipped li { margin: 2px 0; }\n"
)
NO_RUN = "No prepared run yet: add your data above, or run `workbench prepare --name NAME --corpus PATH`."


def quality_text(home: Path, name: str | None) -> str:
    """Run `name`'s quality report as `prepare` wrote it (Markdown), uploaded files named as the user named them,
    or what to do without one."""
    if not name or not is_prepared(name, home):
        return NO_RUN
    paths = run_paths(name, home)
    text = paths.quality_md.read_text(encoding="utf-8")
    uploads = f"{uploads_folder(name, home)}/"
    text = as_uploaded(as_uploaded(text, literal(uploads)), uploads)  # table cells are escaped, list items not
    applied = read_json(paths.manifest).get("synth") if paths.manifest.is_file() else None
    if applied:  # the report predates them: say what the splits hold now
        added = applied["added"]
        text += (
            f"\n\n**Synthetic QA pairs applied since** ({applied['applied_at'][:16].replace('T', ' ')} UTC): train "
            f"+{added['train']}, val +{added['val']}, test +{added['test']} rows; the tables above are as prepared.\n"
        )
    return text


def as_uploaded(text: str, uploads: str) -> str:
    """`text` with the landed files of the uploads folder `uploads` (`HOME/uploads/NAME/`, as written in `text`)
    named by their path in the upload: `.../STAMP/corpus/notes/a.md` is `notes/a.md`, `.../STAMP/qa/qa.csv` `qa.csv`."""
    return re.sub(re.escape(uploads) + r"[^/\s|]+/(?:corpus|qa)/", "", text)


def prepared_html(name: str, upload: Upload, report: dict, replaced: bool) -> str:
    """What a prepare did, in a few lines: documents kept, the files skipped with their reasons, what next."""
    docs, skipped = report["documents"], report["files"]["skipped"]
    again = " (its earlier data replaced; adapters and index kept)" if replaced else ""
    lines = [
        f"<p>Prepared run <b>{esc(name)}</b>{esc(again)}: {len(upload.files)} file(s) uploaded, "
        + f"{docs['kept']} document(s) kept of {docs['loaded']} loaded, {len(skipped)} file(s) skipped. "
        + "The app now serves this run.</p>"
    ]
    if skipped:
        uploads = f"{upload.root.parent}/"
        items = "".join(
            f"<li><b>{esc(as_uploaded(entry['source'], uploads))}</b>: {esc(entry['reason'])}</li>" for entry in skipped
        )
        lines.append(f'<ul class="wb-skipped">{items}</ul>')
    lines.append(_questions_note(report))
    lines.append("<p>Next: <b>Build index</b> for the RAG variants, then compare in the Arena.</p>")
    return "".join(lines)


def _questions_note(report: dict) -> str:
    """A warning when the run has no QA set, or no test questions: what that costs and where to get questions."""
    synthetic = "generate question-answer pairs from your documents under <b>Synthetic QA pairs</b> below"
    if report["qa"] is None:
        return (
            '<p class="wb-warn">No QA set: the fine-tune learns the text under each heading, and Eval can only ask '
            'what a section says ("What does ... say?") and how a passage goes on, not the questions your users ask. '
            f"For questions and answers, {synthetic}, or prepare again with a QA file.</p>"
        )
    if not report["splits"]["sizes"]["test"]:
        return (
            '<p class="wb-warn">The test split holds no questions, so Eval has nothing to measure: '
            f"{synthetic} (accepted pairs of test documents go into test), or prepare again with more questions.</p>"
        )
    return ""


class DataTab:
    """The components of the Data tab and their handlers; build inside a `gr.Tab` context, after the Index tab.

    `picker` is the app's run picker (a prepare switches it to the new run), `index` the Index tab whose build the
    Build index button runs; `visible` says whether the page may carry the current run's report (no logins)."""

    def __init__(
        self,
        home: Path,
        config: Config,
        picker: RunPicker,
        index: IndexTab,
        access: Access | None = None,
        visible: bool = True,
    ):
        admin = (access or Access()).admin_only
        self.home, self.config, self.picker = home, config, picker
        gr.Markdown(
            "### Add your data\nName the run, choose your documents (.md .txt .html .pdf .jsonl .csv, or one .zip of "
            "them) and, if you have one, a QA set (.jsonl or .csv with question,answer), then press **Prepare**."
        )
        with gr.Row():
            self.name = gr.Textbox(label="Run name", placeholder="e.g. support-docs", scale=3, elem_id="wb-data-name")
            self.skip_rows = gr.Checkbox(
                False, label="Skip malformed .jsonl/.csv rows", scale=1, elem_id="wb-data-skip-rows"
            )
        with gr.Row():
            self.files = gr.File(file_count="multiple", label="Documents or a .zip", elem_id="wb-data-files")
            self.qa = gr.File(label="QA set (optional)", elem_id="wb-data-qa")
        with gr.Row():
            self.prepare = gr.Button("Prepare", variant="primary", elem_id="wb-data-prepare")
            self.build = gr.Button("Build index", elem_id="wb-data-index")
        self.message = gr.HTML(css_template=CSS, elem_id="wb-data-message")
        self.built = gr.HTML(css_template=CSS, elem_id="wb-data-built")
        self.report = gr.Markdown(quality_text(home, picker.arena.name) if visible else "", elem_id="wb-data-report")
        self.synth = SynthPanel(home, config, picker.dropdown, access, on_applied=self.on_applied)

        prepared = [self.message, self.built, self.report, picker.dropdown]
        self.prepare.click(
            admin(self.on_prepare), [self.name, self.files, self.qa, self.skip_rows], prepared, concurrency_id="prepare"
        )
        self.build.click(
            admin(index.on_build), [picker.dropdown], [self.built, index.stats], concurrency_id="index"
        ).then(admin(picker.on_refresh, quiet=True), None, [picker.dropdown], show_progress="hidden")

    def on_prepare(
        self,
        name: str,
        files: list[str] | None,
        qa: str | None,
        skip_rows: bool,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's own idiom
    ):
        name = (name or "").strip()
        replaced = bool(name) and is_prepared(name, self.home)
        try:
            upload, report = prepare_upload(
                name, files or [], qa, self.config, self.home, skip_bad_rows=bool(skip_rows), progress=True
            )
        except BadInputError as exc:
            return {self.message: f'<p class="wb-failed">Not prepared: {esc(exc)}</p>'}
        self.picker.serve(name, changed=True)
        return {
            self.message: prepared_html(name, upload, report, replaced),
            self.built: "",
            self.report: quality_text(self.home, name),
            self.picker.dropdown: gr.update(choices=self.picker.choices(), value=name),
        }

    def on_applied(self, run: str) -> None:
        """Synthetic pairs went into `run`'s splits: if the app serves it, its reference answers are read again."""
        if run == self.picker.arena.name:
            self.picker.serve(run, changed=True)

    def on_run(self, run: str | None) -> str:
        """The chosen run's quality report."""
        return quality_text(self.home, run)

    def on_current(self) -> str:
        """The quality report of the run the app serves (on page load)."""
        return quality_text(self.home, self.picker.arena.name)
