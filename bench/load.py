"""The arena under load: N raters (20, then 50) asking and voting at once through `gradio_client`, against the app
served as `workbench serve` serves it (a child process on a free loopback port, its own queue settings).

The demo is prepared and indexed in a temporary workspace; the app runs the packaged default model with two
variants (`base` and `rag`) and `chat.max_new_tokens` 16, so one run fits in a few minutes on 2 CPU cores. Before
the raters start, one warm-up rater loads the engine and answers one turn (not counted). Then every rater, each
its own thread and its own `Client` (a browser session: the arena's `gr.State` lives server-side under the
client's session hash), all released at once: opens the app (`/on_load`, which gives its rater id), asks one
question of the demo's QA set (a different one each, test split first) as the Ask button does (`/on_accept`, then
`/on_ask`) and waits for both answers and their checks, then sends stars for both columns and a vote (a column, a
tie or all bad; seeded per rater) through `/on_submit`. Every rater asks exactly once, so the turns queue behind
one another (the arena answers one turn at a time) and the later votes arrive while other turns generate.
Figures, one section per rater count:
- `lost_votes`: votes sent minus the raters' rating rows with a vote in the workspace's store afterwards (read
  with `Store.ratings` once the server has stopped; goal 0); `lost_stars` likewise for star ratings;
- `vote_p50_ms`, `vote_p95_ms`, `vote_max_ms`: wall time of the `/on_submit` call (goal p95 < 500 with 50 raters);
- `ask_wait_p50_s`, `ask_wait_p95_s`: from the click (`/on_accept` sent) until its first streamed output (the arena's
  first yield, the empty columns, comes before any generation, so this is the queue wait), and `ask_total_p50_s`,
  `ask_total_p95_s` until the last (answers and checks done);
- `turn_s`: the run's wall time over its asks (the server's time per turn under load);
- `asks`, `votes`, `errors` (failed calls; the first few in `error_samples`), `connect_p95_ms` (`Client(...)`);
- `server_rss_mb_start` (after the warm-up turn), `server_rss_mb_end` (after the last vote) and
  `server_rss_mb_peak` (VmHWM) of the server process. Before the app capped glibc's malloc arenas and trimmed the
  heap after each turn (`workbench/ui/memory.py`) it grew with the turns served, 1.5 -> 3.1 GB over 50 turns:
  freed memory held in per-thread arenas (the handlers run on Gradio's worker threads), not objects kept alive.
  With the cap alone, 1.5 -> 2.2 GB over 50; with the cap and the trim, 1.3 -> 1.6 GB.
Usage: python bench/load.py [--raters 20,50] [--tokens 16]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.data.prepare import prepare
from workbench.records import read_split
from workbench.retrieval.index import build_index
from workbench.store import Store
from workbench.workspace import run_paths

DEMO = Path(__file__).resolve().parent.parent / "demo"
VARIANTS = ["base", "rag"]
VOTES = ["A", "B", "tie", "all_bad"]
HTTP = {"timeout": 60}
"""Each HTTP request's timeout, as a browser waits for a busy page: with gradio_client's default (httpx's 5 s), 19 of
50 raters failed with a read timeout before asking. A queued turn's event stream carries a heartbeat every 15 s."""
CALL_TIMEOUT_S = 900  # a rater gives up on one call after this long (50 queued turns take a few minutes)


def questions(home: Path, count: int) -> list[str]:
    """`count` different questions of the prepared demo, the test split first."""
    found: list[str] = []
    for split in ("test", "val", "train"):
        for row in read_split(run_paths("demo", home).split(split)):
            if row.is_question and row.question and row.question not in found:
                found.append(row.question)
    if len(found) < count:
        raise SystemExit(f"the demo has {len(found)} questions; ask with at most that many raters")
    return found[:count]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path, config: Path, port: int, log: Path) -> subprocess.Popen:
    """`workbench serve` on `port` (its output to `log`), once it answers HTTP."""
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "workbench.cli", "serve", "--home", str(home), "--config", str(config)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--name", "demo", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the app did not answer within 180 s")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of process `pid` in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return psutil.Process(pid).memory_info().rss / 2**20, peak / 1024


class Rater:
    """One simulated browser: open the app, ask `question`, rate both columns and vote."""

    def __init__(self, url: str, question: str, seed: int, accept: bool = True):
        self.url, self.question, self.rng, self.accept = url, question, random.Random(seed), accept
        self.rater: str | None = None
        self.connect_s = self.ask_wait_s = self.ask_total_s = self.vote_s = None
        self.asked = self.voted = self.starred = 0
        self.errors: list[str] = []

    def run(self, start: threading.Barrier) -> None:
        from gradio_client import Client

        start.wait()
        client, step = None, "connect"
        try:
            began = time.perf_counter()
            client = Client(self.url, verbose=False, analytics_enabled=False, download_files=False, httpx_kwargs=HTTP)
            self.connect_s = time.perf_counter() - began
            step = "load"
            self.rater = client.predict("", api_name="/on_load")[0]
            step = "ask"
            self.ask(client)
            step = "vote"
            self.vote(client)
        except Exception as exc:  # noqa: BLE001 - a failed call is a figure (`errors`), not a crash of the run
            self.errors.append(f"{step}: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            if client is not None:
                client.close()

    def ask(self, client) -> None:
        began = time.perf_counter()
        self.asked = 1
        if self.accept:  # what the Ask button runs first, outside the queue; the question follows if it passes
            client.predict(self.rater, api_name="/on_accept")
        job = client.submit(self.question, VARIANTS, self.rater, api_name="/on_ask")
        deadline = began + CALL_TIMEOUT_S
        while not job.done() and time.perf_counter() < deadline:
            if self.ask_wait_s is None and job.outputs():
                self.ask_wait_s = time.perf_counter() - began
            time.sleep(0.01)
        final = job.result(timeout=max(1.0, deadline - time.perf_counter()))
        self.ask_total_s = time.perf_counter() - began
        if self.ask_wait_s is None:  # the whole turn came in one message
            self.ask_wait_s = self.ask_total_s
        status = next((o for o in final if isinstance(o, str) and "answered" in o), None)
        if status is None:
            raise RuntimeError(f"the ask ended without its answers: {str(final)[:200]}")

    def vote(self, client) -> None:
        stars = [str(self.rng.randint(1, 5)), str(self.rng.randint(1, 5)), None, None]
        flags = [False] * 4
        vote = self.rng.choice(VOTES)
        began = time.perf_counter()
        self.voted, self.starred = 1, 2
        reply = client.predict(*stars, *flags, vote, "", api_name="/on_submit")
        self.vote_s = time.perf_counter() - began
        if not str(reply[0]).startswith("Thanks"):
            raise RuntimeError(f"the vote was not taken: {reply[0]}")


def check_api(url: str) -> bool:
    """The arena's endpoints have the inputs this script sends (a renamed handler fails here, not mid-run); whether
    the app has the `/on_accept` step before its asks."""
    from gradio_client import Client

    client = Client(url, verbose=False, analytics_enabled=False, download_files=False, httpx_kwargs=HTTP)
    try:
        named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    finally:
        client.close()
    expected = {"/on_load": 1, "/on_ask": 3, "/on_submit": 10}  # submit: stars A-D, flags A-D, vote, comment
    wrong = {name: len(named[name]["parameters"]) if name in named else None for name in expected}
    wrong = {name: got for name, got in wrong.items() if got != expected[name]}
    if wrong:
        raise SystemExit(f"arena endpoints changed: {wrong} (expected {expected}); have {sorted(named)}")
    return "/on_accept" in named


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def load_run(home: Path, config: Path, count: int, tokens: int) -> dict:
    """`count` raters against a fresh server; the figures of the docstring."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = serve(home, config, port, home.parent / f"server-{count}.log")
    try:
        accept = check_api(url)
        warm = Rater(url, questions(home, 1)[0], seed=-1, accept=accept)
        warm.run(threading.Barrier(1))
        if warm.errors:
            raise SystemExit(f"the warm-up rater failed: {warm.errors}")
        rss_start, _ = rss_mb(server.pid)
        raters = [Rater(url, q, seed=i, accept=accept) for i, q in enumerate(questions(home, count))]
        start = threading.Barrier(count)
        threads = [threading.Thread(target=r.run, args=(start,)) for r in raters]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        rss_end, rss_peak = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)

    store = Store.open(home=home)
    try:
        ids = {r.rater for r in raters if r.rater}
        rows = [row for row in store.ratings("demo") if row["rater"] in ids]
    finally:
        store.close()
    asks, votes = sum(r.asked for r in raters), sum(r.voted for r in raters)
    vote_ms = [r.vote_s * 1000 for r in raters if r.vote_s is not None]
    waits = [r.ask_wait_s for r in raters if r.ask_wait_s is not None]
    totals = [r.ask_total_s for r in raters if r.ask_total_s is not None]
    errors = [e for r in raters for e in r.errors]
    figures = {
        "raters": count,
        "variants": VARIANTS,
        "max_new_tokens": tokens,
        "asks": asks,
        "votes": votes,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "lost_votes": votes - sum(1 for row in rows if row["vote"] is not None),
        "lost_stars": sum(r.starred for r in raters) - sum(1 for row in rows if row["stars"] is not None),
        "vote_p50_ms": round(statistics.median(vote_ms), 1) if vote_ms else None,
        "vote_p95_ms": round(percentile(vote_ms, 95), 1) if vote_ms else None,
        "vote_max_ms": round(max(vote_ms), 1) if vote_ms else None,
        "vote_goal_ms": 500,
        "ask_wait_p50_s": round(statistics.median(waits), 2) if waits else None,
        "ask_wait_p95_s": round(percentile(waits, 95), 2) if waits else None,
        "ask_total_p50_s": round(statistics.median(totals), 2) if totals else None,
        "ask_total_p95_s": round(percentile(totals, 95), 2) if totals else None,
        "turn_s": round(wall / max(asks, 1), 2),
        "connect_p95_ms": round(percentile([r.connect_s * 1000 for r in raters if r.connect_s], 95), 1),
        "wall_s": round(wall, 1),
        "server_rss_mb_start": round(rss_start),
        "server_rss_mb_end": round(rss_end),
        "server_rss_mb_peak": round(rss_peak),
    }
    print({k: figures[k] for k in ("raters", "lost_votes", "errors", "vote_p95_ms", "ask_wait_p95_s")}, flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raters", default="20,50", help="comma-separated rater counts, one server each")
    parser.add_argument("--tokens", type=int, default=16, help="chat.max_new_tokens of the served app")
    args = parser.parse_args()
    counts = [int(n) for n in args.raters.split(",")]
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the client's telemetry thread: no network here
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
        build_index("demo", home=home, progress=False)
        config = Path(tmp) / "load.yaml"
        config.write_text(yaml.safe_dump({"chat": {"variants": VARIANTS, "max_new_tokens": args.tokens}}))
        for count in counts:
            figures[f"raters_{count}"] = load_run(home, config, count, args.tokens)
    record("load", figures, parts=[f"raters_{n}" for n in counts])


if __name__ == "__main__":
    main()
