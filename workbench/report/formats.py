"""How a figure is written wherever the report puts it in words: the decision's sentences and the rendered tables."""

from __future__ import annotations


def number(x: float | None, digits: int = 3) -> str:
    """`x` with `digits` decimals, "-" for a missing figure."""
    return "-" if x is None else f"{x:.{digits}f}"


def plural(count: int, word: str) -> str:
    """ "1 vote", "6 votes"."""
    return f"{count} {word}" + ("" if count == 1 else "s")
