"""`make bench`: run every benchmark script; each merges its figures into bench/results.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [  # the others are their helpers
    HERE / name
    for name in (
        "prepare.py",
        "retrieval.py",
        "finetune.py",
        "engine.py",
        "answers.py",
        "prompt.py",
        "eval.py",
        "hallucination.py",
        "report.py",
        "load.py",
        "synth.py",
        "freshness.py",
    )
]

if __name__ == "__main__":
    failed = [p.name for p in SCRIPTS if subprocess.run([sys.executable, str(p)], check=False).returncode != 0]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
