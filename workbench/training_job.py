"""Fine-tuning in the background, so the app stays usable (and `workbench demo` serves at once) while it trains.

The job runs `workbench finetune` in a child process at the lowest CPU priority (`nice`), not in a thread of the
app: a chat turn then takes the cores at once, training uses what the turn leaves (see `threads`), and nothing the
UI does to this process (Gradio patches tqdm to track progress bars) can reach the training loop. A stop request is
a file the child looks for after each step (its `--stop-file`): the step finishes and the best adapter is kept. The
child's output goes to `HOME/.jobs/NAME.log`; a failure's reason is the error line it printed.

`training_job(name, home)` gives this process's one job for a run: the Train tab, the Arena and the demo's
background training share it, so a second start while it trains is refused instead of two loops writing one run
folder. The live curves and alerts are read from the files `finetune` appends to (`metrics.csv`, `events.jsonl`);
their last line may be half written while we read, so an unfinished line is skipped.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from workbench.config import Config
from workbench.finetune import planned_steps, replay_count
from workbench.records import read_split
from workbench.train_data import recipe_conversations
from workbench.workspace import (
    DEFAULT_ADAPTER,
    RAFT_ADAPTER,
    read_events,
    read_json,
    read_metrics,
    resolve_home,
    run_paths,
    write_text_atomic,
)

log = logging.getLogger(__name__)


class JobRunning(RuntimeError):
    """A start was requested for a run that is already training in this process."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job; `state` is idle, running, finished, stopped (on request) or failed (see `error`)."""

    name: str
    state: str
    step: int | None
    """Latest step in `metrics.csv`."""
    total: int | None
    """Steps the run aims for; None until known."""
    elapsed_s: float | None
    """Wall seconds since the start (model loading included), frozen at the end."""
    stop_requested: bool
    error: str | None
    summary: dict | None
    """The adapter's manifest (a sweep: its table, `workbench.sweep`), once the run has ended without failing."""
    train_s: float | None = None
    """Seconds the training loop has run up to `step` (model loading left out): what an ETA extrapolates."""
    adapter: str = DEFAULT_ADAPTER
    """The adapter this job trains (`runs/NAME/adapters/ADAPTER/`); in a sweep, the trial in progress."""
    trials: tuple[str, ...] = ()
    """A sweep's trials (adapter names) in order; empty for a single fine-tune."""

    @property
    def has_adapter(self) -> bool:
        """A finished or stopped run has written its best adapter to `runs/NAME/adapters/ADAPTER/adapter/`."""
        return self.state in ("finished", "stopped")


class TrainingJob:
    """Runs `workbench finetune` for one run in a child process; get it through `training_job`. Thread-safe."""

    def __init__(self, name: str, home: str | Path | None = None) -> None:
        self.name, self.home = name, resolve_home(home)
        self.paths = run_paths(name, self.home)
        self._lock = threading.Lock()
        self._hooks: list[Callable[[JobStatus], None]] = []
        self._state, self._error, self._summary = "idle", None, None
        self._stop_requested = False
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.log_file: Path | None = None
        self._total: int | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._fresh_since: float | None = None  # a new (not resumed) run: files older than this are the last run's
        self._trials: list[str] = []  # a sweep's trials; empty for one fine-tune
        self._sweep_table: Path | None = None

    def on_finish(self, hook: Callable[[JobStatus], None]) -> None:
        """Call `hook(status)` in a watcher thread whenever a later start ends (finished, stopped or failed)."""
        with self._lock:
            self._hooks.append(hook)

    def start(
        self, config: Config, max_steps: int | None = None, resume: bool | None = None, adapter: str | None = None
    ) -> None:
        """Start training adapter `adapter` in the background (default: `default`, or `raft` for the raft recipe;
        `resume` None: from its last checkpoint when there is one); raises `JobRunning` while this run is already
        training."""
        with self._lock:
            self._refuse_if_running()
            default = RAFT_ADAPTER if config.finetune.recipe == "raft" else DEFAULT_ADAPTER
            self.paths = run_paths(self.name, self.home, adapter or default)
            self._trials, self._sweep_table = [], None
            if resume is None:
                resume = (self.paths.checkpoint / "state.pt").exists() and self._summary_on_disk() is None
            command = ["finetune", "--adapter", self.paths.adapter_name]
            command += (["--max-steps", str(max_steps)] if max_steps is not None else []) + (["--resume"] * resume)
            self._launch(command, config, self._planned_total(config, max_steps), fresh=not resume)

    def start_sweep(
        self,
        config: Config,
        grid: list[str],
        sample: int | None = None,
        budget_steps: int | None = None,
        promote: bool = False,
    ) -> list[str]:
        """Start `workbench sweep` in the background (see `workbench.sweep`); returns its trials' adapter names.
        A bad grid raises `SweepError` before anything starts; `JobRunning` while this run is already training."""
        from workbench.sweep import parse_grid, plan_trials, sweep_file, sweep_id, trial_config

        axes = parse_grid(grid)
        trials = plan_trials(axes, sample)
        first = trial_config(config, trials[0], None, budget_steps)
        for trial in trials[1:]:
            trial_config(config, trial, None, budget_steps)
        with self._lock:
            self._refuse_if_running()
            self._trials = [t.adapter for t in trials]
            self.paths = run_paths(self.name, self.home, self._trials[0])
            self._sweep_table = sweep_file(self.name, self.home, sweep_id(axes, sample, 0, None, budget_steps))
            command = ["sweep", *[part for entry in grid for part in ("--grid", entry)]]
            command += (["--random", str(sample)] if sample else []) + (["--promote"] * promote)
            command += ["--budget-steps", str(budget_steps)] if budget_steps else []
            self._launch(command, config, self._planned_total(first, None), fresh=True)
        return list(self._trials)

    def _refuse_if_running(self) -> None:
        if self._state == "running":
            raise JobRunning(
                f"run {self.name!r} is already training (started {time.perf_counter() - self._started:.0f} s ago); "
                "cancel it or wait for it to end before starting again"
            )

    def _launch(self, command: list[str], config: Config, total: int | None, fresh: bool) -> None:
        """Run `workbench COMMAND` for this run in a child process, watched by a thread (the lock held)."""
        self._state, self._error, self._summary = "running", None, None
        self._total = total
        self._started, self._ended = time.perf_counter(), None
        self._fresh_since = time.time() if fresh else None
        self._stop_requested = False
        jobs = self.home / ".jobs"
        config_file, self.log_file = jobs / f"{self.name}.yaml", jobs / f"{self.name}.log"
        self._stop_file = jobs / f"{self.name}.stop"
        self._stop_file.unlink(missing_ok=True)
        command = [*command, "--name", self.name, "--home", str(self.home), "--stop-file", str(self._stop_file)]
        self._process = start_cli(command, config, config_file, self.log_file)
        self._thread = threading.Thread(target=self._watch, args=(self._process,), name=f"finetune-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def _summary_on_disk(self) -> dict | None:
        """This job's adapter's manifest (a sweep's: its table): written when a run ends, absent while none has."""
        if self._sweep_table is not None:
            return read_json(self._sweep_table) if self._sweep_table.is_file() else None
        return read_json(self.paths.adapter_manifest) if self.paths.adapter_manifest.is_file() else None

    def _planned_total(self, config: Config, max_steps: int | None) -> int | None:
        """The step count the run aims for, computed as `finetune` does; None when the run has no data yet."""
        if not self.paths.split("train").exists():
            return None
        settings = config.finetune
        examples = (
            len(read_split(self.paths.split("train")))  # one RAFT example per pair
            if settings.recipe == "raft"
            else len(recipe_conversations(self.paths, "train", settings.recipe, config.prepare.passage_words))
        )
        return planned_steps(examples + replay_count(examples, settings), settings, max_steps) if examples else None

    def stop(self) -> bool:
        """Ask the run to end cleanly after its current step, keeping the best adapter; False when not running."""
        with self._lock:
            if self._state != "running":
                return False
            self._stop_requested = True
            self._stop_file.touch()  # the step in progress finishes, the best adapter is kept
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (or `timeout` seconds pass); True when nothing is running."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def status(self) -> JobStatus:
        self._follow_sweep()
        with self._lock:
            state, error, summary, total = self._state, self._error, self._summary, self._total
            started, ended, stop_requested = self._started, self._ended, self._stop_requested
        rows = self.curves()
        elapsed = None if started is None else (ended or time.perf_counter()) - started
        return JobStatus(
            self.name,
            state,
            rows[-1]["step"] if rows else None,
            total,
            elapsed,
            stop_requested and state == "running",
            error,
            summary,
            rows[-1].get("elapsed_s") if rows else None,
            self.paths.adapter_name,
            tuple(self._trials),
        )

    def _follow_sweep(self) -> None:
        """In a sweep, point at the trial in progress: the last one whose curves this sweep has written."""
        with self._lock:
            trials, since = list(self._trials), self._fresh_since
        for trial in reversed(trials):
            paths = run_paths(self.name, self.home, trial)
            if paths.metrics.exists() and (since is None or paths.metrics.stat().st_mtime >= since):
                self.paths = paths
                return

    def curves(self) -> list[dict]:
        """The rows of `metrics.csv` so far (see `read_metrics`); none from an earlier run while a new one loads."""
        return read_metrics(self.paths.metrics) if self._current(self.paths.metrics) else []

    def alerts(self) -> list[dict]:
        """The events of `events.jsonl` so far (see `read_events`), with the same rule as `curves`."""
        return read_events(self.paths.events) if self._current(self.paths.events) else []

    def _current(self, path: Path) -> bool:
        with self._lock:
            since = self._fresh_since
        return path.exists() and (since is None or path.stat().st_mtime >= since)

    def _watch(self, process: subprocess.Popen) -> None:
        """Wait for the child, then record how it ended and call the hooks."""
        code = process.wait()
        summary, error = None, None
        section = self._summary_on_disk()
        if code == 0 and section is not None:
            summary = section
            stopped = summary.get("stopped") if self._trials else summary["outcome"] == "stopped"
            state = "stopped" if stopped else "finished"
        else:
            state, error = "failed", failure_reason(self.log_file, code)
            log.error("training run %s failed: %s (log: %s)", self.name, error, self.log_file)
        with self._lock:
            self._state, self._error, self._summary, self._ended = state, error, summary, time.perf_counter()
            self._stop_requested = False
            hooks = list(self._hooks)
        status = self.status()
        for hook in hooks:
            try:
                hook(status)
            except Exception:  # one failing hook must not stop the others
                log.exception("on_finish hook %r of run %s failed", hook, self.name)


def start_cli(arguments: list[str], config: Config, config_file: Path, log_file: Path) -> subprocess.Popen:
    """Run `workbench ARGUMENTS --config CONFIG_FILE` as a child process at the lowest CPU priority (`nice -n 19`),
    `config` written to `config_file` first and the child's output to `log_file` (emptied first)."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_file, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    command = [sys.executable, "-m", "workbench.cli", *arguments, "--config", str(config_file)]
    nice = shutil.which("nice")
    with open(log_file, "w", encoding="utf-8") as log:
        return subprocess.Popen(
            ([nice, "-n", "19"] if nice else []) + command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def failure_reason(
    log_file: Path, code: int, what: str = "training", progress: tuple[str, ...] = ("finetune:",)
) -> str:
    """Why a `what` child failed: its CLI error line, the last line of its traceback, or its exit status; lines
    starting with a `progress` prefix (its progress bars) are never the reason."""
    lines = [line.strip() for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines()]
    for line in reversed(lines):
        if ": error: " in line:  # the CLI's clear error for bad input
            return line.split(": error: ", 1)[1]
    last = next((line for line in reversed(lines) if line and not line.startswith((*progress, "\r"))), None)
    if code < 0:
        return f"{what} process ended by signal {-code}" + (f" after: {last}" if last else "")
    return (last or f"{what} process exited with status {code}") + f" (see {log_file})"


_JOBS: dict[Path, TrainingJob] = {}
_JOBS_LOCK = threading.Lock()


def training_job(name: str, home: str | Path | None = None) -> TrainingJob:
    """This process's one job for run `name` in workspace `home`, created on first use."""
    root = run_paths(name, home).root
    with _JOBS_LOCK:
        if root not in _JOBS:
            _JOBS[root] = TrainingJob(name, home)
        return _JOBS[root]


def train_in_background(name: str, config: Config, home: str | Path | None = None) -> TrainingJob:
    """Start training run `name` unless it has ended before (resuming an interrupted one); for `workbench demo`."""
    job = training_job(name, home)
    if not job.paths.adapter_manifest.is_file() and job.status().state != "running":
        job.start(config)
    return job


@atexit.register
def _stop_children() -> None:
    """When the app exits, its training children stop after their current step, keeping a checkpoint."""
    with _JOBS_LOCK:
        running = [job for job in _JOBS.values() if job.stop()]
    for job in running:
        job.wait(30)
