"""`build_report`: every section of a run's report as one JSON-ready dict (what `workbench report --json` prints
and what the HTML, the Markdown and the Report tab render)."""

from __future__ import annotations

import time
from dataclasses import replace

from workbench.report.cost import cost_section, training_section
from workbench.report.decision import decide
from workbench.report.drift import drift_section
from workbench.report.hallucination import hallucination_section
from workbench.report.preference import preference_section
from workbench.report.quality import attribution_section, breakdown_section, quality_section
from workbench.report.raters import rater_section
from workbench.report.rows import ReportRows


def build_report(rows: ReportRows, by=(), compare=(), before: ReportRows | None = None) -> dict:
    """The report's sections from `rows`; with `before` (the rows of an earlier eval of the run), also the drift
    from that eval to this one."""
    started = time.perf_counter()
    raters = rater_section(rows.ratings, rows.arena_judgements, rows.config.report.rater_alpha_gap)
    if raters and raters["flagged"] and rows.config.report.drop_flagged_raters:
        raters["dropped"] = sorted(raters["flagged"])
        rows = replace(rows, ratings=[r for r in rows.ratings if r["rater"] not in raters["flagged"]])
    preference = preference_section(rows)
    hallucination = hallucination_section(rows)
    cost = cost_section(rows)
    report = {
        "run": rows.run,
        "settings": rows.config.report.model_dump(
            include={"metric", "confidence", "bootstrap_rounds", "preference_rounds"}
        ),
        "eval": _eval_summary(rows),
        "decision": decide(rows, preference, hallucination, cost, by),
        "quality": quality_section(rows, compare) if rows.eval else None,
        "drift": drift_section(before, rows) if before is not None and before.eval and rows.eval else None,
        "preference": preference,
        "hallucination": hallucination,
        "breakdowns": breakdown_section(rows, by) if rows.eval else {},
        "attribution": attribution_section(rows) if rows.eval else None,
        "cost": cost,
        "training": training_section(rows),
        "raters": raters,
        "freshness": _freshness(rows.freshness),
        "notes": list(rows.notes),
    }
    if report["quality"]:
        report["notes"] = [*report["notes"], *report["quality"].pop("notes")]
    if raters and raters["dropped"]:
        report["notes"].append(
            f"ratings of {', '.join(raters['dropped'])} are left out of every human figure "
            "(report.drop_flagged_raters): their agreement with the other raters is far below the rest"
        )
    if "type" in by and "type" in report["breakdowns"]:
        report["notes"].append("--by type: results are always broken down by question type")
    report["seconds"] = time.perf_counter() - started
    return report


def _freshness(probe: dict | None) -> dict | None:
    """The freshness probe's figures (its answers and edits stay in its file)."""
    keys = ("created_at", "facts", "index_update_s", "retrain_s", "variants")
    return {key: probe.get(key) for key in keys} if probe else None


def _eval_summary(rows: ReportRows) -> dict | None:
    if rows.eval is None:
        return None
    e = rows.eval
    return {
        "id": e["id"],
        "split": e["split"],
        "variants": rows.variants,
        "judges": rows.judges,
        "questions": e["questions"],
        "answers": len(rows.eval_answers),
        "errors": sum(bool(a["error"]) for a in rows.eval_answers),
        "started_at": e["started_at"],
        "finished_at": e["finished_at"],
        "model_id": e["model_id"],
        "adapter_ids": e["adapter_ids"],
        "index_id": e["index_id"],
    }
