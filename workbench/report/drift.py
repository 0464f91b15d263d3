"""Drift between two evals of a run: each judge's change per variant, and the significant declines flagged.

`workbench report --compare EVAL_A EVAL_B` (two eval ids of the run; B is the report's eval, A the one before it):
last quarter's questions against this quarter's, or the same questions before and after a corpus update. When the
two evals asked the same questions (the same QA ids with the same text, `PAIRED_SHARE` of each eval's questions at
least), the change is paired over those questions (`paired_difference`: bootstrap interval, sign-flip p);
otherwise each eval's own questions are compared as two samples (`unpaired_difference`). Within each judge the
variants form one family: p-values are Holm-corrected, and a change below zero with a corrected p under
1 - `report.confidence` is a decline. Every judge scores higher for better answers.
"""

from __future__ import annotations

from workbench.report.quality import table
from workbench.report.rows import ReportRows
from workbench.report.stats import holm, mean_interval, paired_difference, unpaired_difference

PAIRED_SHARE = 0.8
"""The two evals are paired when the questions they share are at least this share of each one's questions."""


def drift_section(before: ReportRows, after: ReportRows) -> dict:
    """Per judge and variant both evals scored: the means before and after and the change after - before."""
    settings = after.config.report
    level, rounds = settings.confidence, settings.bootstrap_rounds
    shared = _shared_questions(before, after)
    paired = all(len(shared) >= PAIRED_SHARE * len(rows.questions) for rows in (before, after)) and len(shared) > 1
    judges = [j for j in after.judges if j in before.judges]
    variants = [v for v in after.variants if v in before.variants]
    section: dict = {
        "before": before.eval["id"],
        "after": after.eval["id"],
        "paired": paired,
        "shared_questions": len(shared),
        "questions": {"before": len(before.questions), "after": len(after.questions)},
        "judges": {},
        "declines": [],
    }
    for judge in judges:
        old, new = table(before, judge), table(after, judge)
        rows = {}
        for v in variants:
            a, b = new.get(v, {}), old.get(v, {})
            if paired:
                common = sorted(q for q in shared if q in a and q in b)
                change = paired_difference([a[q] for q in common], [b[q] for q in common], level, rounds)
            else:
                change = unpaired_difference(list(a.values()), list(b.values()), level, rounds)
            rows[v] = {
                "before": mean_interval(list(b.values()), level, rounds),
                "after": mean_interval(list(a.values()), level, rounds),
                "change": change,
            }
        for row, adjusted in zip(rows.values(), holm([row["change"]["p"] for row in rows.values()])):
            change = row["change"]
            change["p_adjusted"] = adjusted
            change["decline"] = adjusted is not None and adjusted < 1 - level and change["mean"] < 0
        section["judges"][judge] = rows
        section["declines"] += [{"judge": judge, "variant": v} for v, row in rows.items() if row["change"]["decline"]]
    return section


def _shared_questions(before: ReportRows, after: ReportRows) -> set[str]:
    """QA ids both evals asked with the same question text."""
    return {
        qa_id
        for qa_id, question in after.questions.items()
        if qa_id in before.questions and before.questions[qa_id].question == question.question
    }
