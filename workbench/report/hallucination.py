"""Hallucination: how often each variant's answers carry a claim the detector found unsupported, and how far to
trust the detector, measured on the answers the model really gave: agreement with the raters' flags (Cohen's
kappa), judge scores against stars (Spearman), and on the eval whether the flag tracks wrong answers (AUROC of the
detector's answer score, beside answer length as a baseline).
"""

from __future__ import annotations

from collections import defaultdict

from sklearn.metrics import roc_auc_score

from workbench.judge.claims import aggregate
from workbench.report.agreement import cohen_kappa, judges_vs_stars
from workbench.report.quality import table, unanswerable_ids
from workbench.report.stats import rate_interval
from workbench.report.summary import WRONG_BELOW


def flag_rates(answers: list[dict], claims: list[dict], confidence: float) -> dict:
    """Per variant, the share of its answers (failed ones left out) with an unsupported claim, with its interval.

    An answer without claims counts as checked and clean: the detector found nothing to flag in it."""
    flagged = {c["answer_id"] for c in claims if not c["supported"]}
    counts, hits = defaultdict(int), defaultdict(int)
    for a in answers:
        if a["error"]:
            continue
        counts[a["variant"]] += 1
        hits[a["variant"]] += a["id"] in flagged
    return {v: rate_interval(hits[v], counts[v], confidence) for v in counts}


def answer_scores(claims: list[dict], how: str) -> dict[str, float]:
    """{answer id: its claims' scores aggregated `how` (`hallucination.aggregate`)}: the detector's answer score,
    as `workbench check` gives it."""
    by_answer: dict[str, list[float]] = defaultdict(list)
    for c in claims:
        by_answer[c["answer_id"]].append(c["score"])
    return {answer_id: aggregate(scores, how) for answer_id, scores in by_answer.items()}


def hallucination_section(rows) -> dict:
    level = rows.config.report.confidence
    detectors = sorted({c["detector"] for c in rows.eval_claims + rows.arena_claims})
    section = {
        "detectors": detectors,
        "eval": flag_rates(rows.eval_answers, rows.eval_claims, level) if rows.eval_claims else {},
        "arena": flag_rates(rows.arena_answers, rows.arena_claims, level) if rows.arena_claims else {},
        "trust": {},
    }
    # one pair per rating: with several raters, each rater's flag and stars count against the same answer
    flagged = {c["answer_id"] for c in rows.arena_claims if not c["supported"]}
    rated = [r for r in rows.ratings if r["answer_id"] is not None]
    if rows.arena_claims:
        human = [r for r in rated if r["hallucinated"] is not None]
        kappa = cohen_kappa([r["answer_id"] in flagged for r in human], [r["hallucinated"] for r in human])
        section["trust"]["kappa_vs_raters"] = kappa.to_dict()
    section["trust"]["judges_vs_stars"] = judges_vs_stars(rows.ratings, rows.arena_judgements)
    section["trust"]["flags_vs_wrong_answers"] = _against_wrong_answers(rows)
    return section


def _against_wrong_answers(rows) -> dict | None:
    """On the eval: the detector's answer score as a predictor of a wrong answer (metric below `WRONG_BELOW`), as
    AUROC beside answer length's, over the answers to answerable questions."""
    if not rows.eval_claims:
        return None
    metric = rows.config.report.metric
    scores = table(rows, metric)
    unanswerable = unanswerable_ids(rows)
    detector = answer_scores(rows.eval_claims, rows.config.hallucination.aggregate)
    wrong, flag_score, length = [], [], []
    for a in rows.eval_answers:
        score = scores.get(a["variant"], {}).get(a["qa_id"])
        if a["error"] or score is None or a["qa_id"] in unanswerable:
            continue
        wrong.append(score < WRONG_BELOW)
        flag_score.append(detector.get(a["id"], 0.0))
        length.append(len(a["text"].split()))
    row = {"answers": len(wrong), "wrong": sum(wrong), "metric": metric, "wrong_below": WRONG_BELOW}
    if 0 < sum(wrong) < len(wrong):
        row["auroc"] = float(roc_auc_score(wrong, flag_score))
        row["length_auroc"] = float(roc_auc_score(wrong, length))
    else:
        row["auroc"] = row["length_auroc"] = None
    return row
