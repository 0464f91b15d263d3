"""How well automatic judgements agree with people: pure functions over paired values, for the report.

Each returns an `Agreement` with the number of pairs used (pairs with a missing side are dropped) and, when the
statistic is undefined (too few pairs, a constant side), value None with the reason rather than a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Agreement:
    value: float | None
    n: int
    reason: str | None = None
    details: dict = field(default_factory=dict)


def _pairs(xs: list, ys: list) -> list[tuple]:
    if len(xs) != len(ys):
        raise ValueError(f"paired values differ in length: {len(xs)} and {len(ys)}")
    return [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            result[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(scores: list[float | None], stars: list[float | None]) -> Agreement:
    """Spearman's rank correlation of judge scores and human stars: Pearson's r of their tie-averaged ranks."""
    pairs = _pairs(scores, stars)
    n = len(pairs)
    if n < 3:
        return Agreement(None, n, f"needs at least 3 answers with both a judge score and stars, got {n}")
    for side, values in (("judge scores", [p[0] for p in pairs]), ("human stars", [p[1] for p in pairs])):
        if len(set(values)) == 1:
            return Agreement(None, n, f"all {side} are equal ({values[0]}); rank correlation is undefined")
    rx, ry = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    mean = (n + 1) / 2
    covariance = sum((a - mean) * (b - mean) for a, b in zip(rx, ry))
    spread = (sum((a - mean) ** 2 for a in rx) * sum((b - mean) ** 2 for b in ry)) ** 0.5
    return Agreement(covariance / spread, n)


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
    observed = (counts["true_true"] + counts["false_false"]) / n
    auto_rate = (counts["true_true"] + counts["true_false"]) / n
    human_rate = (counts["true_true"] + counts["false_true"]) / n
    expected = auto_rate * human_rate + (1 - auto_rate) * (1 - human_rate)
    details = {"observed": observed, "expected": expected, "counts": counts}
    if expected == 1:
        return Agreement(None, n, "both sides give every answer the same flag; kappa is undefined", details)
    return Agreement((observed - expected) / (1 - expected), n, None, details)
