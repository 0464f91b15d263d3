"""Throughput of `workbench prepare` on the demo corpus scaled up 20x (with the demo QA set).

The scaled corpus is made of distinct documents: copy k of document i keeps document i's paragraph count but draws
its paragraphs, seeded, from the whole corpus, so sizes match the demo while dedup sees different texts.
Baseline, measured in the same run: reading the same files with the same loaders and nothing else.
Usage: python bench/prepare.py [--scale 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.data.loaders import load_corpus
from workbench.data.prepare import prepare

DEMO = Path(__file__).resolve().parent.parent / "demo"


def build_scaled_corpus(target: Path, scale: int) -> None:
    docs, _ = load_corpus([DEMO / "corpus"], progress=False)
    paragraphs = [p for doc in docs for p in doc.text.split("\n\n")[1:] if p.strip()]
    for copy in range(scale):
        for doc in docs:
            rng = random.Random(f"{copy}/{doc.id}")
            count = max(1, len(doc.text.split("\n\n")) - 1)
            body = "\n\n".join(rng.sample(paragraphs, count))
            (target / f"{doc.id}-{copy:02d}.md").write_text(f"# {doc.title} ({copy})\n\n{body}\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        build_scaled_corpus(corpus, args.scale)
        megabytes = sum(p.stat().st_size for p in corpus.iterdir()) / 1e6

        started = time.perf_counter()
        docs, _ = load_corpus([corpus], progress=False)
        read_s = time.perf_counter() - started

        started = time.perf_counter()
        report = prepare("bench", [corpus], DEMO / "qa.jsonl", home=Path(tmp) / "home", progress=False)
        prepare_s = time.perf_counter() - started

    record(
        "prepare",
        {
            "scale": args.scale,
            "documents": len(docs),
            "megabytes": round(megabytes, 2),
            "docs_per_s": round(len(docs) / prepare_s, 1),
            "mb_per_s": round(megabytes / prepare_s, 3),
            "seconds": round(prepare_s, 2),
            "stage_seconds": report["timings"],
            "baseline_read_docs_per_s": round(len(docs) / read_s, 1),
            "prepare_over_read_time": round(prepare_s / read_s, 2),
            "near_duplicates_found": len(report["duplicates"]["near"]),
            "qa_pairs": report["qa"]["pairs"],
        },
    )


if __name__ == "__main__":
    main()
