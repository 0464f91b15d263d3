"""Quality from an eval's scores: per-variant intervals, paired comparisons, slices of the questions, and where
RAG's wrong answers come from.

Means and differences run over questions (one answer per question and variant); a comparison pairs two variants'
answers to the same questions, so question difficulty cancels out. Unanswerable questions are scored by every
reference judge as 1 for an abstention and 0 for an asserted answer, so they are reported apart: knowledge
(answerable questions) and abstention (unanswerable ones).
"""

from __future__ import annotations

from collections import defaultdict

from workbench.report.rows import ReportError, ReportRows
from workbench.report.stats import holm, mean_interval, paired_difference
from workbench.report.summary import WRONG_BELOW, eval_figures
from workbench.variants import is_tuned, uses_retrieval

KNOWLEDGE_JUDGE = "key_facts"
"""Knowledge is key-fact recall on answerable questions (the decision metric when an eval has no key-fact scores)."""


def table(rows: ReportRows, judge: str) -> dict[str, dict[str, float]]:
    """{variant: {qa id: score}} of one judge."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (qa_id, variant), score in rows.scores(judge).items():
        out[variant][qa_id] = score
    return out


def unanswerable_ids(rows: ReportRows) -> set[str]:
    """QA ids the judges scored as unanswerable (an abstention is the right answer)."""
    return {j["qa_id"] for j in rows.eval_judgements if (j["details"] or {}).get("unanswerable")}


def compare_family(scores: dict[str, dict[str, float]], pairs, confidence: float, rounds: int) -> list[dict]:
    """`paired_difference` of a - b over the questions both answered, for each (a, b) of a family of comparisons:
    p-values Holm-corrected (`p_adjusted`, `significant`) and intervals at the Bonferroni level for the family's
    size, so an interval that excludes 0 goes with a significant difference (the raw p stays in `p`)."""
    tests = max(len(pairs), 1)
    level = 1 - (1 - confidence) / tests
    diffs = []
    for a, b in pairs:
        shared = sorted(set(scores.get(a, {})) & set(scores.get(b, {})))
        diff = paired_difference([scores[a][q] for q in shared], [scores[b][q] for q in shared], level, rounds)
        diffs.append(diff | {"comparisons": tests, "interval_level": level})
    for diff, adjusted in zip(diffs, holm([d["p"] for d in diffs])):
        diff["p_adjusted"] = adjusted
        diff["significant"] = adjusted is not None and adjusted < 1 - confidence
    return diffs


def comparisons_to_make(variants: list[str], means: dict[str, float | None], asked=()) -> list[tuple[str, str, str]]:
    """(a, b, why): each variant against base, ft against prompt and against rag, ft_rag against the better of ft
    and rag, fine-tuned variants of one kind against each other (`ft` and `ft:A`, `ft_rag` and `ft_rag:A`), and the
    pairs asked for, each pair once."""
    out: list[tuple[str, str, str]] = []
    present = set(variants)
    if "base" in present:
        out += [(v, "base", "against the base model") for v in variants if v != "base"]
    if {"ft", "prompt"} <= present:
        out.append(("ft", "prompt", "fine-tuning against showing examples"))
    if {"ft", "rag"} <= present:
        out.append(("ft", "rag", "fine-tuning against retrieval"))
    singles = [v for v in ("ft", "rag") if v in present and means.get(v) is not None]
    if "ft_rag" in present and singles:
        best = max(singles, key=lambda v: means[v])
        out.append(("ft_rag", best, "both against the better single option"))
    tuned = [v for v in variants if is_tuned(v)]
    out += [  # adapters of one kind (with or without sources) against each other: recipes, sweep trials
        (a, b, "one adapter against another")
        for i, a in enumerate(tuned)
        for b in tuned[i + 1 :]
        if uses_retrieval(a) == uses_retrieval(b)
    ]
    for a, b in asked:
        unknown = [v for v in (a, b) if v not in present]
        if unknown:
            raise ReportError(f"--compare {a} {b}: the eval has no variant {unknown[0]} (it has {', '.join(variants)})")
        out.append((a, b, "asked for"))
    seen, unique = set(), []
    for a, b, why in out:
        if frozenset((a, b)) not in seen and a != b:
            seen.add(frozenset((a, b)))
            unique.append((a, b, why))
    return unique


def quality_section(rows: ReportRows, asked=()) -> dict:
    """Per variant and judge, the mean with its interval; knowledge and abstention apart; and the paired
    comparisons for every judge, p-values Holm-corrected within each judge's family of comparisons."""
    settings = rows.config.report
    level, rounds = settings.confidence, settings.bootstrap_rounds
    variants, judges = rows.variants, rows.judges
    tables = {judge: table(rows, judge) for judge in judges}
    unanswerable = unanswerable_ids(rows)
    knowledge_judge = KNOWLEDGE_JUDGE if KNOWLEDGE_JUDGE in tables else settings.metric
    section: dict = {"metric": settings.metric, "judges": judges, "variants": {}, "knowledge_judge": knowledge_judge}
    for v in variants:
        section["variants"][v] = {j: mean_interval(list(tables[j].get(v, {}).values()), level, rounds) for j in judges}
        know = tables.get(knowledge_judge, {}).get(v, {})
        section["variants"][v]["knowledge"] = mean_interval(
            [s for q, s in know.items() if q not in unanswerable], level, rounds
        )
        section["variants"][v]["abstention"] = mean_interval(
            [s for q, s in tables.get(settings.metric, {}).get(v, {}).items() if q in unanswerable], level, rounds
        )
    means = {v: section["variants"][v].get(settings.metric, {}).get("mean") for v in variants}
    pairs = comparisons_to_make(variants, means, asked)
    standard = {frozenset(pair[:2]) for pair in comparisons_to_make(variants, means)}
    section["notes"] = [
        f"--compare {a} {b}: already among the comparisons made by default" for a, b in asked if {a, b} in standard
    ]
    section["comparisons"] = [{"a": a, "b": b, "why": why, "judges": {}} for a, b, why in pairs]
    for judge in judges:
        diffs = compare_family(tables[judge], [(a, b) for a, b, _ in pairs], level, rounds)
        for row, diff in zip(section["comparisons"], diffs):
            row["judges"][judge] = diff
    section["questions"] = len({q for t in tables.values() for scores in t.values() for q in scores})
    section["unanswerable"] = len(unanswerable)
    return section


BUILT_IN_FIELDS = {
    "type": lambda q: q.type,
    "doc_id": lambda q: q.gold_doc_ids[0] if q.gold_doc_ids else None,
    "doc_ids": lambda q: "+".join(q.gold_doc_ids) or None,
}
"""QA fields every question has, besides the QA file's own (`Question.fields`); `doc_id` is the main document."""


def groupings(rows: ReportRows, by=()) -> dict[str, dict[str, str]]:
    """{grouping: {qa id: group}}: answerable vs unanswerable, the QA type, and each field asked for (a QA file's
    own field, or `doc_id` / `doc_ids`); a question without the field is in group `(none)`."""
    ids = {j["qa_id"] for j in rows.eval_judgements}
    unanswerable = unanswerable_ids(rows)
    out = {"answerable": {q: "unanswerable" if q in unanswerable else "answerable" for q in ids}}
    asked = ["type", *by] if any(q.type for q in rows.questions.values()) else list(by)
    for name in dict.fromkeys(asked):
        if not rows.questions:
            raise ReportError(f"--by {name}: the eval's questions cannot be read, so they cannot be grouped")
        fields = sorted({f for q in rows.questions.values() for f in q.fields} | set(BUILT_IN_FIELDS))
        if name not in fields:
            raise ReportError(
                f"--by {name}: the eval's questions have no field {name!r} (they have: {', '.join(fields)})"
            )
        value = BUILT_IN_FIELDS.get(name, lambda q, name=name: q.fields.get(name))
        values = {q: value(rows.questions[q]) for q in ids if q in rows.questions}
        out[name] = {q: "(none)" if v is None else str(v) for q, v in values.items()}
    return out


def breakdown_section(rows: ReportRows, by=()) -> dict:
    """Per grouping and group, each variant's metric with its interval and the group's leader; per variant, the
    largest gap between two groups of at least 2 questions (the slices where a variant is weak)."""
    settings = rows.config.report
    scores = table(rows, settings.metric)
    out = {}
    for grouping, group_of in groupings(rows, by).items():
        members: dict[str, list[str]] = defaultdict(list)
        for qa_id, group in sorted(group_of.items()):
            members[group].append(qa_id)
        groups = {}
        for group, ids in sorted(members.items()):
            per_variant = {
                v: mean_interval(
                    [scores[v][q] for q in ids if q in scores.get(v, {})],
                    settings.confidence,
                    settings.bootstrap_rounds,
                )
                for v in rows.variants
            }
            ranked = [v for v in per_variant if per_variant[v]["mean"] is not None]
            leader = max(ranked, key=lambda v: per_variant[v]["mean"]) if ranked else None
            groups[group] = {"questions": len(ids), "variants": per_variant, "leader": leader}
        gaps = {}
        for v in rows.variants:
            sized = {
                g: row["variants"][v]["mean"]
                for g, row in groups.items()
                if row["variants"][v]["n"] >= 2 and row["variants"][v]["mean"] is not None
            }
            if len(sized) >= 2:
                high, low = max(sized, key=sized.get), min(sized, key=sized.get)
                gaps[v] = {"gap": sized[high] - sized[low], "high": high, "low": low}
        out[grouping] = {"groups": groups, "largest_gap": gaps}
    return out


def attribution_section(rows: ReportRows) -> dict:
    """Per variant shown sources: of its wrong answers (token F1 below `WRONG_BELOW`) to questions with gold
    documents, how many had a gold source retrieved (the generator failed) and how many did not (retrieval missed)."""
    figures = eval_figures(rows.eval_answers, rows.eval_judgements, rows.eval_claims)
    out = {}
    for v in rows.variants:
        row = figures.get(v, {})
        if not row.get("attributed"):
            continue
        wrong = row["wrong_gold_shown"] + row["wrong_gold_missed"]
        out[v] = {
            "answers": row["attributed"],
            "gold_shown": row["gold_shown"],
            "wrong": wrong,
            "generator_failed": row["wrong_gold_shown"],
            "retrieval_missed": row["wrong_gold_missed"],
            "retrieval_missed_share": row["wrong_gold_missed"] / wrong if wrong else None,
        }
    return {"wrong_below": WRONG_BELOW, "variants": out}
