"""HTML for the arena's columns, the reveal and the ratings table: pure functions over session records.

Every text that came from a model, the corpus or a user goes through `esc`, so an answer or a retrieved chunk
holding `<script>` or `<img onerror=...>` shows as text. A column's HTML names its variant only when the caller
passes `variant` (after the reveal); before that it carries the column label alone.
"""

from __future__ import annotations

import html
import re

from workbench.session import Column

CSS = """
.wb-col { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; min-height: 120px; }
.wb-head { font-weight: 700; font-size: 1.1em; margin-bottom: 6px; }
.wb-head .wb-name { font-weight: 400; color: var(--body-text-color-subdued); }
.wb-q { font-style: italic; color: var(--body-text-color-subdued); margin: 4px 0; white-space: pre-wrap; }
.wb-answer, .wb-past-a { white-space: pre-wrap; line-height: 1.45; }
.wb-past { opacity: 0.7; border-bottom: 1px dashed var(--border-color-primary); margin-bottom: 6px; padding-bottom: 4px; }
.wb-meta, .wb-judges { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 6px; }
.wb-claim { border-radius: 3px; padding: 0 1px; }
.wb-col details { margin-top: 6px; font-size: 0.9em; }
.wb-col details pre { white-space: pre-wrap; font-size: 0.9em; max-height: 16em; overflow: auto; }
.wb-bad { color: #b42318; }
.wb-ok { color: #067647; }
.wb-table { border-collapse: collapse; width: 100%; }
.wb-table th, .wb-table td { border: 1px solid var(--border-color-primary); padding: 4px 8px; text-align: right; }
.wb-table th:first-child, .wb-table td:first-child { text-align: left; }
"""


def esc(text: object) -> str:
    """Text as inert HTML: markup escaped, and the template characters of Gradio's HTML component too."""
    return html.escape(str(text), quote=True).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def column_html(
    column: Column, question: str = "", history: list[tuple[str, str]] = (), variant: str | None = None
) -> str:
    """One column: earlier turns, the question, the answer (claims highlighted), timings, judges, claims, sources."""
    name = f' <span class="wb-name">= {esc(variant)}</span>' if variant else ""
    parts = [
        f'<div class="wb-col" data-col="{esc(column.label)}">',
        f'<div class="wb-head">{esc(column.label)}{name}</div>',
    ]
    for past_question, past_answer in history:
        parts.append(
            f'<div class="wb-past"><div class="wb-q">{esc(past_question)}</div>'
            f'<div class="wb-past-a">{esc(past_answer)}</div></div>'
        )
    if question:
        parts.append(f'<div class="wb-q">{esc(question)}</div>')
    text = _highlighted(column.text, column.claims) if column.claims else esc(column.text)
    cursor = "" if column.done or not question else " ▌"
    parts.append(f'<div class="wb-answer">{text}{cursor}</div>')
    if column.done:
        parts.append(f'<div class="wb-meta">{_meta(column)}</div>')
    if column.judges:
        scores = " · ".join(f"{esc(j)} {_score(s)}" for j, s in column.judges.items())
        parts.append(f'<div class="wb-judges">reference judges: {scores}</div>')
    if column.claims:
        parts.append(_claims(column.claims))
    if column.sources:
        parts.append(_sources(column))
    parts.append("</div>")
    return "".join(parts)


def _meta(column: Column) -> str:
    bits = []
    if column.ttft_s is not None:
        bits.append(f"first token {column.ttft_s:.2f} s")
    if column.total_s is not None:
        bits.append(f"total {column.total_s:.2f} s")
    if column.tokens_out is not None:
        bits.append(f"{column.tokens_out} tokens")
    if column.finish_reason == "length":
        bits.append("cut at the token limit")
    if column.error:
        bits.append(f'<span class="wb-bad">error: {esc(column.error)}</span>')
    return " · ".join(bits)


def _score(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.2f}"


def _colour(score: float) -> str:
    """Background for a claim: clear when supported, up to a strong red as the score nears 1."""
    return f"rgba(220, 38, 38, {0.08 + 0.5 * max(0.0, min(1.0, score)):.2f})"


def _highlighted(text: str, claims: list[dict]) -> str:
    """The answer with each claim's span tinted by its score (claims are found in order, spacing ignored)."""
    out, at = [], 0
    for number, claim in enumerate(claims, 1):
        words = claim["text"].split()
        if not words:
            continue
        found = re.compile(r"\s+".join(map(re.escape, words))).search(text, at)
        if not found:
            continue
        out.append(esc(text[at : found.start()]))
        tip = (
            f"claim {number}: score {claim['score']:.2f}, {'supported' if claim['supported'] else 'likely unsupported'}"
        )
        out.append(
            f'<span class="wb-claim" style="background:{_colour(claim["score"])}" title="{esc(tip)}">'
            f"{esc(found.group(0))}</span>"
        )
        at = found.end()
    out.append(esc(text[at:]))
    return "".join(out)


def _claims(claims: list[dict]) -> str:
    flagged = sum(not c["supported"] for c in claims)
    items = []
    for number, claim in enumerate(claims, 1):
        verdict = "likely unsupported" if not claim["supported"] else "supported"
        css = "wb-bad" if not claim["supported"] else "wb-ok"
        evidence = "".join(
            f"<li>{esc(e.get('chunk_id', ''))} (similarity {_score(e.get('score'))})<pre>{esc(e.get('text', ''))}</pre></li>"
            for e in claim.get("evidence", [])
        )
        items.append(
            f'<li><span class="wb-claim" style="background:{_colour(claim["score"])}">{esc(claim["text"])}</span> '
            f'<span class="{css}">{verdict}, score {claim["score"]:.2f}</span>'
            + (f"<details><summary>evidence</summary><ul>{evidence}</ul></details>" if evidence else "")
            + "</li>"
        )
    return (
        f'<details class="wb-claims"><summary>Claims: {flagged} of {len(claims)} likely unsupported</summary>'
        f"<ol>{''.join(items)}</ol></details>"
    )


def _sources(column: Column) -> str:
    items = "".join(
        f"<li><b>{esc(s.chunk_id)}</b> {esc(s.title)} (score {s.score:.3f})<pre>{esc(s.text)}</pre></li>"
        for s in column.sources
    )
    return f'<details class="wb-sources"><summary>Sources shown ({len(column.sources)})</summary><ol>{items}</ol></details>'


def reveal_html(mapping: dict[str, str]) -> str:
    """The names behind the columns, after the vote."""
    pairs = " · ".join(f"<b>{esc(label)}</b> = {esc(name)}" for label, name in mapping.items())
    return f'<div class="wb-reveal">Revealed: {pairs}</div>'


SUMMARY_COLUMNS = (
    ("answers", "answers"),
    ("ratings", "rated"),
    ("mean_stars", "mean stars"),
    ("wins", "votes won"),
    ("ties", "ties"),
    ("all_bad", "all bad"),
    ("human_flagged", "flagged by raters"),
    ("human_flag_rate", "rater flag rate"),
)


def summary_html(summary: dict[str, dict]) -> str:
    """`Store.variant_summary` as a table: one row per variant, automatic flags and judge means at the end."""
    if not summary:
        return "<p>No answers stored for this run yet: ask something in the Arena tab.</p>"
    judges = sorted({j for row in summary.values() for j in row.get("judges", {})})
    detectors = sorted({d for row in summary.values() for d in row.get("auto_flagged", {})})
    head = ["variant", *(title for _, title in SUMMARY_COLUMNS)]
    head += [f"flagged by {d}" for d in detectors] + [f"judge {j}" for j in judges]
    rows = []
    for variant, row in summary.items():
        cells = [esc(variant)] + [_cell(row.get(key)) for key, _ in SUMMARY_COLUMNS]
        cells += [_cell(row["auto_flagged"].get(d, 0)) for d in detectors]
        cells += [_cell((row["judges"].get(j) or {}).get("mean")) for j in judges]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    return f'<table class="wb-table"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return esc(value)
