"""The web app: the blind arena, evals over a held-out split, the decision report with the ratings so far, training,
the index and the run's data-quality report.

There is no separate chat with the base model: the arena's `base` variant is the one place for it, so a "base"
answer is the same wherever it is read.

One `Arena` (engine built on first use, one store) serves every browser; each browser has its own session in
`gr.State`. Generation queues: the arena's answers run one turn at a time (`concurrency_limit=1`).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.auth import Users
from workbench.config import Config
from workbench.session import Arena
from workbench.training_job import training_job
from workbench.ui.access import Access
from workbench.ui.arena import ArenaTab
from workbench.ui.eval_tab import EvalTab
from workbench.ui.index_tab import IndexTab
from workbench.ui.memory import bound_malloc_arenas
from workbench.ui.report_tab import RatingsTab, ReportTab
from workbench.ui.train_tab import TrainTab
from workbench.workspace import resolve_home, run_paths

QUEUE_SIZE = 256
"""Events waiting at once, all browsers together; past it a new one is refused at once, so a flood of requests
cannot grow the server's memory without bound (each rater may have one question waiting: `limits.asks_per_rater`)."""


def _runs(home: Path) -> list[str]:
    runs = home / "runs"
    return sorted(p.name for p in runs.iterdir() if (p / "quality.md").is_file()) if runs.is_dir() else []


def _quality(home: Path, name: str | None) -> str:
    if not name:
        return "No prepared run yet: run `workbench prepare --name NAME --corpus PATH [--qa PATH]`."
    return run_paths(name, home).quality_md.read_text(encoding="utf-8")


def build_app(
    home: str | Path | None = None,
    name: str | None = None,
    config: Config | None = None,
    arena: Arena | None = None,
    access: Access | None = None,
) -> gr.Blocks:
    """The app over run `name` (default: the first prepared run) in workspace `home`; `access` says who may use the
    admin tabs (default: everyone, the app having no logins)."""
    config = config or Config()
    access = access or Access()
    home = resolve_home(home)
    runs = _runs(home)
    name = name or (runs[0] if runs else None)
    arena = arena or Arena(config, name, home)
    job = training_job(name, home) if name else None
    if job:  # a finished (or stopped) fine-tune brings the ft columns into new conversations
        job.on_finish(lambda status: arena.reload() if status.has_adapter else None)
    admin = access.admin_only
    open_to_all = access.users is None  # with logins, admin tabs appear once the login is known to be an admin's

    with gr.Blocks(title="workbench") as app:
        gr.Markdown("# workbench\nFine-tune, retrieve, or both? Prepare a corpus, then compare.")
        with gr.Tab("Arena", elem_id="wb-tab-arena"):
            arena_tab = ArenaTab(arena, job, access=access)
        with gr.Tab("Your ratings", elem_id="wb-tab-mine") as mine:
            RatingsTab(arena, mine, arena_tab.rater)
        with gr.Tab("Eval", elem_id="wb-tab-eval", visible=open_to_all) as evals:
            EvalTab(home, name, config, store=arena.store, tab=evals, access=access)
        with gr.Tab("Report", elem_id="wb-tab-report", visible=open_to_all) as report_tab:
            ReportTab(arena, report_tab, access=access)
        app.load(arena_tab.on_load, [arena_tab.rater], arena_tab.loaded)
        with gr.Tab("Train", elem_id="wb-tab-train", visible=open_to_all) as train:
            TrainTab(home, name, config, job_for=lambda run: training_job(run, home), access=access)
        with gr.Tab("Index", elem_id="wb-tab-index", visible=open_to_all) as index:
            IndexTab(home, name, config, on_built=lambda run: arena.reload(), access=access)
        with gr.Tab("Data", elem_id="wb-tab-data", visible=open_to_all) as data:
            run = gr.Dropdown(choices=runs, value=name, label="Run", interactive=bool(runs))
            report = gr.Markdown(_quality(home, name) if open_to_all else "")
            run.change(admin(lambda chosen: _quality(home, chosen)), run, report)
        admin_tabs = [evals, report_tab, train, index, data]

        def show_admin_tabs(request: gr.Request):
            return [gr.update(visible=access.is_admin(request))] * len(admin_tabs)

        app.load(show_admin_tabs, None, admin_tabs)
        app.load(admin(lambda chosen: _quality(home, chosen), quiet=True), run, report)
    return app


def launch(
    home=None,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    config: Config | None = None,
    users: Users | None = None,
    **launch_kwargs,
):
    """Serve the app (loopback by default), with logins when `users` is given; `launch_kwargs` go to
    `gr.Blocks.launch` (prevent_thread_lock...)."""
    bound_malloc_arenas()
    app = build_app(home, name, config, access=Access(users))
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    auth = users.check if users else None
    return app.launch(server_name=host, server_port=port, auth=auth, **launch_kwargs)
