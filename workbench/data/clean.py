"""Text cleaning: Unicode normalisation, mojibake repair, and removal of boilerplate lines shared by many documents."""

from __future__ import annotations

import re
from collections import Counter

import ftfy

_SPACES = re.compile(r"[ \t\u00a0]+")
_FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, normalization="NFC")
_BLANK_RUNS = re.compile(r"\n{3,}")


def repair_text(text: str) -> tuple[str, bool]:
    """Repair mojibake and normalise to NFC with tidy whitespace; also says whether mojibake was found."""
    lines, had_mojibake = [], False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        fixed = ftfy.fix_and_explain(line, _FTFY)  # line by line, as ftfy.fix_text does; also normalises to NFC
        had_mojibake |= any(step[0] == "decode" for step in fixed.explanation or ())
        lines.append(_SPACES.sub(" ", fixed.text).strip())
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip(), had_mojibake


def _line_key(line: str) -> str:
    return " ".join(line.casefold().split())


def _may_be_boilerplate(line: str) -> bool:
    """Headings and purely structural lines (table rules, separators) repeat by design and are never boilerplate."""
    return not line.startswith("#") and any(ch.isalnum() for ch in line)


def find_boilerplate(texts: list[str], min_docs: int, min_fraction: float) -> dict[str, int]:
    """Lines repeated across many documents: normalised line -> number of documents it appears in."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({_line_key(line) for line in text.split("\n") if _may_be_boilerplate(line)})
    needed = max(min_docs, min_fraction * len(texts))
    return {line: n for line, n in counts.most_common() if n >= needed}


def strip_lines(text: str, lines: dict[str, int] | set[str]) -> tuple[str, int]:
    """Remove the given (normalised) lines from a text; returns the new text and how many lines went."""
    kept, removed = [], 0
    for line in text.split("\n"):
        if line.strip() and _line_key(line) in lines:
            removed += 1
        else:
            kept.append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip(), removed
