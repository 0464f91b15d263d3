"""Freshness on the demo: after facts of the corpus change, which variants answer with the new values at once?

The demo run is prepared, indexed and fine-tuned with `configs/default.yaml` (or copied from `--adapter-home`), then
`probe_freshness` (what `workbench probe-freshness` runs) changes `--facts` facts in a copy of it, updates the
copy's index incrementally and asks every local variant the questions about them, with the configured decoding.
Figures (`freshness` in bench/results.json): per variant the share of answers giving the new value
(`new_value_share`), the old one (`old_value_share`), both or neither, and of the answers that give either value
the share giving only the new one (`new_of_valued`); the index update's seconds against the
adapter's training seconds (`retrain_over_index_update`); and the edits made.
Usage: python bench/freshness.py [--adapter-home DIR] [--facts 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import demo_home
from results_file import record

from workbench.config import load_config
from workbench.freshness import probe_freshness

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter-home", type=Path, help="a workspace with the demo prepared, indexed and trained")
    parser.add_argument("--facts", type=int, default=20)
    args = parser.parse_args()
    config = load_config(ROOT / "configs" / "default.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        demo_home(home, config, args.adapter_home)
        result = probe_freshness("demo", config, home, facts=args.facts)
    variants = result["variants"]
    figures = {
        "facts": result["facts"],
        "max_new_tokens": config.chat.max_new_tokens,
        "new_value_share": {v: row["new"] for v, row in variants.items()},
        "old_value_share": {v: row["old"] for v, row in variants.items()},
        "both_share": {v: row["both"] for v, row in variants.items()},
        "neither_share": {v: row["neither"] for v, row in variants.items()},
        # of the answers that give either value at all, the share giving only the new one
        "new_of_valued": {
            v: round(row["new"] / (row["new"] + row["old"] + row["both"]), 3)
            if row["new"] + row["old"] + row["both"]
            else None
            for v, row in variants.items()
        },
        "index_update_s": result["index_update_s"],
        "retrain_s": round(result["retrain_s"], 1) if result["retrain_s"] else None,
        "retrain_over_index_update": round(result["retrain_s"] / result["index_update_s"], 1)
        if result["retrain_s"]
        else None,
        "edits": [f"{e['qa_id']}: {e['was']} -> {e['now']}" for e in result["edits"]],
    }
    for v in variants:
        print(v, variants[v], flush=True)
    record("freshness", figures)


if __name__ == "__main__":
    main()
