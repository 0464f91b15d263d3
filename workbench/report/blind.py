"""Blind until the vote: which arena rows may be shown with their variant.

A rater's conversation stays blind until that rater votes on the turn (a best answer, a tie or all bad). Before
that, nothing the app shows or exports may name a column's variant, nor give a per-variant figure that would point
at one: on a quiet store, a variant's mean judge score over unvoted turns is the score its column shows. So every
per-variant view of arena rows (the report, the ratings summary) reads them through `revealed`, and a ratings
export names the column letter instead of the variant for a turn not voted on yet.
"""

from __future__ import annotations

from workbench.records import COLUMN_LABELS


def voted_turns(ratings: list[dict]) -> set[str]:
    """The turns with a vote among `ratings` (rows of `Store.ratings`)."""
    return {r["turn_id"] for r in ratings if r["vote"] is not None}


def revealed(
    answers: list[dict], ratings: list[dict], judgements: list[dict], claims: list[dict]
) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """The arena rows of voted turns only: answers, ratings, and the judgements and claims of those answers."""
    voted = voted_turns(ratings)
    shown = [a for a in answers if a["turn_id"] in voted]
    ids = {a["id"] for a in shown}
    return (
        shown,
        [r for r in ratings if r["turn_id"] in voted],
        [j for j in judgements if j["answer_id"] in ids],
        [c for c in claims if c["answer_id"] in ids],
    )


def revealed_arena_rows(store, run: str, rater: str | None = None) -> tuple[list, list, list, list]:
    """`revealed` over the arena rows of `run` in `store` (answers, ratings, judgements, claims; eval rows left
    out), of one `rater`'s ratings when given; read inside the caller's `store.snapshot()` for one consistent view."""
    ratings = [r for r in store.ratings(run) if rater is None or r["rater"] == rater]
    answers, judgements, claims = (
        [row for row in rows if row["eval_id"] is None]
        for rows in (store.answers(run), store.judgements(run), store.claim_flags(run))
    )
    return revealed(answers, ratings, judgements, claims)


def blinded(ratings: list[dict]) -> list[dict]:
    """Rating rows as an export may carry them: on a turn not voted on, the variant is replaced by its column
    letter (`column B`), from the conversation's stored blind order."""
    voted = voted_turns(ratings)
    rows = []
    for r in ratings:
        if r["turn_id"] not in voted and r["variant"] is not None:
            r = r | {"variant": f"column {COLUMN_LABELS[r['blind_order'].index(r['variant'])]}"}
        rows.append(r)
    return rows
