"""The Train tab: the fine-tuning settings as a form, an adapter name, Start and Cancel, a sweep form with its trial
table, the progress, curves and alerts of what trains, and the val loss curves of chosen adapters overlaid.

Training runs in a `TrainingJob` (a background thread), so the tab only starts it, asks it to stop, and polls it
every couple of seconds with a `gr.Timer`. The form is generated from `FinetuneConfig`: one input per field, its
docstring as the help text, and the config's own validation (messages naming the field) before anything starts.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args, get_origin

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from pydantic.fields import FieldInfo

from workbench.config import Config, ConfigError, FinetuneConfig, config_from_dict
from workbench.data.loaders import BadInputError
from workbench.training_job import JobRunning, JobStatus, TrainingJob
from workbench.ui.access import Access
from workbench.ui.render import esc
from workbench.workspace import adapter_aliases, adapter_names, check_adapter_name, read_json, read_metrics, run_paths

LOSS_COLOURS = {"train loss": "#1f77b4", "val loss": "#d62728"}
"""Fixed, so the val loss curve keeps its colour when it appears after the first train losses."""
NO_RUN = "No prepared run yet: add your data in the Data tab (or run `workbench prepare`) first."
ALERT_KINDS = ("spike", "overfit", "early_stop", "forgetting", "stopped")
CSS = """
.wb-train progress { width: 100%; height: 14px; }
.wb-alerts li { margin: 4px 0; }
.wb-alert-kind { font-weight: 700; text-transform: uppercase; font-size: 0.85em; margin-right: 6px; }
.wb-failed { white-space: pre-wrap; }
.wb-failed, .wb-alert-spike .wb-alert-kind, .wb-alert-overfit .wb-alert-kind, .wb-alert-forgetting .wb-alert-kind {
  color: #b42318;
}
"""


def prepared_runs(home: Path) -> list[str]:
    """Runs in `HOME/runs` with prepared training data."""
    runs = home / "runs"
    return sorted(p.name for p in runs.iterdir() if (p / "data" / "train.jsonl").is_file()) if runs.is_dir() else []


def _optional(annotation) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in get_args(annotation)


def field_input(name: str, field: FieldInfo, value) -> gr.components.Component:
    """The input for one `FinetuneConfig` field, chosen by its type, with its docstring as help text."""
    options = {"label": name, "info": " ".join((field.description or "").split()), "elem_id": f"wb-ft-{name}"}
    annotation = field.annotation
    base = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if get_origin(annotation) is Literal:
        return gr.Dropdown(list(get_args(annotation)), value=value, **options)
    if get_origin(annotation) is list:
        return gr.Dropdown(value, value=value, multiselect=True, allow_custom_value=True, **options)
    if base is str:
        return gr.Textbox(value or "", lines=2 if not _optional(annotation) else 1, **options)
    return gr.Number(value, precision=0 if base is int else None, **options)


def form_settings(values: dict) -> dict:
    """Form values as `finetune` settings: an empty optional field means None (its default)."""
    fields = FinetuneConfig.model_fields
    return {k: None if v in ("", None) and _optional(fields[k].annotation) else v for k, v in values.items()}


def status_html(status: JobStatus | None) -> str:
    """State, a step/total bar and timings of the run's job."""
    if status is None:
        return f"<p>{esc(NO_RUN)}</p>"
    step, total = status.step or 0, status.total
    words = {
        "idle": "not training in this session",
        "running": "stopping after this step" if status.stop_requested else "training",
        "finished": "finished",
        "stopped": "stopped on request; the best adapter so far is kept",
        "failed": "failed",
    }[status.state]
    what = "" if status.state == "idle" else f", adapter {status.adapter}"
    if status.trials:
        number = status.trials.index(status.adapter) + 1 if status.adapter in status.trials else 1
        what = f", sweep of {len(status.trials)} trials, trial {number} ({status.adapter})"
    parts = [f'<div class="wb-train"><p><b>{esc(status.name)}</b>{esc(what)}: {esc(words)}']
    if status.step is not None:
        parts.append(f" · step {step}" + (f" / {total}" if total else ""))
    if status.elapsed_s is not None:
        parts.append(f" · {status.elapsed_s:.0f} s")
    parts.append("</p>")
    if total:
        parts.append(f'<progress value="{min(step, total)}" max="{total}"></progress>')
    if status.summary and status.trials:
        best = status.summary.get("best")
        parts.append(f"<p>best trial: <b>{esc(best)}</b> (see the sweep table below)</p>" if best else "")
    elif status.summary:
        summary = status.summary
        parts.append(
            f"<p>best val loss {summary['best_val_loss']:.4f} at step {summary['best_step']} "
            f"(perplexity {summary['best_val_perplexity']:.2f}); {summary['tokens_per_s']:.0f} tokens/s</p>"
        )
    if status.error:
        parts.append(f'<pre class="wb-failed">{esc(status.error)}</pre>')
    return "".join(parts) + "</div>"


def aliases_html(home: Path, run: str) -> str:
    """Which adapters the variants `ft` and `ft_rag` answer with, once the run has any."""
    if not adapter_names(run, home):
        return ""
    aliases = adapter_aliases(run, home)
    return (
        f"<p>The variant ft answers with adapter <b>{esc(aliases['ft'])}</b>, ft_rag with "
        f"<b>{esc(aliases['ft_rag'])}</b>; every other adapter A answers as ft:A.</p>"
    )


def alerts_html(events: list[dict]) -> str:
    """The training alerts (spike, overfit, early stop, forgetting, stop), escaped, oldest first."""
    alerts = [e for e in events if e.get("kind") in ALERT_KINDS]
    if not alerts:
        return "<p>No alerts.</p>"
    items = "".join(
        f'<li class="wb-alert-{esc(e["kind"])}"><span class="wb-alert-kind">{esc(e["kind"].replace("_", " "))}</span>'
        f"step {esc(e.get('step'))}: {esc(e.get('message', ''))}</li>"
        for e in alerts
    )
    return f'<ul class="wb-alerts">{items}</ul>'


def loss_frame(rows: list[dict]) -> pd.DataFrame:
    """Train and val loss by step, long format (`step`, `loss`, `curve`) for one colour per curve."""
    points = [
        (row["step"], row[key], label)
        for row in rows
        for key, label in (("train_loss", "train loss"), ("val_loss", "val loss"))
        if row.get(key) is not None
    ]
    return _frame(points, ["step", "loss", "curve"])


def perplexity_frame(rows: list[dict]) -> pd.DataFrame:
    """Val perplexity by step (evaluation steps only)."""
    return _frame(
        [(r["step"], r["val_perplexity"]) for r in rows if r.get("val_perplexity") is not None], ["step", "perplexity"]
    )


def overlay_figure(curves: dict[str, list[dict]]) -> Figure | None:
    """Val loss by step of each chosen adapter, one colour and marker line each (a sweep trial evaluated once is
    one point), with a legend; None when none is chosen. Matplotlib draws it: Gradio's LinePlot fixes its colours
    from the first data it is sent, so adapters picked later were drawn without a colour."""
    if not curves:
        return None
    figure = Figure(figsize=(6, 3), layout="constrained")
    axes = figure.add_subplot()
    for adapter, rows in curves.items():
        points = [(row["step"], row["val_loss"]) for row in rows if row.get("val_loss") is not None]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{adapter} ({len(points)})")
    axes.set_xlabel("step")
    axes.set_ylabel("val loss")
    axes.legend(title="adapter (evaluations)", fontsize="small")
    return figure


def sweep_frame(table: dict | None) -> pd.DataFrame:
    """A sweep's trials as a table (`workbench.sweep`), the best marked."""
    columns = ["best", "adapter", "settings", "steps", "outcome", "best val loss", "val token F1", "wall s"]
    if not table:
        return pd.DataFrame([], columns=columns)
    rows = []
    for adapter in table.get("order") or list(table["trials"]):
        trial = table["trials"][adapter]
        rows.append(
            [
                "*" if adapter == table.get("best") else "",
                adapter,
                ", ".join(f"{k}={v}" for k, v in trial["settings"].items()),
                trial.get("steps"),
                trial.get("outcome") or "training",
                _rounded(trial.get("best_val_loss"), 4),
                _rounded(trial.get("val_token_f1"), 3),
                _rounded(trial.get("wall_seconds"), 0),
            ]
        )
    return pd.DataFrame(rows, columns=columns)


def _rounded(value, digits: int):
    return None if value is None else round(value, digits)


def latest_sweep(home: Path, run: str) -> dict | None:
    """The table of run `run`'s most recently written sweep, if any."""
    folder = run_paths(run, home).root / "sweeps"
    tables = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return read_json(tables[-1]) if tables else None


def _frame(points: list[tuple], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(points, columns=columns)
    return frame.astype({"step": "int64", columns[1]: "float64"} | ({"curve": "str"} if "curve" in columns else {}))


class TrainTab:
    """The components of the Train tab and their handlers; build inside a `gr.Blocks` context. The tab trains the
    run chosen in its own dropdown, or in `run` (the app's run picker, whose values are run names) when given."""

    def __init__(
        self,
        home: Path,
        name: str | None,
        config: Config,
        job_for: Callable[[str], TrainingJob],
        every_s: float = 2.0,
        access: Access | None = None,
        run: gr.Dropdown | None = None,
    ):
        admin = (access or Access()).admin_only
        self.config, self.job_for, self.home = config, job_for, home
        if run is None:
            runs = prepared_runs(home)
            run = gr.Dropdown(runs, value=name if name in runs else None, label="Run", elem_id="wb-train-run")
        self.run = run
        with gr.Accordion("Fine-tuning settings (config.finetune)", open=False):
            fields = FinetuneConfig.model_fields
            self.fields = {}
            names = list(fields)
            for start in range(0, len(names), 3):
                with gr.Row():
                    for key in names[start : start + 3]:
                        self.fields[key] = field_input(key, fields[key], getattr(config.finetune, key))
        with gr.Row():
            self.adapter = gr.Textbox(
                label="Adapter name",
                placeholder="default",
                info="Train into runs/RUN/adapters/NAME/ (empty: the run's default adapter, or raft for the raft "
                "recipe); the fine-tuned variants can answer with any of the run's adapters",
                elem_id="wb-train-adapter",
            )
            self.resume = gr.Checkbox(
                False, label="Resume from the adapter's last checkpoint", elem_id="wb-train-resume"
            )
        with gr.Row():
            self.start = gr.Button("Start training", variant="primary", elem_id="wb-train-start")
            self.cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="wb-train-cancel")
        with gr.Accordion("Sweep: one adapter per setting, compared on the val split", open=False):
            with gr.Row():
                self.grid = gr.Textbox(
                    lines=3,
                    label="Grid",
                    placeholder="lr=3e-4,1e-3\nr=8,16",
                    info="One setting per line, KEY=V1,V2: a finetune setting, or lr, r, alpha, dropout, batch, wd, "
                    "warmup. Every other setting comes from the form above.",
                    elem_id="wb-sweep-grid",
                )
                with gr.Column():
                    self.sample = gr.Number(
                        None, precision=0, label="Random trials", info="0: every combination", elem_id="wb-sweep-n"
                    )
                    self.budget = gr.Number(
                        None,
                        precision=0,
                        label="Step budget per trial",
                        info="0: the form's max_steps or epochs",
                        elem_id="wb-sweep-budget",
                    )
                    self.promote = gr.Checkbox(
                        False, label="Make the best trial the run's default adapter", elem_id="wb-sweep-promote"
                    )
            self.sweep_start = gr.Button("Start sweep", elem_id="wb-sweep-start")
            self.sweep_table = gr.Dataframe(
                sweep_frame(None), label="Latest sweep", interactive=False, elem_id="wb-sweep-table"
            )
        self.message = gr.HTML(css_template=CSS, elem_id="wb-train-message")
        self.progress = gr.HTML(css_template=CSS, elem_id="wb-train-progress")
        with gr.Row():
            self.losses = gr.LinePlot(
                x="step", y="loss", color="curve", color_map=LOSS_COLOURS, title="Loss", elem_id="wb-train-loss"
            )
            self.perplexity = gr.LinePlot(x="step", y="perplexity", title="Val perplexity", elem_id="wb-train-ppl")
        self.alerts = gr.HTML(css_template=CSS, elem_id="wb-train-alerts")
        with gr.Row():
            self.compare = gr.Dropdown(
                [],
                multiselect=True,
                label="Compare adapters",
                info="Their val loss curves, one colour each",
                elem_id="wb-train-compare",
            )
            self.overlay = gr.Plot(label="Val loss of the chosen adapters", elem_id="wb-train-overlay")
        self.timer = gr.Timer(every_s)

        live = [self.progress, self.losses, self.perplexity, self.alerts, self.start, self.cancel, self.sweep_start]
        live += [self.sweep_table, self.compare]
        self.start.click(
            admin(self.on_start), [self.run, self.resume, self.adapter, *self.fields.values()], [self.message, *live]
        )
        self.sweep_start.click(
            admin(self.on_sweep),
            [self.run, self.grid, self.sample, self.budget, self.promote, *self.fields.values()],
            [self.message, *live],
        )
        self.cancel.click(admin(self.on_cancel), [self.run], [self.message, *live])
        self.timer.tick(admin(self.on_refresh, quiet=True), [self.run], live, show_progress="hidden")
        self.run.change(admin(self.on_refresh), [self.run], live)
        self.compare.change(admin(self.on_compare), [self.run, self.compare], [self.overlay])

    def _config(self, values) -> Config:
        settings = form_settings(dict(zip(self.fields, values)))
        return config_from_dict(self.config.model_dump() | {"finetune": settings}, source="Fine-tuning settings")

    def on_start(self, run: str | None, resume: bool, adapter: str, *values):
        if not run:
            return {self.message: f"<p>{esc(NO_RUN)}</p>"} | self.on_refresh(run)
        try:
            config = self._config(values)
            name = check_adapter_name(adapter.strip()) if adapter and adapter.strip() else None
            self.job_for(run).start(config, resume=resume, adapter=name)
        except (ConfigError, JobRunning, ValueError) as exc:
            return {self.message: f'<pre class="wb-failed">Not started. {esc(exc)}</pre>'} | self.on_refresh(run)
        adapter = self.job_for(run).status().adapter
        started = f"<p>Started training adapter <b>{esc(adapter)}</b> of <b>{esc(run)}</b>.</p>"
        return {self.message: started} | self.on_refresh(run)

    def on_sweep(self, run: str | None, grid: str, sample, budget, promote: bool, *values):
        if not run:
            return {self.message: f"<p>{esc(NO_RUN)}</p>"} | self.on_refresh(run)
        entries = [line.strip() for line in (grid or "").splitlines() if line.strip()]
        try:
            trials = self.job_for(run).start_sweep(
                self._config(values),
                entries,
                sample=int(sample) if sample else None,
                budget_steps=int(budget) if budget else None,
                promote=promote,
            )
        except (ConfigError, JobRunning, BadInputError) as exc:
            return {self.message: f'<pre class="wb-failed">Not started. {esc(exc)}</pre>'} | self.on_refresh(run)
        names = ", ".join(trials)
        message = f"<p>Started a sweep of <b>{esc(run)}</b>: {len(trials)} trials ({esc(names)}).</p>"
        return {self.message: message} | self.on_refresh(run)

    def on_cancel(self, run: str | None):
        asked = bool(run) and self.job_for(run).stop()
        message = "Stopping after the current step; the best adapter is kept." if asked else "Nothing is training."
        return {self.message: f"<p>{esc(message)}</p>"} | self.on_refresh(run)

    def on_refresh(self, run: str | None):
        job = self.job_for(run) if run else None
        status = job.status() if job else None
        rows = job.curves() if job else []
        running = status is not None and status.state == "running"
        return {
            self.progress: status_html(status) + (aliases_html(self.home, run) if run else ""),
            self.losses: loss_frame(rows),
            self.perplexity: perplexity_frame(rows),
            self.alerts: alerts_html(job.alerts() if job else []),
            self.start: gr.Button(interactive=bool(run) and not running),
            self.sweep_start: gr.Button(interactive=bool(run) and not running),
            self.cancel: gr.Button(interactive=running and not status.stop_requested),
            self.sweep_table: sweep_frame(latest_sweep(self.home, run) if run else None),
            self.compare: gr.Dropdown(choices=adapter_names(run, self.home) if run else []),
        }

    def on_compare(self, run: str | None, chosen: list[str] | None):
        curves = {a: read_metrics(run_paths(run, self.home, a).metrics) for a in chosen or []} if run else {}
        return {self.overlay: overlay_figure(curves)}
