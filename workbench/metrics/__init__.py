"""Local `evaluate` metric modules: the hub's metric scripts need the network, these compute with real libraries.

Each module here is an `evaluate.Metric` script that `load_metric(name)` hands to `evaluate.load` by path, so
callers keep the `evaluate` interface (`metric.compute(predictions=..., references=...)`) and everything runs
offline. Loaded once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@functools.cache
def load_metric(name: str):
    """The `evaluate` module `workbench/metrics/NAME.py`, kept in memory (no cache files under ~/.cache)."""
    import evaluate

    path = _HERE / f"{name}.py"
    if name.startswith("_") or not path.is_file():
        known = sorted(p.stem for p in _HERE.glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(f"no local metric {name!r}; the local metrics are {', '.join(known)}")
    return evaluate.load(str(path), keep_in_memory=True)
