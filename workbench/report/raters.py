"""Rater agreement: do people agree with each other on the same answers, and with the automatic judges?

Only queued turns count towards agreement between raters (`workbench.rater_queue`): there every rater judged the same
answers to the same question. The units are, for stars, one queued question's answer by one variant; for votes, one
queued question (the value is the variant voted best, `tie` or `all_bad`). Overall agreement is Krippendorff's
alpha over all raters (interval for stars, nominal for votes) and the share of rater pairs that voted alike. Each
rater's agreement with the others is alpha between them and each other rater on the units both rated (every pair
of their values pooled), and their agreement with the judges is the Spearman correlation of their stars with each
judge's scores over every answer they starred. With three raters or more, a rater far below the rest is flagged
(`report.rater_alpha_gap`); `report.drop_flagged_raters` leaves them out of every human figure.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from itertools import combinations

from workbench.report.agreement import Agreement, judges_vs_stars, krippendorff_alpha

MIN_RATERS_TO_FLAG = 3
"""With two raters a disagreement cannot say which of them is off."""


def _values(ratings: list[dict]) -> tuple[dict, dict]:
    """{(rater, (queued question, variant)): stars} and {(rater, queued question): vote} of the queued ratings."""
    stars, votes = {}, {}
    for r in ratings:
        unit = r.get("queue_question_id")
        if unit is None:
            continue
        if r["stars"] is not None and r["variant"] is not None:
            stars[r["rater"], (unit, r["variant"])] = r["stars"]
        if r["vote"] is not None:
            votes[r["rater"], unit] = r["variant"] if r["vote"] == "best" else r["vote"]
    return stars, votes


def _with_others(values: dict, rater: str, level: str) -> Agreement:
    """Alpha between `rater` and each other rater on the units both valued, every pair pooled."""
    mine = {unit: value for (coder, unit), value in values.items() if coder == rater}
    pairs = {}
    for (coder, unit), value in values.items():
        if coder != rater and unit in mine:
            pairs["self", (coder, unit)] = mine[unit]
            pairs["other", (coder, unit)] = value
    return krippendorff_alpha(pairs, level)


def _vote_agreement(votes: dict, rater: str | None = None) -> dict:
    """The share of rater pairs on the same queued question that voted alike (only the pairs with `rater` when
    given), and how many pairs there were."""
    by_unit = defaultdict(dict)
    for (coder, unit), value in votes.items():
        by_unit[unit][coder] = value
    pairs = [
        by_coder[a] == by_coder[b]
        for by_coder in by_unit.values()
        for a, b in combinations(sorted(by_coder), 2)
        if rater is None or rater in (a, b)
    ]
    return {"share": sum(pairs) / len(pairs) if pairs else None, "pairs": len(pairs)}


def _flags(per_rater: dict[str, dict], gap: float) -> dict[str, str]:
    """Raters far below the rest, each with why: alpha with the others below 0, or `gap` below the others' median."""
    measure = {}
    for rater, entry in per_rater.items():
        for key in ("stars_alpha", "votes_alpha"):
            if entry[key]["value"] is not None:
                measure[rater] = (key, entry[key]["value"])
                break
    if len(measure) < MIN_RATERS_TO_FLAG:
        return {}
    flagged = {}
    for rater, (key, value) in measure.items():
        rest = statistics.median(v for r, (_, v) in measure.items() if r != rater)
        what = "stars" if key == "stars_alpha" else "votes"
        if value < 0:
            flagged[rater] = f"alpha with the others on {what} is {value:.2f}, below chance"
        elif value < rest - gap:
            flagged[rater] = (
                f"alpha with the others on {what} is {value:.2f}, against a median of {rest:.2f} for the rest"
            )
    return flagged


def rater_section(ratings: list[dict], judgements: list[dict], gap: float) -> dict | None:
    """Agreement between raters on queued questions and of each rater with the judges; None without queued ratings.

    `ratings` and `judgements` are the report's revealed arena rows (`ReportRows.ratings` / `arena_judgements`).
    """
    stars, votes = _values(ratings)
    if not stars and not votes:
        return None
    raters = sorted({coder for coder, _ in [*stars, *votes]})
    per_rater = {}
    for rater in raters:
        per_rater[rater] = {
            "questions": sum(coder == rater for coder, _ in votes),
            "stars_alpha": _with_others(stars, rater, "interval").to_dict(),
            "votes_alpha": _with_others(votes, rater, "nominal").to_dict(),
            "vote_agreement": _vote_agreement(votes, rater),
            "judges": judges_vs_stars([r for r in ratings if r["rater"] == rater], judgements),
        }
    flagged = _flags(per_rater, gap)
    return {
        "raters": len(raters),
        "questions": len({unit for _, unit in votes}),
        "stars_alpha": krippendorff_alpha(stars, "interval").to_dict(),
        "votes_alpha": krippendorff_alpha(votes, "nominal").to_dict(),
        "vote_agreement": _vote_agreement(votes),
        "per_rater": per_rater,
        "flagged": flagged,
        "dropped": [],
    }
