"""The decision report's speed: Bradley-Terry with 200 bootstrap rounds over 100,000 votes among 4 variants (goal
<= 5 s), and a full report (rows read, every section, the HTML with its plots) over an eval of 10,000 answers.

Baselines measured in the same run: scikit-learn's LogisticRegression fitting the same 200 bootstrap rounds one
by one (what `fit_logistic` replaces), and reading the eval's rows from the store (the part no report can skip).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import Config
from workbench.engine import Answer
from workbench.report import build_report, load_rows
from workbench.report.preference import PRIOR_SD, Vote, bradley_terry, fit_logistic
from workbench.report.render import render_html
from workbench.store import Store
from workbench.workspace import run_paths, write_json_atomic

VARIANTS = ["base", "ft", "rag", "ft_rag"]
STRENGTH = np.array([-0.6, 0.1, 0.4, 0.1])
JUDGES = ["token_f1", "key_facts", "rouge_l", "contains", "exact_match", "embedding"]


def simulated_votes(n: int, rng) -> list[Vote]:
    votes = []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        columns = sorted(rng.choice(4, size=k, replace=False))
        names = tuple(VARIANTS[c] for c in columns)
        if rng.random() < 0.1:
            votes.append(Vote(names, None, "tie", (10,) * k))
            continue
        odds = np.exp(STRENGTH[columns])
        votes.append(Vote(names, names[rng.choice(k, p=odds / odds.sum())], "best", (10,) * k))
    return votes


def bench_bradley_terry() -> dict:
    votes = simulated_votes(100_000, np.random.default_rng(0))
    started = time.perf_counter()
    ours = bradley_terry(votes, VARIANTS, rounds=200)
    ours_s = time.perf_counter() - started
    # the baseline: the same 201 weightings (estimate + 200 rounds) of the 12 ordered pairs, one sklearn fit each
    rng = np.random.default_rng(1)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    x = np.zeros((len(pairs), 4))
    for k, (i, j) in enumerate(pairs):
        x[k, i], x[k, j] = 1, -1
    weights = rng.uniform(100, 10_000, (201, len(pairs)))
    x2, y2 = np.vstack([x, -x]), np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    started = time.perf_counter()
    for w in weights:
        LogisticRegression(fit_intercept=False, C=PRIOR_SD**2 / 2).fit(x2, y2, sample_weight=np.r_[w, w] / 2)
    sklearn_s = time.perf_counter() - started
    started = time.perf_counter()
    fit_logistic(x, np.ones(len(pairs)), weights, np.full(4, 1 / PRIOR_SD**2))
    batched_s = time.perf_counter() - started
    top = next(iter(ours["variants"]))
    return {
        "bt_100k_votes_s": round(ours_s, 3),
        "bt_goal_s": 5.0,
        "bt_top": top,
        "bt_fits_sklearn_s": round(sklearn_s, 3),
        "bt_fits_batched_s": round(batched_s, 4),
        "sklearn_over_batched": round(sklearn_s / batched_s, 1),
    }


def populate(home: Path, questions: int) -> None:
    """A run with an eval of `questions` x 4 variants, 6 judges per answer and a claim per answer."""
    rng = np.random.default_rng(2)
    paths = run_paths("big", home)
    paths.data.mkdir(parents=True)
    kinds = ["fact", "numeric", "procedure", "multi_doc", "unanswerable"]
    rows = []
    for q in range(questions):
        kind = kinds[q % 5]
        rows.append(
            {
                "id": f"Q{q:05d}",
                "messages": [],
                "origin": "qa",
                "kind": "qa",
                "group": q,
                "question": f"q{q}",
                "answer": "a",
                "type": kind,
                "doc_ids": [] if kind == "unanswerable" else ["d"],
            }
        )
    paths.split("test").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json_atomic(paths.manifest, {"name": "big"})
    with Store.open(home=home) as store:
        store.ensure_run("big")
        store.start_eval("e", "big", "test", VARIANTS, JUDGES, "h", {}, "m", {}, None, questions)
        for q, row in enumerate(rows):
            hard = rng.uniform(0, 0.6)
            for v, variant in enumerate(VARIANTS):
                score = float(np.clip(hard + 0.05 * v + rng.normal(0, 0.1), 0, 1))
                details = {"unanswerable": True, "abstained": score > 0.5} if row["type"] == "unanswerable" else {}
                answer = Answer(
                    id=f"{q}-{variant}",
                    turn_id=None,
                    variant=variant,
                    question=row["question"],
                    text="word " * int(rng.integers(5, 60)),
                    prompt=[],
                    ttft_s=0.1,
                    total_s=float(rng.uniform(1, 5)),
                    tokens_in=50,
                    tokens_out=30,
                    finish_reason="stop",
                    decoding={},
                    model_id="m",
                )
                judgements = [{"judge": j, "score": score, "reason": None, "details": details} for j in JUDGES]
                claim = {"claim": "c", "score": 1 - score, "supported": score > 0.3, "evidence": []}
                store.add_eval_answer("e", row["id"], answer.to_dict(), 1, judgements, ("evidence", [claim]))


def bench_report(questions: int = 2500) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        populate(home, questions)
        with Store.open(home=home) as store:
            started = time.perf_counter()
            store.answers(eval_id="e"), store.judgements(eval_id="e"), store.claim_flags(eval_id="e")
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            rows = load_rows(store, "big", Config(), home)
            report = build_report(rows)
            html = render_html(report)
            report_s = time.perf_counter() - started
    return {
        "report_10k_answers_s": round(report_s, 2),
        "report_answers": questions * len(VARIANTS),
        "report_rows_read_s": round(read_s, 2),
        "report_over_reading": round(report_s / read_s, 2),
        "report_html_kb": round(len(html) / 1024, 1),
        "report_decision": report["decision"]["status"],
    }


if __name__ == "__main__":
    record("report", bench_bradley_terry() | bench_report())
