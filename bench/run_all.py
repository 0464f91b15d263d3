"""`make bench`: run every benchmark script in this folder; each merges its figures into bench/results.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "results_file.py"})

if __name__ == "__main__":
    failed = [p.name for p in SCRIPTS if subprocess.run([sys.executable, str(p)]).returncode != 0]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
