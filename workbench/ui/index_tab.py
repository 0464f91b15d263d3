"""The Index tab: build or update a run's FAISS index with progress, read its manifest's stats, and try searches.

The build reports progress through the core's tqdm bars (`gr.Progress(track_tqdm=True)`). Every text that comes
from the corpus (titles, headings, chunk text) is escaped before it is shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.retrieval.index import QUALITY_KS, Hit, Retriever, build_index
from workbench.ui.access import Access
from workbench.ui.render import esc
from workbench.workspace import index_paths, read_json

CSS = """
.wb-hit { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; margin: 8px 0; }
.wb-hit-head { font-size: 0.9em; color: var(--body-text-color-subdued); }
.wb-hit-path { font-weight: 600; margin: 2px 0 4px; }
.wb-hit-text { white-space: pre-wrap; line-height: 1.4; }
.wb-failed { color: #b42318; white-space: pre-wrap; }
"""


def indexable_runs(home: Path) -> list[str]:
    """Runs in `HOME/runs` with prepared documents."""
    runs = home / "runs"
    return sorted(p.name for p in runs.iterdir() if (p / "documents.jsonl").is_file()) if runs.is_dir() else []


def stats_markdown(manifest: dict | None) -> str:
    """Counts, index type, how and how fast it was built, and retrieval quality on the test split."""
    if manifest is None:
        return "No index yet: press **Build index**."
    build, counts, index = manifest["build"], manifest["counts"], manifest["index"]
    mode = build["mode"] + (f" ({build['why_full']})" if build.get("why_full") else "")
    work = f"{build['embedded_chunks']} embedded, {build['reused_chunks']} reused, {build['removed_chunks']} removed"
    speed = f", {build['chunks_per_s']:.0f} chunks/s" if build.get("chunks_per_s") else ""
    lines = [
        "| Statistic | Value |",
        "|---|---|",
        f"| Chunks | {counts['chunks']} |",
        f"| Documents | {counts['documents']} |",
        f"| Index type | {index['type']}{' + BM25 (hybrid)' if index.get('hybrid') else ''} |",
        f"| Embedder | {manifest['embedder'].get('name', '?')} |",
        f"| Build | {mode}: {work} |",
        f"| Build time | {build['seconds']:.1f} s (embedding {build['embed_seconds']:.1f} s{speed}) |",
    ]
    test = (manifest.get("quality") or {}).get("test")
    if test:
        recalls = ", ".join(f"@{k} {test[f'recall@{k}']:.3f}" for k in QUALITY_KS)
        lines.append(f"| Test recall | {recalls} ({test['questions']} questions) |")
        lines.append(f"| Test MRR | {test['mrr']:.3f} |")
    else:
        lines.append("| Test quality | no test questions naming their documents |")
    return "\n".join(lines)


def hits_html(hits: list[Hit]) -> str:
    """Search results: rank, score, chunk id, title › headings and the text, all escaped."""
    if not hits:
        return "<p>No chunks found.</p>"
    return "".join(
        f'<div class="wb-hit"><div class="wb-hit-head">#{hit.rank} · score {hit.score:.4f} · {esc(hit.chunk.id)}'
        "</div>"
        f'<div class="wb-hit-path">{" › ".join(esc(part) for part in _path(hit))}</div>'
        f'<div class="wb-hit-text">{esc(hit.chunk.text)}</div></div>'
        for hit in hits
    )


def _path(hit: Hit) -> list[str]:
    """Title › headings, without the top heading when it only repeats the title."""
    headings = hit.chunk.headings
    return [hit.chunk.title, *(headings[1:] if headings[:1] == [hit.chunk.title] else headings)]


class IndexTab:
    """The components of the Index tab and their handlers; build inside a `gr.Blocks` context.

    `on_built(name)` runs after each successful build, so the app can point its RAG variants at the new index. The
    tab works on the run chosen in its own dropdown, or in `run` (the app's run picker, valued by run names).
    """

    def __init__(
        self,
        home: Path,
        name: str | None,
        config: Config,
        on_built: Callable[[str], None] | None = None,
        access: Access | None = None,
        run: gr.Dropdown | None = None,
    ):
        admin = (access or Access()).admin_only
        self.home, self.config, self.on_built = home, config, on_built
        self._retrievers: dict[str, Retriever] = {}
        self._lock = threading.Lock()
        runs = indexable_runs(home)
        name = name if name in runs else None
        self.run = run or gr.Dropdown(runs, value=name, label="Run", elem_id="wb-index-run")
        with gr.Row():
            self.build = gr.Button("Build index", variant="primary", elem_id="wb-index-build")
            self.update = gr.Button("Update (re-embed changed documents only)", elem_id="wb-index-update")
        self.message = gr.HTML(css_template=CSS, elem_id="wb-index-message")
        self.stats = gr.Markdown(self.stats_for(name), elem_id="wb-index-stats")
        with gr.Row():
            self.query = gr.Textbox(label="Search the index", scale=4, elem_id="wb-index-query")
            self.k = gr.Slider(1, 20, value=config.index.top_k, step=1, label="Chunks", scale=1, elem_id="wb-index-k")
        self.search = gr.Button("Search", elem_id="wb-index-search")
        self.results = gr.HTML(css_template=CSS, elem_id="wb-index-results")

        self.build.click(admin(self.on_build), [self.run], [self.message, self.stats], concurrency_id="index")
        self.update.click(admin(self.on_update), [self.run], [self.message, self.stats], concurrency_id="index")
        for trigger in (self.search.click, self.query.submit):
            trigger(admin(self.on_search), [self.run, self.query, self.k], [self.results])
        self.run.change(admin(self.on_run), [self.run], [self.stats, self.results])

    def on_run(self, run: str | None) -> tuple[str, str]:
        return self.stats_for(run), ""

    def stats_for(self, run: str | None) -> str:
        if not run:
            return "No prepared run yet: add your data in the Data tab (or run `workbench prepare`) first."
        manifest = index_paths(run, self.home).manifest
        return stats_markdown(read_json(manifest) if manifest.exists() else None)

    def on_build(self, run: str | None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's own idiom
        return self._build(run, update=False)

    def on_update(self, run: str | None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's own idiom
        return self._build(run, update=True)

    def _build(self, run: str | None, update: bool):
        if not run:
            return "<p>Choose a prepared run first.</p>", self.stats_for(run)
        try:
            manifest = build_index(run, self.config, self.home, update=update, progress=True)
        except BadInputError as exc:
            return f'<p class="wb-failed">{esc(exc)}</p>', self.stats_for(run)
        with self._lock:
            self._retrievers.pop(run, None)
        if self.on_built is not None:
            self.on_built(run)
        done = "updated" if manifest["build"]["mode"] == "update" else "built (full)"
        return f"<p>Index of <b>{esc(run)}</b> {done}.</p>", stats_markdown(manifest)

    def on_search(self, run: str | None, query: str, k: float):
        if not run or not (query or "").strip():
            return "<p>Choose a run and type a question or keywords.</p>"
        try:
            return hits_html(self._retriever(run).search(query, int(k)))
        except BadInputError as exc:
            return f'<p class="wb-failed">{esc(exc)}</p>'

    def _retriever(self, run: str) -> Retriever:
        with self._lock:
            if run not in self._retrievers:
                self._retrievers[run] = Retriever.load(run, self.config, self.home)
            return self._retrievers[run]
