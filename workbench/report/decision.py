"""The decision: which option to pick, how sure the eval is, and what would settle it if it is not.

The rule, on the configured metric over the questions every option answered:
1. The leader is the option with the highest mean.
2. It is recommended when its paired difference against every other option is positive and significant after
   Holm's correction for those comparisons (`recommend`).
3. Otherwise the eval cannot separate the leader from the options left (`not_significant`), and the report
   estimates how many questions the closest of them would need, from the observed paired spread.
4. A recommendation that one slice of questions decides is qualified (`qualified`): when leaving out one group
   of fewer than half the questions (unanswerable ones, a question type, a value of a field asked for) turns the
   lead against the runner-up to zero or below, the decision names that group (the smallest such) and who leads
   without it. A lead that is not significant names such groups too.
Human preference, hallucination and cost never override the metric; they are given as reasons beside it, and a
disagreement (raters clearly prefer another option) is said out loud.
"""

from __future__ import annotations

from workbench.report.formats import number, plural
from workbench.report.quality import compare_family, groupings, table
from workbench.report.stats import items_needed
from workbench.variants import is_tuned


def decide(rows, preference: dict, hallucination: dict, cost: dict, by=()) -> dict:
    settings = rows.config.report
    metric = settings.metric
    scores = table(rows, metric)
    options = [v for v in rows.variants if scores.get(v)]
    if rows.eval is None or not options:
        why = (
            f"no eval yet: run `workbench eval --name {rows.run}`"
            if rows.eval is None
            else f"eval {rows.eval['id']} has no {metric} scores: set report.metric to one of {', '.join(rows.judges)}"
        )
        return {"status": "no_eval", "recommendation": None, "metric": metric, "headline": why, "reasons": []}
    common = sorted(set.intersection(*(set(scores[v]) for v in options)))
    means = {v: sum(scores[v][q] for q in common) / len(common) if common else None for v in options}
    leader = max(options, key=lambda v: means[v] if means[v] is not None else -1)
    rivals = sorted((v for v in options if v != leader), key=lambda v: -(means[v] or 0))
    level, rounds = settings.confidence, settings.bootstrap_rounds
    against = dict(zip(rivals, compare_family(scores, [(leader, r) for r in rivals], level, rounds)))
    for diff in against.values():
        diff["significant"] = diff["significant"] and diff["mean"] > 0
    unresolved = [r for r in rivals if not against[r]["significant"]]
    decision = {
        "metric": metric,
        "questions": len(common),
        "means": means,
        "leader": leader,
        "against": against,
        "undecided": [leader, *unresolved] if unresolved else [],
        "more_questions": None,
        "drivers": [],
    }
    if rivals:
        decision["drivers"] = _drivers(rows, scores, leader, rivals[0], common, by)
    if not rivals:
        decision |= {"status": "only_one", "recommendation": leader}
    elif unresolved:
        closest = min(unresolved, key=lambda r: against[r]["mean"])
        diff = against[closest]
        needed = items_needed(diff["mean"], diff["sd"], len(rivals), level, settings.power)
        decision["more_questions"] = {
            "against": closest,
            "needed": needed,
            "more": None if needed is None else max(needed - diff["n"], 0),
            "why": "too_few" if diff["n"] < 2 else "even" if needed is None else None,
        }
        decision |= {"status": "not_significant", "recommendation": None}
    else:
        decision |= {"status": "qualified" if decision["drivers"] else "recommend", "recommendation": leader}
    decision["headline"] = _headline(decision)
    decision["reasons"] = _reasons(decision, rows, preference, hallucination, cost)
    return decision


def _drivers(rows, scores, leader: str, runner_up: str, common: list[str], by) -> list[dict]:
    """Groups without which the leader's lead over the runner-up vanishes, with who leads on the rest."""
    out = []
    for grouping, group_of in groupings(rows, by).items():
        for group in sorted(set(group_of.values())):
            rest = [q for q in common if group_of.get(q) != group]
            inside = len(common) - len(rest)
            if inside == 0 or 2 * inside >= len(common):
                continue  # a slice is a minority of the questions; leaving out the majority proves nothing
            lead = sum(scores[leader][q] - scores[runner_up][q] for q in rest) / len(rest)
            if lead <= 0:
                rest_means = {v: sum(scores[v][q] for q in rest) / len(rest) for v in (leader, runner_up)}
                out.append(
                    {
                        "grouping": grouping,
                        "group": group,
                        "questions": inside,
                        "of": len(common),
                        "without": rest_means,
                        "leader_without": runner_up if lead < 0 else None,
                    }
                )
    return sorted(out, key=lambda d: d["questions"])


def _diff_text(d: dict) -> str:
    p = d.get("p_adjusted")
    return (
        f"{d['mean']:+.3f} [{number(d['low'])}, {number(d['high'])}], corrected p = {number(p)} over "
        f"{plural(d['n'], 'question')}"
    )


def _headline(d: dict) -> str:
    metric, leader, means = d["metric"], d["leader"], d["means"]
    if d["status"] == "only_one":
        return f"only {leader} was evaluated: there is nothing to compare it with"
    if d["status"] == "recommend":
        return (
            f"Recommend {leader}: it has the highest {metric} ({number(means[leader])}) and beats every other option "
            f"evaluated ({', '.join(d['against'])}) significantly."
        )
    if d["status"] == "qualified":
        driver = d["drivers"][0]
        other, without = driver["leader_without"], driver["without"]
        return (
            f"{leader} leads on {metric} ({number(means[leader])}), but only because of the {driver['group']} "
            f"questions ({driver['questions']} of {driver['of']}, by {driver['grouping']}); without them "
            + (
                f"{other} leads ({number(without[other])} against {leader}'s {number(without[leader])}). "
                f"Choose {leader} if such questions matter to your users, else {other}."
                if other
                else f"it only ties with the runner-up ({number(without[leader])})."
            )
        )
    more = d["more_questions"]
    closest = more["against"]
    if more["why"] == "too_few":
        settle = "too few questions to estimate how many would settle it: evaluate more"
    elif more["why"] == "even":
        settle = "no difference shows, so more questions are unlikely to separate them"
    else:
        settle = f"about {more['more']} more eval questions (about {more['needed']} in all) would settle it"
    text = (
        f"Not yet significant: {leader} leads on {metric} ({number(means[leader])}), but {closest} "
        f"({number(means[closest])}) is within the noise: {_diff_text(d['against'][closest])}; {settle}."
    )
    settled = [r for r, diff in d["against"].items() if diff["significant"]]
    if settled:
        text += f" Settled: {leader} beats {', '.join(settled)}."
    if d["drivers"]:
        driver = d["drivers"][0]
        text += (
            f" Its lead comes from the {driver['group']} questions ({driver['questions']} of {driver['of']}); "
            f"without them {driver['leader_without'] or 'no option'} leads."
        )
    return text


def _reasons(d: dict, rows, preference: dict, hallucination: dict, cost: dict) -> list[str]:
    """The figures behind the decision, one sentence each, for the option it is about."""
    leader = d["leader"]
    reasons = [f"{leader} against {r}: {_diff_text(diff)}" for r, diff in d["against"].items()]
    bt = (preference.get("bradley_terry") or {}).get("variants") or {}
    votes = plural(preference.get("votes", 0), "vote")
    if preference.get("votes") and not bt:
        reasons.append(f"the arena has {votes}: too few to rate the variants")
    elif bt:
        top = next(iter(bt))
        row = bt.get(leader)
        ranked = (
            f"{leader} is rated {row['rating']:.0f} [{row['low']:.0f}, {row['high']:.0f}], rank {row['rank']}"
            if row
            else f"{leader} was not in the arena"
        )
        if top != leader and bt[top]["rank"] == 1 and (row is None or row["rank"] > 1):
            reasons.append(f"raters disagree: they prefer {top} ({votes}; {ranked})")
        else:
            reasons.append(f"raters agree or cannot tell: {ranked} ({votes})")
    else:
        reasons.append("no rated arena turns yet: the human preference is unknown")
    rates = hallucination.get("eval", {})
    if leader in rates and rates[leader]["rate"] is not None:
        r = rates[leader]
        reasons.append(
            f"{r['rate']:.0%} [{r['low']:.0%}, {r['high']:.0%}] of {leader}'s answers carry a claim the detector "
            f"found unsupported"
        )
    answer = cost.get("answers", {}).get(leader)
    if answer and answer["latency_s"]["p50"] is not None:
        priced = answer.get("per_1000_answers")
        money = f", {priced:.2f} {cost['currency']} per 1,000 answers" if priced is not None else ""
        reasons.append(
            f"{leader} answers in {answer['latency_s']['p50']:.2f} s (median), "
            f"{answer['tokens_in'] or 0:.0f} tokens in, {answer['tokens_out'] or 0:.0f} out{money}"
        )
    training = cost.get("training", {}).get(leader) if is_tuned(leader) else None
    if training and training["wall_seconds"]:
        reasons.append(f"{leader}'s adapter took {training['wall_seconds'] / 60:.1f} minutes to train, once")
    return reasons
