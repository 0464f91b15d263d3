"""Human preference: arena votes as pairwise battles, win rates, and Bradley-Terry ratings with bootstrap intervals.

A vote on a turn becomes battles between the turn's columns: `best` beats every other column; a `tie` is a draw
between every pair; `all_bad` is a draw too (every column lost, so no column beat another). A draw counts half a
win each way. Bradley-Terry gives each variant a strength; P(i beats j) = 1 / (1 + exp(s_j - s_i)). The
length-controlled fit adds the answers' relative length difference as a covariate (raters favour longer answers),
so its strengths say who wins at equal length.

Ratings are shown on the Elo scale: 1000 + 400 / ln(10) * strength, strengths centred on 0, so 400 points are
10:1 odds. Intervals come from resampling votes (not battles: one vote's battles are not independent).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from workbench.report.stats import SEED, items_needed, mean_interval, rate_interval

ELO_SCALE = 400 / math.log(10)
MIN_VOTES = 5
"""Fewer votes than this get no ratings: resampling a handful of votes gives intervals that only look sure."""
PRIOR_SD = 4.0
"""A Gaussian prior on each strength (log-odds, sd 4 = 1:55 odds) keeps a variant that won every battle finite."""


@dataclass(frozen=True)
class Vote:
    """One rater's vote on one turn: the turn's `variants`, the `winner` (None for a tie or all bad), `outcome`
    (`best`, `tie` or `all_bad`) and each column's answer length in words (for the length-controlled fit)."""

    variants: tuple[str, ...]
    winner: str | None
    outcome: str
    lengths: tuple[int, ...]


def votes_from_rows(answers: list[dict], ratings: list[dict]) -> list[Vote]:
    """The votes of a run's arena rows (`Store.answers` / `Store.ratings`): one per rater and voted turn."""
    by_turn: dict[str, dict[str, dict]] = defaultdict(dict)
    for a in answers:
        if a["turn_id"] is not None:
            by_turn[a["turn_id"]][a["id"]] = a
    votes = []
    for r in ratings:
        if r["vote"] is None or r["turn_id"] not in by_turn:
            continue
        columns = sorted(by_turn[r["turn_id"]].values(), key=lambda a: a["variant"])
        variants = tuple(a["variant"] for a in columns)
        lengths = tuple(len(a["text"].split()) for a in columns)
        winner = by_turn[r["turn_id"]][r["answer_id"]]["variant"] if r["vote"] == "best" else None
        votes.append(Vote(variants, winner, r["vote"], lengths))
    return votes


def battles(vote: Vote) -> list[tuple[str, str, float]]:
    """(i, j, score of i) for each pair of the vote's columns: 1 when i won, 0.5 for a draw."""
    out = []
    for x in range(len(vote.variants)):
        for y in range(x + 1, len(vote.variants)):
            i, j = vote.variants[x], vote.variants[y]
            if vote.winner is None:
                out.append((i, j, 0.5))
            elif vote.winner in (i, j):
                out.append((i, j, 1.0 if vote.winner == i else 0.0))
            # neither won: the best column beat both, which says nothing about i against j
    return out


def win_rates(votes: list[Vote], variants: list[str]) -> dict:
    """`{"rate": {i: {j: share of i's battles with j that i won (draws half) or None}}, "battles": {i: {j: n}}}`."""
    won = defaultdict(float)
    count = defaultdict(int)
    for vote in votes:
        for i, j, s in battles(vote):
            won[i, j] += s
            won[j, i] += 1 - s
            count[i, j] += 1
            count[j, i] += 1
    return {
        "rate": {i: {j: (won[i, j] / count[i, j] if count[i, j] else None) for j in variants} for i in variants},
        "battles": {i: {j: count[i, j] for j in variants} for i in variants},
    }


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Maximum a-posteriori logistic regression without intercept, for many weightings at once.

    `x` (n, d) rows, `y` (n,) targets in [0, 1] (a draw is 0.5), `weights` (r, n) one weighting per bootstrap
    round, `prior` (d,) the precision of a zero-mean Gaussian prior per coefficient. Returns (r, d).

    Newton's method on all rounds together: scikit-learn's LogisticRegression fits one weighting per call, and 200
    bootstrap rounds of it took 3.4 s on 4 variants where this takes milliseconds (bench/report.py measures both),
    which is what lets the intervals rest on 200 rounds over any number of votes.
    """
    rounds, d = weights.shape[0], x.shape[1]
    beta = np.zeros((rounds, d))
    for _ in range(100):
        p = 1 / (1 + np.exp(-(beta @ x.T)))  # (r, n)
        grad = (weights * (y - p)) @ x - prior * beta
        curvature = weights * p * (1 - p)
        hessian = np.einsum("rn,nd,ne->rde", curvature, x, x) + np.diag(prior)
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return beta


def bradley_terry(votes: list[Vote], variants: list[str], rounds: int = 200, confidence: float = 0.95) -> dict:
    """Bradley-Terry ratings (Elo scale) with bootstrap intervals over votes, and ranks that only separate variants
    whose intervals do not overlap: rank = 1 + the number of variants whose interval lies wholly above.

    Identical votes are counted once with their multiplicity, so resampling 100,000 votes costs no more than
    resampling the few distinct ones: each round is a multinomial draw of the counts.
    """
    index = {v: k for k, v in enumerate(variants)}
    pairs = [(i, j) for i in range(len(variants)) for j in range(len(variants)) if i != j]
    pair_row = {pair: k for k, pair in enumerate(pairs)}
    if len(votes) < MIN_VOTES:
        return _too_few(votes)
    patterns: dict[tuple, int] = defaultdict(int)
    for vote in votes:
        patterns[vote.variants, vote.winner] += 1
    kinds = list(patterns)
    wins = np.zeros((len(kinds), len(pairs)))  # wins of i over j in one vote of each kind
    for k, (columns, winner) in enumerate(kinds):
        for i, j, s in battles(Vote(columns, winner, "", ())):
            wins[k, pair_row[index[i], index[j]]] += s
            wins[k, pair_row[index[j], index[i]]] += 1 - s
    counts = np.array([patterns[k] for k in kinds], dtype=float)
    draws = np.random.default_rng(SEED).multinomial(int(counts.sum()), counts / counts.sum(), size=rounds)
    weights = np.vstack([counts, draws]) @ wins  # round 0: the votes as they are
    x = np.zeros((len(pairs), len(variants)))
    for k, (i, j) in enumerate(pairs):
        x[k, i], x[k, j] = 1, -1
    prior = np.full(len(variants), 1 / PRIOR_SD**2)
    strengths = fit_logistic(x, np.ones(len(pairs)), weights, prior)
    return _rated(votes, variants, strengths, confidence)


def length_controlled(votes: list[Vote], variants: list[str], rounds: int = 200, confidence: float = 0.95) -> dict:
    """Bradley-Terry with the answers' relative length difference (standardised) as a covariate: the ratings say
    who wins at equal length; `length_effect` is the odds ratio of winning for one standard deviation longer."""
    index = {v: k for k, v in enumerate(variants)}
    rows, targets, owner = [], [], []
    for n, vote in enumerate(votes):
        length = dict(zip(vote.variants, vote.lengths))
        for i, j, s in battles(vote):
            row = np.zeros(len(variants) + 1)
            row[index[i]], row[index[j]] = 1, -1
            row[-1] = (length[i] - length[j]) / max(length[i] + length[j], 1)
            rows.append(row)
            targets.append(s)
            owner.append(n)
    if len(votes) < MIN_VOTES or not rows:
        return _too_few(votes) | {"length_effect": None}
    x = np.array(rows)
    spread = x[:, -1].std()
    x[:, -1] = x[:, -1] / spread if spread > 0 else 0.0
    draws = np.random.default_rng(SEED).multinomial(len(votes), np.full(len(votes), 1 / len(votes)), size=rounds)
    weights = np.vstack([np.ones(len(votes)), draws])[:, owner]
    prior = np.full(len(variants) + 1, 1 / PRIOR_SD**2)
    beta = fit_logistic(x, np.array(targets), weights, prior)
    effect = np.exp(beta[:, -1])
    tail = (1 - confidence) / 2 * 100
    rated = _rated(votes, variants, beta[:, :-1], confidence)
    return rated | {
        "length_effect": {
            "odds_ratio": float(effect[0]),
            "low": float(np.percentile(effect[1:], tail)),
            "high": float(np.percentile(effect[1:], 100 - tail)),
        }
        if spread > 0 and rated["variants"]
        else None,
    }


def _too_few(votes: list[Vote]) -> dict:
    return {"votes": len(votes), "variants": {}, "too_few": f"{len(votes)} of the {MIN_VOTES} votes ratings need"}


def _rated(votes: list[Vote], variants: list[str], strengths: np.ndarray, confidence: float) -> dict:
    """The ratings, or none when every bootstrap round gave one variant the same strength: the votes are too alike
    (say, every vote for one column) for resampling to show how sure the ratings are."""
    if np.ptp(strengths[1:], axis=0).min() < 1e-9:
        why = f"the {len(votes)} votes are too alike for resampling to show how sure ratings would be"
        return {"votes": len(votes), "variants": {}, "too_few": why}
    return {"votes": len(votes), "variants": _ratings(variants, strengths, confidence)}


def _ratings(variants: list[str], strengths: np.ndarray, confidence: float) -> dict:
    """Per variant `{rating, low, high, rank}` from strengths (round 0 the estimate, the rest bootstrap rounds)."""
    centred = strengths - strengths.mean(axis=1, keepdims=True)
    elo = 1000 + ELO_SCALE * centred
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(elo[1:], tail, axis=0), np.percentile(elo[1:], 100 - tail, axis=0)
    out = {}
    for k, variant in enumerate(variants):
        above = sum(1 for m in range(len(variants)) if low[m] > high[k])
        out[variant] = {"rating": float(elo[0, k]), "low": float(low[k]), "high": float(high[k]), "rank": 1 + above}
    return dict(sorted(out.items(), key=lambda item: -item[1]["rating"]))


def preference_section(rows) -> dict:
    """Human preference of a run's arena (`ReportRows`): votes, win rates, Bradley-Terry ratings plain and
    length-controlled, stars and the human "states something false" rate per variant with intervals, and how many
    more votes would separate the two leading variants."""
    settings = rows.config.report
    votes = votes_from_rows(rows.arena_answers, rows.ratings)
    variants = sorted({v for vote in votes for v in vote.variants})
    stars, checked, false = defaultdict(list), defaultdict(int), defaultdict(int)
    for r in rows.ratings:
        if r["answer_id"] is None:
            continue
        if r["stars"] is not None:
            stars[r["variant"]].append(r["stars"])
        if r["hallucinated"] is not None:
            checked[r["variant"]] += 1
            false[r["variant"]] += bool(r["hallucinated"])
    rated = sorted(set(stars) | set(checked))
    section = {
        "votes": len(votes),
        "outcomes": {k: sum(v.outcome == k for v in votes) for k in ("best", "tie", "all_bad")},
        "stars": {v: mean_interval(stars[v], settings.confidence, settings.bootstrap_rounds) for v in rated},
        "states_false": {v: rate_interval(false[v], checked[v], settings.confidence) for v in rated},
    }
    if not votes:
        return section | {"variants": [], "win_rates": None, "bradley_terry": None, "length_controlled": None}
    section["variants"] = variants
    section["win_rates"] = win_rates(votes, variants)
    section["bradley_terry"] = bradley_terry(votes, variants, settings.preference_rounds, settings.confidence)
    section["length_controlled"] = length_controlled(votes, variants, settings.preference_rounds, settings.confidence)
    leaders = list(section["bradley_terry"]["variants"])[:2]
    if len(leaders) < 2:  # too few votes to rate: the two with the most battles won, by share
        won = section["win_rates"]["rate"]
        share = {v: np.mean([r for r in won[v].values() if r is not None] or [0]) for v in variants}
        leaders = sorted(variants, key=lambda v: -share[v])[:2]
    section["votes_needed"] = _votes_needed(votes, *leaders, settings) if len(leaders) == 2 else None
    return section


def _votes_needed(votes: list[Vote], first: str, second: str, settings) -> dict:
    """Votes with a battle between the two leaders so far, and the number a difference as large as the one seen
    would need to be significant (None when they are even)."""
    outcomes = [
        (2 * s - 1) * (1 if i == first else -1)
        for vote in votes
        for i, j, s in battles(vote)
        if {i, j} == {first, second}
    ]
    row = {"between": [first, second], "battles": len(outcomes), "needed": None, "more": None, "why": None}
    if len(outcomes) < 2:
        return row | {"why": "too_few"}  # no spread to estimate from
    mean, sd = float(np.mean(outcomes)), float(np.std(outcomes, ddof=1))
    needed = items_needed(mean, sd, 1, settings.confidence, settings.power)
    if needed is None:
        return row | {"why": "even"}
    return row | {"needed": needed, "more": max(needed - len(outcomes), 0)}
