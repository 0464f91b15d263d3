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
.wb-past { opacity: 0.7; border-bottom: 1px dashed var(--border-color-primary); margin: 0 0 6px; padding: 0 0 4px; }
.wb-meta, .wb-judges { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 6px; }
.wb-claim { border-radius: 3px; padding: 0 1px; }
.wb-flag { background: rgba(220, 38, 38, 0.35); }
.wb-col details { margin-top: 6px; font-size: 0.9em; }
.wb-col details pre { white-space: pre-wrap; font-size: 0.9em; max-height: 16em; overflow: auto; }
.wb-refs, .wb-rank { color: var(--body-text-color-subdued); font-size: 0.9em; }
.wb-legend { font-size: 0.9em; }
.wb-cut { color: var(--body-text-color-subdued); }
.wb-quote { color: var(--body-text-color-subdued); font-size: 0.9em; margin-left: 1em; }
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
    if column.finish_reason == "length":  # the claims of a cut answer are checked all the same
        cursor = ' <span class="wb-cut" title="the answer reached the token limit">… [cut]</span>'
    parts.append(f'<div class="wb-answer">{text}{cursor}</div>')
    if column.done:
        parts.append(f'<div class="wb-meta">{_meta(column)}</div>')
    if column.judges:
        parts.append(_judges(column.judges))
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
    elif column.finish_reason == "repeat":
        bits.append("stopped where it began to repeat itself")
    if column.error:
        bits.append(f'<span class="wb-bad">error: {esc(column.error)}</span>')
    return " · ".join(bits)


JUDGE_NAMES = {"key_facts": "Key facts", "token_f1": "Token F1", "rouge_l": "ROUGE-L", "embedding": "Similarity"}
"""Readable names of the graded reference judges (another judge shows by its registered name)."""
JUDGE_WORDS = {"exact_match": "exact match", "contains": "contains the reference"}
"""The 0/1 reference judges: a word when they hold, nothing otherwise (Token F1 already says how close)."""
JUDGES_TIP = "0-1, higher is closer to the run's reference answer to this question"
EVIDENCE_TIP = "evidence passage (listed below the claims) and how close its closest sentence is to the claim, 0-1"


def _judges(judges: dict[str, float | None]) -> str:
    """Scores against the reference answer: graded ones by readable name, 0/1 ones as a word when they hold."""
    graded = [
        f"{esc(JUDGE_NAMES.get(j, j.replace('_', ' ')))} {s:.2f}"
        for j, s in judges.items()
        if s is not None and j not in JUDGE_WORDS
    ]
    words = [JUDGE_WORDS[j] for j, s in judges.items() if j in JUDGE_WORDS and s == 1]
    shown = " · ".join(graded + words) or "could not be scored"
    return f'<div class="wb-judges" title="{JUDGES_TIP}">vs. reference answer: {shown}</div>'


def _score(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.2f}"


def _claim_span(claim: dict, number: int, text: str) -> str:
    """A claim's text, red (`wb-flag`, the one tint) exactly when the detector found it likely unsupported, so the
    answer and the claim list never disagree (the threshold is the detector's, `hallucination.threshold`)."""
    verdict = "supported" if claim["supported"] else "likely unsupported"
    tip = f"claim {number}: {verdict}, score {claim['score']:.2f}"
    css = "wb-claim" if claim["supported"] else "wb-claim wb-flag"
    return f'<span class="{css}" title="{esc(tip)}">{esc(text)}</span>'


def _highlighted(text: str, claims: list[dict]) -> str:
    """The answer with each claim's span marked by its verdict (claims are found in order, spacing ignored; a
    claim's closing full stop may be missing from the text, as when the answer was cut at the token limit)."""
    out, at = [], 0
    for number, claim in enumerate(claims, 1):
        words = claim["text"].split()
        if not words:
            continue
        pattern = r"\s+".join(map(re.escape, words))
        if pattern.endswith(r"\."):
            pattern = pattern[:-2] + r"\.?"
        found = re.compile(pattern).search(text, at)
        if not found:
            continue
        out.append(esc(text[at : found.start()]))
        out.append(_claim_span(claim, number, found.group(0)))
        at = found.end()
    out.append(esc(text[at:]))
    return "".join(out)


def _claims(claims: list[dict]) -> str:
    """The claims, each quoting the evidence sentence closest to it and citing its passage by number: every
    distinct evidence passage is listed once per answer, below them."""
    flagged = sum(not c["supported"] for c in claims)
    numbers: dict[str, int] = {}  # chunk id -> passage number, in order of first citation
    passages, items = [], []
    for number, claim in enumerate(claims, 1):
        cited = []
        for evidence in claim.get("evidence", []):
            key = str(evidence.get("chunk_id") or evidence.get("text", ""))
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                chunk, text = esc(evidence.get("chunk_id", "")), esc(evidence.get("text", ""))
                passages.append(f"<li>{chunk}<pre>{text}</pre></li>")
            cited.append(f"[{numbers[key]}] {_score(evidence.get('score'))}")
        verdict, css = ("supported", "wb-ok") if claim["supported"] else ("likely unsupported", "wb-bad")
        refs = f' <span class="wb-refs" title="{EVIDENCE_TIP}">evidence {", ".join(cited)}</span>' if cited else ""
        closest = next((e.get("sentence") for e in claim.get("evidence", []) if e.get("sentence")), None)
        quote = f'<div class="wb-quote">closest: “{esc(closest)}”</div>' if closest else ""
        items.append(
            f"<li>{_claim_span(claim, number, claim['text'])} "
            f'<span class="{css}">{verdict}, score {claim["score"]:.2f}</span>{refs}{quote}</li>'
        )
    listed = (
        f'<details class="wb-evidence"><summary>Evidence passages ({len(passages)})</summary>'
        f"<ol>{''.join(passages)}</ol></details>"
    )
    return (
        f'<details class="wb-claims"><summary>Claims: {flagged} of {len(claims)} likely unsupported</summary>'
        f"<ol>{''.join(items)}</ol>{listed if passages else ''}</details>"
    )


def _sources(column: Column) -> str:
    """The chunks the column was shown, by retrieval rank (the fused score itself means nothing to a reader)."""
    count = len(column.sources)
    items = "".join(
        f'<li><span class="wb-rank">{_ordinal(rank)} of {count} retrieved</span> <b>{esc(s.title)}</b> '
        f'<span class="wb-rank">{esc(s.chunk_id)}</span><pre>{esc(s.text)}</pre></li>'
        for rank, s in enumerate(column.sources, 1)
    )
    return f'<details class="wb-sources"><summary>Sources shown ({count})</summary><ul>{items}</ul></details>'


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def legend_html() -> str:
    """What the marks on the answers mean: one legend above the columns, the same verdict the claim lists give."""
    return (
        '<div class="wb-legend"><span class="wb-claim wb-flag">Red</span>: a claim '
        "likely unsupported by the sources or the corpus; unmarked text is supported or states nothing checkable. "
        "Hover a claim for its score; open <i>Claims</i> for the evidence sentence each one was checked against.</div>"
    )


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
    """`workbench.report.summary.variant_summary` as a table: a row per variant, automatic flags and judges last."""
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
