"""Shared by the bench scripts: print the figures as one JSON line and merge them into bench/results.json; the
neighbouring job the thread benchmarks run beside."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"
NEIGHBOUR_JOB = (
    "import torch\nx, w, v = torch.randn(4, 576), torch.randn(576, 1536), torch.randn(1536, 576)\n"
    "while True:\n    x = torch.tanh(x @ w @ v)\n"
)
"""The load of the thread benchmarks: another job of the kind that shares an ML machine (a chat engine or an eval
decoding), small matrix products in a loop with torch's default thread count (all cores). A neighbour doing
large products (one long parallel region each) barely slowed a 2-thread turn (1.5x); this one made it 36x slower."""


def record(section: str, figures: dict, parts: list[str] | None = None) -> None:
    """Write `figures` as `section`; with `parts` (the parts of a script that ran), merge them into the section
    and note when each part was measured, keeping the figures of parts that did not run."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    figures = {"measured_at": now, "machine": f"{platform.machine()}, {_cores()} cores, {_cpu()}"} | figures
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if parts is not None:
        earlier = results.get(section, {})
        figures["parts_measured_at"] = earlier.get("parts_measured_at", {}) | {part: now for part in parts}
        figures = earlier | figures
    results[section] = figures
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)
    print(json.dumps(figures))


def _cpu() -> str:
    """The CPU's model name and whether it has bf16 matrix units: figures differ between CPUs of one machine kind."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
    units = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in flags]
    return f"{name or 'unknown CPU'} ({', '.join(units) or 'no AVX-512'})"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
