"""The web app: the blind arena, evals over a held-out split, the decision report with the ratings so far, training,
the index, and the Data tab where admins add their own corpus from the browser; a run picker at the top chooses the
run all of them work on, without restarting the app.

There is no separate chat with the base model: the arena's `base` variant is the one place for it, so a "base"
answer is the same wherever it is read.

One `Arena` (engine built on first use, one store) serves every browser and holds the run served: `Arena.switch`
changes it for everyone (raters see the run an admin chose), and the tabs read it when they act, so nothing holds a
run name captured at start. Each browser has its own session in `gr.State`. Generation queues: the arena's answers
run one turn at a time (`concurrency_limit=1`).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.auth import Users
from workbench.config import Config
from workbench.runs import run_states
from workbench.session import Arena
from workbench.training_job import TrainingJob, training_job
from workbench.ui.access import Access
from workbench.ui.arena import ArenaTab
from workbench.ui.data_tab import DataTab
from workbench.ui.eval_tab import EvalTab
from workbench.ui.index_tab import IndexTab
from workbench.ui.memory import bound_malloc_arenas
from workbench.ui.report_tab import RatingsTab, ReportTab
from workbench.ui.run_picker import RunPicker
from workbench.ui.train_tab import TrainTab
from workbench.workspace import resolve_home

QUEUE_SIZE = 256
"""Events waiting at once, all browsers together; past it a new one is refused at once, so a flood of requests
cannot grow the server's memory without bound (each rater may have one question waiting: `limits.asks_per_rater`)."""


def build_app(
    home: str | Path | None = None,
    name: str | None = None,
    config: Config | None = None,
    arena: Arena | None = None,
    access: Access | None = None,
) -> gr.Blocks:
    """The app over run `name` (default: `arena`'s run, else the first prepared run) in workspace `home`; `access`
    says who may use the admin tabs (default: everyone, the app having no logins)."""
    config = config or Config()
    access = access or Access()
    home = resolve_home(home)
    if arena is None:
        first = next((state.name for state in run_states(home)), None)
        arena = Arena(config, name or first, home)
    name = arena.name
    watched: set[str] = set()

    def job_for(run: str) -> TrainingJob:
        """Run `run`'s training job; when it writes an adapter, new conversations on that run get the ft columns."""
        job = training_job(run, home)
        if run not in watched:
            watched.add(run)
            job.on_finish(lambda status: arena.reload(run) if status.has_adapter else None)
        return job

    if name:
        job_for(name)  # a fine-tune started before the app (the demo's) is watched from the start
    admin = access.admin_only
    open_to_all = access.users is None  # with logins, admin parts appear once the login is known to be an admin's

    with gr.Blocks(title="workbench") as app:
        gr.Markdown("# workbench\nFine-tune, retrieve, or both? Add your data, then compare.")
        picker = RunPicker(home, arena, visible=open_to_all)
        with gr.Tab("Arena", elem_id="wb-tab-arena"):
            arena_tab = ArenaTab(arena, access=access, job_for=job_for)
        with gr.Tab("Your ratings", elem_id="wb-tab-mine") as mine:
            RatingsTab(arena, mine, arena_tab.rater)
        with gr.Tab("Eval", elem_id="wb-tab-eval", visible=open_to_all) as evals:
            eval_tab = EvalTab(
                home,
                name,
                config,
                store=arena.store,
                tab=evals,
                access=access,
                current=lambda: arena.name,
                queue_loader=arena.load_queue,
            )
        with gr.Tab("Report", elem_id="wb-tab-report", visible=open_to_all) as report_tab:
            report = ReportTab(arena, report_tab, access=access)
        app.load(arena_tab.on_load, [arena_tab.rater], arena_tab.loaded)
        with gr.Tab("Train", elem_id="wb-tab-train", visible=open_to_all) as train:
            TrainTab(home, name, config, job_for=job_for, access=access, run=picker.dropdown)
        with gr.Tab("Index", elem_id="wb-tab-index", visible=open_to_all) as index:
            index_tab = IndexTab(home, name, config, on_built=arena.reload, access=access, run=picker.dropdown)
        with gr.Tab("Data", elem_id="wb-tab-data", visible=open_to_all) as data:
            data_tab = DataTab(home, config, picker, index_tab, access=access, visible=open_to_all)
        admin_parts = [picker.dropdown, evals, report_tab, train, index, data]

        def on_pick_run(run: str | None):
            """Serve the chosen run; the Data tab shows its report, the Report tab waits for a refresh."""
            picker.serve(run)
            return [data_tab.on_run(run), *report.cleared(run)]

        def show_admin_parts(request: gr.Request):
            return [gr.update(visible=access.is_admin(request))] * len(admin_parts)

        picker.dropdown.change(
            admin(on_pick_run), [picker.dropdown], [data_tab.report, *report.outputs], show_progress="hidden"
        ).then(  # after the switch: the variants the new run can evaluate, its evals
            admin(eval_tab.on_open, quiet=True), [eval_tab.variants, eval_tab.chosen], eval_tab.opened
        )
        app.load(show_admin_parts, None, admin_parts)
        app.load(admin(picker.on_load, quiet=True), None, [picker.dropdown])
        app.load(admin(data_tab.on_current, quiet=True), None, [data_tab.report])
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
    config = config or Config()
    app = build_app(home, name, config, access=Access(users))
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    auth = users.check if users else None
    launch_kwargs.setdefault("max_file_size", config.limits.upload_file_bytes)  # refused in the browser already
    return app.launch(server_name=host, server_port=port, auth=auth, **launch_kwargs)
