"""Per-variant summaries of a run's arena: counts, star means, votes, human and automatic flags, judge means."""

from __future__ import annotations

from collections import defaultdict

from workbench.report.blind import revealed_arena_rows
from workbench.store import Store


def variant_summary(store: Store, run: str, rater: str | None = None) -> dict[str, dict]:
    """`summarize` over the arena rows of `run` (answers to conversation turns; eval answers are left out) on
    turns already voted on (`blind.revealed`), of one `rater`'s ratings when given."""
    with store.snapshot():
        arena = revealed_arena_rows(store, run, rater)
    return summarize(*arena)


def summarize(answers: list[dict], ratings: list[dict], judgements: list[dict], claims: list[dict]) -> dict[str, dict]:
    """Per variant, from the rows of `Store.answers/ratings/judgements/claim_flags` of one run:

    `answers`; `ratings` (answer-level ratings) and `mean_stars` (None without stars); `wins` (`best` votes on
    its answers); `ties` and `all_bad` (such votes on turns it answered); `human_flagged` (answers a rater flagged
    as hallucinated) and `human_flag_rate` (over answers with a True/False flag; None without one);
    `auto_flagged` ({detector: answers with an unsupported claim}); `judges` ({judge: {mean, scored, failed}},
    mean over scored answers, failed = NULL scores).
    """
    variant_of = {a["id"]: a["variant"] for a in answers}
    turn_variants: dict[str, set[str]] = defaultdict(set)
    for a in answers:
        turn_variants[a["turn_id"]].add(a["variant"])
    summary = {
        variant: {"answers": 0, "ratings": 0, "mean_stars": None, "wins": 0, "ties": 0, "all_bad": 0}
        for variant in sorted(set(variant_of.values()))
    }
    for a in answers:
        summary[a["variant"]]["answers"] += 1
    stars, checked, flagged = defaultdict(list), defaultdict(set), defaultdict(set)
    for r in ratings:
        if r["answer_id"] is None:
            if r["vote"] is not None:
                for variant in turn_variants[r["turn_id"]]:
                    summary[variant]["ties" if r["vote"] == "tie" else "all_bad"] += 1
            continue
        variant = variant_of[r["answer_id"]]
        summary[variant]["ratings"] += 1
        if r["vote"] == "best":
            summary[variant]["wins"] += 1
        if r["stars"] is not None:
            stars[variant].append(r["stars"])
        if r["hallucinated"] is not None:
            checked[variant].add(r["answer_id"])
        if r["hallucinated"]:
            flagged[variant].add(r["answer_id"])
    unsupported: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for c in claims:
        if not c["supported"]:
            unsupported[c["variant"]][c["detector"]].add(c["answer_id"])
    scores: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for j in judgements:
        scores[j["variant"]][j["judge"]].append(j["score"])
    for variant, row in summary.items():
        row["mean_stars"] = sum(stars[variant]) / len(stars[variant]) if stars[variant] else None
        row["human_flagged"] = len(flagged[variant])
        row["human_flag_rate"] = len(flagged[variant]) / len(checked[variant]) if checked[variant] else None
        row["auto_flagged"] = {detector: len(ids) for detector, ids in sorted(unsupported[variant].items())}
        row["judges"] = {judge: _judge_stats(values) for judge, values in sorted(scores[variant].items())}
    return summary


def _judge_stats(values: list[float | None]) -> dict:
    scored = [v for v in values if v is not None]
    return {
        "mean": sum(scored) / len(scored) if scored else None,
        "scored": len(scored),
        "failed": len(values) - len(scored),
    }


WRONG_BELOW = 0.5
"""An eval answer counts as wrong when its `token_f1` is below this (for the retrieval attribution)."""


def eval_figures(answers: list[dict], judgements: list[dict], claims: list[dict]) -> dict[str, dict]:
    """Per variant, from one eval's rows (`Store.answers/judgements/claim_flags(eval_id=...)`):

    `answers`, `errors`; `judges` ({judge: {mean, scored, failed}}); `flagged` (share of detector-checked
    answers with an unsupported claim; None when none was checked); for answers shown sources of a question with
    gold documents: `gold_shown` (share with a gold source among them) and, of those answers that are wrong
    (token F1 below `WRONG_BELOW`), `wrong_gold_shown` (the generator failed) and `wrong_gold_missed` (retrieval
    missed), as counts.
    """
    figures: dict[str, dict] = {}
    for a in answers:
        row = figures.setdefault(
            a["variant"],
            {
                "answers": 0,
                "errors": 0,
                "attributed": 0,
                "gold_shown": 0,
                "wrong_gold_shown": 0,
                "wrong_gold_missed": 0,
            },
        )
        row["answers"] += 1
        row["errors"] += bool(a["error"])
    f1 = {j["answer_id"]: j["score"] for j in judgements if j["judge"] == "token_f1"}
    for a in answers:
        if a["gold_rank"] is None:
            continue
        row = figures[a["variant"]]
        row["attributed"] += 1
        row["gold_shown"] += a["gold_rank"] > 0
        if f1.get(a["id"]) is not None and f1[a["id"]] < WRONG_BELOW:
            row["wrong_gold_shown" if a["gold_rank"] > 0 else "wrong_gold_missed"] += 1
    scores: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for j in judgements:
        scores[j["variant"]][j["judge"]].append(j["score"])
    checked: dict[str, set] = defaultdict(set)
    flagged: dict[str, set] = defaultdict(set)
    for c in claims:
        checked[c["variant"]].add(c["answer_id"])
        if not c["supported"]:
            flagged[c["variant"]].add(c["answer_id"])
    for variant, row in figures.items():
        row["judges"] = {judge: _judge_stats(values) for judge, values in sorted(scores[variant].items())}
        row["flagged"] = len(flagged[variant]) / len(checked[variant]) if checked[variant] else None
        row["gold_shown"] = row["gold_shown"] / row["attributed"] if row["attributed"] else None
    return dict(sorted(figures.items()))


def eval_summary(store: Store, eval_id: str) -> str:
    """A plain-text table of `eval_figures` for the CLI."""
    with store.snapshot():
        record = store.eval(eval_id)
        figures = eval_figures(
            store.answers(eval_id=eval_id), store.judgements(eval_id=eval_id), store.claim_flags(eval_id=eval_id)
        )
    judges = sorted({j for row in figures.values() for j in row["judges"]})
    lines = [
        f"eval {eval_id} of run {record['run']} ({record['split']}, {record['questions']} questions): "
        + ("finished" if record["finished_at"] else "not finished")
    ]
    head = ["variant", "answers", *judges, "flagged", "gold shown", "wrong: gold shown / missed"]
    rows = []
    order = {variant: i for i, variant in enumerate(record["variants"])}  # the eval's own order
    for variant, row in sorted(figures.items(), key=lambda item: order.get(item[0], len(order))):
        means = [row["judges"].get(j, {}).get("mean") for j in judges]
        rows.append(
            [
                variant,
                f"{row['answers']}" + (f" ({row['errors']} failed)" if row["errors"] else ""),
                *("-" if m is None else f"{m:.3f}" for m in means),
                "-" if row["flagged"] is None else f"{row['flagged']:.0%}",
                "-" if row["gold_shown"] is None else f"{row['gold_shown']:.0%}",
                f"{row['wrong_gold_shown']} / {row['wrong_gold_missed']}" if row["attributed"] else "-",
            ]
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip())
    lines.append(
        f"flagged: answers with a claim the detector found unsupported; gold shown: answers shown a source from a "
        f"gold document; wrong (token F1 < {WRONG_BELOW}): gold shown = the generator failed, missed = retrieval did"
    )
    return "\n".join(lines)
