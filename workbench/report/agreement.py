"""How well automatic judgements agree with people, and people with each other, for the report: Cohen's kappa
(scikit-learn), Spearman (scipy) and Krippendorff's alpha (nltk, which rouge-score already brings).

Each returns an `Agreement` with the number of pairs used (pairs with a missing side are dropped) and, when the
statistic is undefined (too few pairs, a constant side), value None with the reason rather than a number.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from scipy import stats
from sklearn.metrics import cohen_kappa_score


@dataclass(frozen=True)
class Agreement:
    value: float | None
    n: int
    reason: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(xs: list, ys: list) -> list[tuple]:
    if len(xs) != len(ys):
        raise ValueError(f"paired values differ in length: {len(xs)} and {len(ys)}")
    return [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]


def spearman(scores: list[float | None], stars: list[float | None]) -> Agreement:
    """Spearman's rank correlation of judge scores and human stars, with its p-value in `details`."""
    pairs = _pairs(scores, stars)
    n = len(pairs)
    if n < 3:
        return Agreement(None, n, f"needs at least 3 answers with both a judge score and stars, got {n}")
    for side, values in (("judge scores", [p[0] for p in pairs]), ("human stars", [p[1] for p in pairs])):
        if len(set(values)) == 1:
            return Agreement(None, n, f"all {side} are equal ({values[0]}); rank correlation is undefined")
    result = stats.spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return Agreement(float(result.statistic), n, None, {"p": float(result.pvalue)})


def judges_vs_stars(ratings: list[dict], judgements: list[dict]) -> dict[str, dict]:
    """Per judge (every judge with a score among `judgements`), the Spearman correlation of its scores with the stars
    of `ratings`: one pair per rating, so with several raters each rater's stars count against the same answer."""
    judged: dict[str, dict[str, float]] = defaultdict(dict)
    for j in judgements:
        if j["score"] is not None:
            judged[j["judge"]][j["answer_id"]] = j["score"]
    starred = [r for r in ratings if r["answer_id"] is not None and r["stars"] is not None]
    return {
        judge: spearman(
            [scores[r["answer_id"]] for r in starred if r["answer_id"] in scores],
            [r["stars"] for r in starred if r["answer_id"] in scores],
        ).to_dict()
        for judge, scores in sorted(judged.items())
    }


def cohen_kappa(automatic: list[bool | None], human: list[bool | None]) -> Agreement:
    """Cohen's kappa of automatic and human hallucination flags: agreement beyond what their base rates predict.

    `details` holds the observed agreement and the 2x2 counts. When both sides use one and the same label for
    every answer, chance agreement is 1 and kappa is undefined (None), though observed agreement is 100%.
    """
    pairs = [(bool(a), bool(h)) for a, h in _pairs(automatic, human)]
    n = len(pairs)
    if n == 0:
        return Agreement(None, 0, "no answer has both an automatic and a human hallucination flag")
    counts = {f"{a}_{h}".lower(): sum(p == (a, h) for p in pairs) for a in (True, False) for h in (True, False)}
    details = {"observed": (counts["true_true"] + counts["false_false"]) / n, "counts": counts}
    if len(set(pairs)) == 1 and pairs[0][0] == pairs[0][1]:
        return Agreement(None, n, "both sides give every answer the same flag; kappa is undefined", details)
    kappa = cohen_kappa_score([p[0] for p in pairs], [p[1] for p in pairs], labels=[False, True])
    return Agreement(float(kappa), n, None, details)


ALPHA_LEVELS = ("interval", "nominal")


def krippendorff_alpha(values: dict[tuple[str, object], object], level: str) -> Agreement:
    """Krippendorff's alpha of `{(coder, unit): value}`: 1 - observed / expected disagreement, over the units that
    two coders or more valued (the rest cannot disagree). `interval` compares numbers by squared difference (stars),
    `nominal` by equality (votes). `n` is the number of pairable units; `details` holds the pairable values."""
    from nltk.metrics.agreement import AnnotationTask
    from nltk.metrics.distance import binary_distance, interval_distance

    if level not in ALPHA_LEVELS:
        raise ValueError(f"level {level!r}: choose one of {', '.join(ALPHA_LEVELS)}")
    coders: dict[object, set] = {}
    for coder, unit in values:
        coders.setdefault(unit, set()).add(coder)
    triples = [(str(coder), str(unit), value) for (coder, unit), value in values.items() if len(coders[unit]) > 1]
    units = len({unit for _, unit, _ in triples})
    details = {"values": len(triples)}
    if units == 0:
        return Agreement(None, 0, "no unit was rated by two raters or more", details)
    if len({value for _, _, value in triples}) == 1:
        return Agreement(
            None, units, "every rating is the same; alpha is undefined (no expected disagreement)", details
        )
    distance = interval_distance if level == "interval" else binary_distance
    return Agreement(float(AnnotationTask(triples, distance=distance).alpha()), units, None, details)
