"""An eval in the background, for the app's Eval tab: `workbench eval` in a child process at the lowest CPU priority.

As with training (`workbench.training_job`), the child runs `python -m workbench.cli eval` under `nice -n 19` with
the app's config written to `HOME/.jobs/NAME.eval.yaml` and its output in `HOME/.jobs/NAME.eval.log`, so a chat
turn takes the cores first and nothing the app does reaches the eval loop. A stop is a file the child looks for
as each answer ends (its `--stop-file`): the runner keeps every answer already stored and exits with status 130
("stopped"). A failure's reason is the CLI's `error:` line or the last line of its traceback.

Progress is read from the store, which the child writes one answer at a time: the answers stored for the job's eval
out of questions x variants (known once the child has registered the eval), their rate since this start, and the
time left at that rate. The job names its eval itself (`--eval-id ui-<timestamp>`), so it knows which row to read.

Resuming: the job remembers the request and config of its last start with the eval id it used. A start with the
same request and config while that eval is not finished passes the same `--eval-id`, so the child answers only
what is missing; any other start (or one after the eval finished) begins a new eval. Whatever the job remembers,
the runner refuses to continue an eval id under a changed setup, so answers of two setups never mix.

`eval_job(name, home)` gives this process's one job for a run: a second start while one runs is refused.
"""

from __future__ import annotations

import atexit
import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbench.config import Config
from workbench.training_job import failure_reason, start_cli
from workbench.workspace import resolve_home, run_paths

log = logging.getLogger(__name__)

STOPPED_CODES = (130, -signal.SIGINT)
"""Exit statuses of a stopped child: the runner's clean stop, or an interrupt (Ctrl-C) while it was loading."""


class EvalRunning(RuntimeError):
    """A start was requested for a run whose eval is already running in this process."""


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate: the `workbench eval` options other than the run, the config and the eval id."""

    variants: tuple[str, ...]
    split: str = "test"
    """`test`, `val` or a QA file."""
    limit: int | None = None
    """Only the first `limit` questions; None: all of them."""
    judges: tuple[str, ...] = ("reference",)
    judge_model: str = "local"

    def arguments(self) -> list[str]:
        """The request as `workbench eval` options."""
        options = ["--variants", ",".join(self.variants), "--split", self.split, "--judge-model", self.judge_model]
        options += ["--judges", ",".join(self.judges)] if self.judges else []
        return options + (["--limit", str(self.limit)] if self.limit is not None else [])


@dataclass(frozen=True)
class EvalStatus:
    """A snapshot of one eval job; `state` is idle, running, finished, stopped (on request) or failed (see `error`)."""

    name: str
    state: str
    eval_id: str | None
    stored: int | None
    """Answers of the eval in the store (all starts together); None until the child has registered the eval."""
    total: int | None
    """Questions x variants; None until the child has registered the eval."""
    elapsed_s: float | None
    """Wall seconds since this start (model loading included), frozen at the end."""
    rate: float | None
    """Answers stored per second by this start; None before its first."""
    eta_s: float | None
    """Seconds left at `rate`, while running."""
    stop_requested: bool
    error: str | None


class EvalJob:
    """Runs `workbench eval` for one run in a child process; get it through `eval_job`. Thread-safe."""

    def __init__(self, name: str, home: str | Path | None = None) -> None:
        self.name, self.home = name, resolve_home(home)
        jobs = self.home / ".jobs"
        self.config_file, self.log_file = jobs / f"{name}.eval.yaml", jobs / f"{name}.eval.log"
        self.stop_file = jobs / f"{name}.eval.stop"
        self._lock = threading.Lock()
        self._state, self._error, self._stop_requested = "idle", None, False
        self._eval_id: str | None = None
        self._last: tuple | None = None  # (request, config dump) of the last start
        self._stored_before = 0  # answers the eval had when this start began
        self._started: float | None = None
        self._ended: float | None = None
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._store = None

    @property
    def store(self):
        """The job's own connection to the store, opened on first use (the child writes through its own)."""
        with self._lock:
            if self._store is None:
                from workbench.store import Store

                self._store = Store.open(home=self.home)
            return self._store

    def start(self, config: Config, request: EvalRequest, eval_id: str | None = None) -> str:
        """Start the eval in the background and return its id: `eval_id` if given, the last start's when `request`
        and `config` are unchanged and its eval is not finished (a resume), else a new `ui-<timestamp>` id.
        Raises `EvalRunning` while this run's eval is running."""
        key = (request, config.model_dump_json())
        with self._lock:
            if self._state == "running":
                raise EvalRunning(
                    f"run {self.name!r} is already evaluating (eval {self._eval_id}); stop it or wait for it to end"
                )
            last_id = self._eval_id if self._last == key else None
        if eval_id is None and last_id is not None and not self._finished(last_id):
            eval_id = last_id
        eval_id = eval_id or datetime.now().strftime("ui-%Y%m%d-%H%M%S-%f")[:-3]
        stored_before = (self._row(eval_id) or {"stored": 0})["stored"]
        with self._lock:
            if self._state == "running":  # another start won the race while we read the store
                raise EvalRunning(f"run {self.name!r} is already evaluating (eval {self._eval_id})")
            self._state, self._error, self._stop_requested = "running", None, False
            self._eval_id, self._last, self._stored_before = eval_id, key, stored_before
            self._started, self._ended = time.perf_counter(), None
            self.stop_file.unlink(missing_ok=True)
            arguments = ["eval", "--name", self.name, "--home", str(self.home), "--eval-id", eval_id]
            arguments += ["--stop-file", str(self.stop_file)]
            self._process = start_cli(arguments + request.arguments(), config, self.config_file, self.log_file)
            self._thread = threading.Thread(target=self._watch, args=(self._process,), name=f"eval-{self.name}")
            self._thread.daemon = True
            self._thread.start()
        return eval_id

    def stop(self) -> bool:
        """Ask the eval to end after the answer in progress (its stop file; a signal would be lost on a child that
        inherited an ignored SIGINT): the answers stored so far are kept; False when nothing is running."""
        with self._lock:
            if self._state != "running" or self._process is None:
                return False
            self._stop_requested = True
            self.stop_file.parent.mkdir(parents=True, exist_ok=True)
            self.stop_file.touch()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current eval ends (or `timeout` seconds pass); True when nothing is running."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def status(self) -> EvalStatus:
        with self._lock:
            state, error, eval_id, stop_requested = self._state, self._error, self._eval_id, self._stop_requested
            started, ended, before = self._started, self._ended, self._stored_before
        row = self._row(eval_id) if eval_id else None
        stored, total = (row["stored"], row["questions"] * len(row["variants"])) if row else (None, None)
        elapsed = None if started is None else (ended or time.perf_counter()) - started
        new = (stored or 0) - before
        rate = new / elapsed if new > 0 and elapsed else None
        eta = (total - stored) / rate if rate and state == "running" and total is not None else None
        return EvalStatus(
            self.name, state, eval_id, stored, total, elapsed, rate, eta, stop_requested and state == "running", error
        )

    def _row(self, eval_id: str) -> dict | None:
        """The eval's row with `stored`, or None before the child has registered it."""
        return next((row for row in self.store.evals(self.name) if row["id"] == eval_id), None)

    def _finished(self, eval_id: str) -> bool:
        row = self._row(eval_id)
        return row is not None and row["finished_at"] is not None

    def _watch(self, process: subprocess.Popen) -> None:
        """Wait for the child, then record how it ended."""
        code = process.wait()
        with self._lock:
            stop_requested = self._stop_requested
        if code == 0:
            state, error = "finished", None
        elif code in STOPPED_CODES:
            state, error = "stopped", None
            if not stop_requested:
                log.warning("eval of run %s was interrupted from outside the app", self.name)
        else:
            state, error = "failed", failure_reason(self.log_file, code, "eval", progress=("eval ",))
            log.error("eval of run %s failed: %s (log: %s)", self.name, error, self.log_file)
        with self._lock:
            self._state, self._error, self._ended, self._stop_requested = state, error, time.perf_counter(), False


_JOBS: dict[Path, EvalJob] = {}
_JOBS_LOCK = threading.Lock()


def eval_job(name: str, home: str | Path | None = None) -> EvalJob:
    """This process's one eval job for run `name` in workspace `home`, created on first use."""
    root = run_paths(name, home).root
    with _JOBS_LOCK:
        if root not in _JOBS:
            _JOBS[root] = EvalJob(name, home)
        return _JOBS[root]


@atexit.register
def _stop_children() -> None:
    """When the app exits, its eval children stop, keeping every answer already stored."""
    with _JOBS_LOCK:
        running = [job for job in _JOBS.values() if job.stop()]
    for job in running:
        job.wait(30)
