"""Drift between two evals of a run: paired over the questions both asked, unpaired over different questions, and a
significant decline flagged (and rendered) only where the change is below zero beyond the noise."""

import json

import numpy as np
import pytest

from tests.test_report import stored_eval
from workbench.cli import main
from workbench.config import Config
from workbench.eval.runner import Question
from workbench.report.drift import drift_section
from workbench.report.rows import ReportRows
from workbench.report.stats import unpaired_difference

KINDS = ["fact"] * 24


def test_the_same_questions_before_and_after_are_paired_and_a_real_decline_is_flagged(home, capsys):
    rng = np.random.default_rng(3)
    base = list(rng.uniform(0.2, 0.4, 24))
    rag = list(rng.uniform(0.6, 0.8, 24))
    stored_eval(home, {"base": base, "rag": rag}, KINDS, eval_id="march")
    stored_eval(home, {"base": [s + 0.01 for s in base], "rag": [s - 0.3 for s in rag]}, KINDS, eval_id="june")
    argv = ["report", "--name", "r1", "--home", str(home), "--compare", "march", "june"]
    assert main([*argv, "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    drift = report["drift"]
    assert (drift["before"], drift["after"], drift["paired"], drift["shared_questions"]) == ("march", "june", True, 24)
    rag_change = drift["judges"]["token_f1"]["rag"]["change"]
    assert rag_change["mean"] == pytest.approx(-0.3) and rag_change["decline"] and rag_change["high"] < 0
    assert not drift["judges"]["token_f1"]["base"]["change"]["decline"]  # a small rise is no decline
    assert drift["declines"] == [{"judge": "token_f1", "variant": "rag"}]
    assert report["eval"]["id"] == "june"  # the report itself is on the later eval
    assert main(argv) == 0
    md = capsys.readouterr().out
    assert "## Drift" in md and "Significant declines: rag on token_f1." in md
    assert md.index("## Quality") < md.index("## Drift") < md.index("## Human preference")
    assert main([*argv, "--eval", "march"]) == 2  # the report is on EVAL_B: --eval may not say otherwise
    assert "give one pair of evals" in capsys.readouterr().err


def rows_of(eval_id: str, ids: list[str], scores: dict[str, list[float]]) -> ReportRows:
    return ReportRows(
        run="r1",
        config=Config(),
        eval={"id": eval_id, "judges": ["token_f1"], "variants": list(scores)},
        questions={q: Question(q, f"Question {q}?", "answer") for q in ids},
        eval_answers=[{"variant": v} for v in scores],
        eval_judgements=[
            {"qa_id": q, "variant": v, "judge": "token_f1", "score": s, "details": {}}
            for v, values in scores.items()
            for q, s in zip(ids, values)
        ],
    )


def test_different_questions_are_compared_unpaired_and_noise_is_no_decline():
    rng = np.random.default_rng(5)
    before = rows_of("q1", [f"A{i}" for i in range(30)], {"ft": list(rng.uniform(0, 1, 30))})
    after = rows_of("q2", [f"B{i}" for i in range(30)], {"ft": list(rng.uniform(0, 1, 30) - 0.02)})
    drift = drift_section(before, after)
    change = drift["judges"]["token_f1"]["ft"]["change"]
    assert not drift["paired"] and drift["shared_questions"] == 0
    assert change["low"] < 0 < change["high"] and not change["decline"] and drift["declines"] == []
    worse = rows_of("q3", [f"C{i}" for i in range(30)], {"ft": list(rng.uniform(0, 0.3, 30))})
    assert drift_section(before, worse)["declines"] == [{"judge": "token_f1", "variant": "ft"}]


def test_an_unpaired_difference_has_a_bootstrap_interval_and_a_permutation_p():
    same = unpaired_difference([0.5, 0.5, 0.5], [0.5, 0.5])
    assert same["mean"] == 0.0 and same["p"] == 1.0
    apart = unpaired_difference([0.9, 0.8, 0.85, 0.95, 0.9], [0.1, 0.2, 0.15, 0.1, 0.05])
    assert apart["low"] > 0.6 and apart["p"] < 0.05
    assert unpaired_difference([], [0.5])["mean"] is None
