"""Intervals and tests the report rests on, from scipy: bootstrap means, paired differences, rates, sample sizes.

Every function takes plain sequences and returns a JSON-ready dict, so a section can be printed as it is. Seeds
are fixed: the same rows give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

SEED = 20261130


def mean_interval(values: Sequence[float], confidence: float = 0.95, rounds: int = 2000) -> dict:
    """`{mean, low, high, n}`: the mean with its percentile-bootstrap interval (low/high None for fewer than 2)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        low = high = None if x.size < 2 else mean
        return {"mean": mean, "low": low, "high": high, "n": int(x.size)}
    result = stats.bootstrap(
        (x,), np.mean, confidence_level=confidence, n_resamples=rounds, method="percentile", rng=SEED
    )
    interval = result.confidence_interval
    return {"mean": mean, "low": float(interval.low), "high": float(interval.high), "n": int(x.size)}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, rounds: int = 2000) -> dict:
    """`{mean, low, high, p, sd, n}` of `a - b` over paired items: a bootstrap interval of the mean difference and
    the two-sided p-value of a sign-flip permutation test (`sign_flip_p`)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    row = mean_interval(d, confidence, rounds)
    row["sd"] = float(d.std(ddof=1)) if d.size > 1 else None
    if d.size < 2 or np.all(d == 0):
        row["p"] = None if d.size < 2 else 1.0
        return row
    row["p"] = sign_flip_p(d)
    return row


def unpaired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, rounds: int = 2000) -> dict:
    """`{mean, low, high, p, n}` of mean(a) - mean(b) over two independent samples (two evals of different
    questions): a percentile-bootstrap interval resampling each sample, and the two-sided p-value of a permutation
    test of the labels (`scipy.stats.permutation_test`, independent samples)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    row = {"mean": None, "low": None, "high": None, "p": None, "n": int(min(x.size, y.size))}
    if x.size == 0 or y.size == 0:
        return row
    row["mean"] = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return row

    def difference(first, second, axis=-1):
        return np.mean(first, axis=axis) - np.mean(second, axis=axis)

    if np.ptp(np.concatenate([x, y])) == 0:  # every score the same: nothing to resample
        return row | {"low": 0.0, "high": 0.0, "p": 1.0}
    interval = stats.bootstrap(
        (x, y), difference, confidence_level=confidence, n_resamples=rounds, method="percentile", rng=SEED
    ).confidence_interval
    test = stats.permutation_test((x, y), difference, permutation_type="independent", n_resamples=9999, rng=SEED)
    return row | {"low": float(interval.low), "high": float(interval.high), "p": float(test.pvalue)}


EXACT_UP_TO = 13
"""Up to this many differences the sign-flip test enumerates every sign pattern (2**13 = 8,192); beyond, it draws."""


def sign_flip_p(d: np.ndarray, draws: int = 9999) -> float:
    """Two-sided p-value of the paired permutation test: under "no difference" each difference's sign is a coin
    flip, so p is the share of sign patterns whose mean is at least as far from 0 as the observed one.

    The same test as `scipy.stats.permutation_test(..., permutation_type="samples")` on one sample (exact for few
    items, else `draws` random patterns with p = (hits + 1) / (draws + 1)), written out because scipy's generic
    machinery took 1.2 s per test at 2,500 questions where this takes about 0.1 s (bench/report.py, 33 tests per
    report)."""
    n = d.size
    observed = abs(d.mean()) * (1 - 1e-12)  # ties within rounding count as "at least as far"
    if n <= EXACT_UP_TO:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1
        return float(np.mean(np.abs(signs @ d) / n >= observed))
    rng = np.random.default_rng(SEED)
    hits = 0
    for start in range(0, draws, 500):
        signs = rng.integers(0, 2, size=(min(500, draws - start), n)) * 2.0 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed))
    return (hits + 1) / (draws + 1)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment for a family of tests (None stays None).

    scipy only adjusts for the false discovery rate (`false_discovery_control`); a recommendation needs every
    claimed difference to hold at once (family-wise error), which Holm controls with more power than Bonferroni.
    """
    given = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(given):
        running = max(running, min(1.0, (len(given) - rank) * p))
        adjusted[i] = running
    return adjusted


def rate_interval(count: int, total: int, confidence: float = 0.95) -> dict:
    """`{rate, low, high, count, n}` with the Wilson score interval (None when `total` is 0)."""
    if total == 0:
        return {"rate": None, "low": None, "high": None, "count": 0, "n": 0}
    interval = stats.binomtest(count, total).proportion_ci(confidence_level=confidence, method="wilson")
    return {"rate": count / total, "low": float(interval.low), "high": float(interval.high), "count": count, "n": total}


def items_needed(mean: float | None, sd: float | None, tests: int = 1, confidence: float = 0.95, power: float = 0.8):
    """How many paired items a difference of `mean` with spread `sd` needs to be significant at `confidence` after
    a Bonferroni share of `tests`, with probability `power` (normal approximation); None when no difference shows."""
    if mean is None or sd is None or mean == 0 or not math.isfinite(sd):
        return None
    alpha = (1 - confidence) / max(tests, 1)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    # the sign-flip test's smallest p with n items is 2 / 2**n: below this many items nothing is significant
    smallest = math.floor(math.log2(2 / alpha)) + 1
    return max(smallest, math.ceil((z * sd / abs(mean)) ** 2))


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95)) -> dict:
    """`{p50: ..., p95: ..., n}` of the values (None when there are none)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    row: dict = {f"p{int(q)}": (float(np.percentile(x, q)) if x.size else None) for q in points}
    row["n"] = int(x.size)
    return row
