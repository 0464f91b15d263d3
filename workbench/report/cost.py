"""Cost: what each option took to build (training, index) and takes per answer (latency, tokens, machine time),
priced when the config gives prices, and the answer volume at which fine-tuning's one-off cost is repaid.

In an eval many questions' rows share each decoding step, so an answer's latency is not the machine time it used:
the machine time of local answers is the eval's answering wall time (`answering_seconds`) shared out among them
in proportion to their latencies. Remote answers are priced by their tokens.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

from workbench.report.stats import percentiles
from workbench.variants import REMOTE_PREFIX


def _hour_price(settings, kind: str | None) -> float | None:
    return settings.gpu_hour if kind == "gpu" else settings.cpu_hour


def _priced(seconds: float | None, price: float | None) -> float | None:
    return None if seconds is None or price is None else seconds / 3600 * price


def cost_section(rows) -> dict:
    settings = rows.config.report
    eval_machine = ((rows.eval or {}).get("counts") or {}).get("machine")
    section: dict = {
        "currency": settings.currency,
        "prices": {"cpu_hour": settings.cpu_hour, "gpu_hour": settings.gpu_hour},
        "training": {},
        "index": None,
        "answers": {},
        "break_even": [],
        "eval_machine": eval_machine,
    }
    for variant, name in rows.adapter_of.items():
        adapter = rows.adapters[name]
        m = adapter["manifest"]
        machine = m.get("machine")
        section["training"][variant] = {
            "adapter": name,
            "recipe": m.get("recipe"),
            "wall_seconds": m.get("wall_seconds"),
            "steps": m.get("steps"),
            "machine": machine,
            "trainable_params": m.get("trainable_params"),
            "total_params": m.get("total_params"),
            "adapter_bytes": adapter["bytes"],
            "cost": _priced(m.get("wall_seconds"), _hour_price(settings, (machine or {}).get("kind"))),
        }
    if rows.index:
        build = rows.index.get("build", {})
        section["index"] = {
            "seconds": build.get("seconds"),
            "bytes": rows.index_bytes,
            "chunks": rows.index.get("counts", {}).get("chunks"),
            "documents": rows.index.get("counts", {}).get("documents"),
            "cost": _priced(build.get("seconds"), settings.cpu_hour),
        }
    kind = (eval_machine or {}).get("kind")
    local = [a for a in rows.eval_answers if not a["error"] and not a["variant"].startswith(REMOTE_PREFIX)]
    wall = answering_seconds(local)
    latency_sum = sum(a["total_s"] or 0 for a in local)
    section["answering_seconds"] = wall
    for variant in rows.variants:
        answered = [a for a in rows.eval_answers if a["variant"] == variant and not a["error"]]
        latency = [a["total_s"] for a in answered if a["total_s"] is not None]
        tokens_in = _mean([a["tokens_in"] for a in answered])
        tokens_out = _mean([a["tokens_out"] for a in answered])
        row = {
            "latency_s": percentiles(latency),
            "first_token_s": percentiles([a["ttft_s"] for a in answered]),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "machine_seconds": (wall * sum(latency) / latency_sum / len(latency)) if latency and latency_sum else None,
        }
        if variant.startswith(REMOTE_PREFIX):
            price = settings.remote_prices.get(variant.removeprefix(REMOTE_PREFIX))
            row["machine_seconds"] = None
            row["per_1000_answers"] = (
                None
                if price is None or tokens_in is None or tokens_out is None
                else tokens_in * price.input_per_1k + tokens_out * price.output_per_1k
            )
        else:
            row["per_1000_answers"] = _priced(
                None if row["machine_seconds"] is None else 1000 * row["machine_seconds"], _hour_price(settings, kind)
            )
        section["answers"][variant] = row
    section["break_even"] = _break_even(section)
    return section


PAUSE_S = 300
"""A gap this long between two stored answers is a pause (the eval was stopped and resumed), not answering."""


def answering_seconds(answers: list[dict]) -> float | None:
    """The wall time an eval spent answering: the gaps between consecutive stored answers (pauses over `PAUSE_S`
    left out), plus the latency of the first answer of each stretch (the time before it was stored)."""
    stamps = sorted((datetime.fromisoformat(a["created_at"]), a["total_s"] or 0.0) for a in answers)
    if not stamps:
        return None
    total = stamps[0][1]
    for (before, _), (after, latency) in pairwise(stamps):
        gap = (after - before).total_seconds()
        total += gap if gap <= PAUSE_S else latency
    return total


def _break_even(section: dict) -> list[dict]:
    """Fine-tuning against retrieval: the number of answers after which the one-off difference (training the
    adapter against building the index) is repaid by ft's cheaper answers (its prompts carry no sources), in
    machine time; None when ft's answers are not cheaper."""
    answers, training, index = section["answers"], section["training"], section["index"] or {}
    if not {"ft", "rag"} <= set(answers) or "ft" not in training:
        return []
    tuned_s, rag_s = answers["ft"]["machine_seconds"], answers["rag"]["machine_seconds"]
    if tuned_s is None or rag_s is None:
        return []
    one_off = (training["ft"]["wall_seconds"] or 0) - (index.get("seconds") or 0)
    saving = rag_s - tuned_s
    row = {
        "variant": "ft",
        "against": "rag",
        "one_off_seconds": one_off,
        "saving_seconds_per_answer": saving,
        "answers": None if saving <= 0 else max(one_off, 0) / saving,
        "answers_priced": None,
    }
    # in money, when training and answers are priced (a GPU hour for training may cost more than a CPU hour)
    train_cost, rag_cost, ft_cost = (
        training["ft"]["cost"],
        answers["rag"]["per_1000_answers"],
        answers["ft"]["per_1000_answers"],
    )
    if None not in (train_cost, rag_cost, ft_cost) and rag_cost > ft_cost:
        one_off_cost = train_cost - (index.get("cost") or 0)
        row["answers_priced"] = max(one_off_cost, 0) / ((rag_cost - ft_cost) / 1000)
    return [row]


def training_section(rows) -> dict:
    """Per adapter: the variants that answer with it, its loss curves, events (best checkpoints, spikes,
    overfitting, early stop), outcome, and the forgetting probe (general-text perplexity before and after)."""
    out = {}
    for name, adapter in rows.adapters.items():
        m = adapter["manifest"]
        out[name] = {
            "variants": [v for v, a in rows.adapter_of.items() if a == name],
            "recipe": m.get("recipe"),
            "outcome": m.get("outcome"),
            "steps": m.get("steps"),
            "best_step": m.get("best_step"),
            "best_val_loss": m.get("best_val_loss"),
            "forgetting": m.get("forgetting"),
            "curve": [{k: row.get(k) for k in ("step", "train_loss", "val_loss")} for row in adapter["curve"]],
            "events": [e for e in adapter["events"] if e.get("kind") != "best"],
        }
    return out


def _mean(values) -> float | None:
    given = [v for v in values if v is not None]
    return sum(given) / len(given) if given else None
