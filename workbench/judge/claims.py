"""Claims: what a hallucination detector checks one by one in an answer, and how their scores make the answer's.

An answer is split into sentences, and a sentence into clauses joined by ";" or "and" when each clause carries its own
checkable fact (`facts.extract_facts`), so one wrong figure flags its own clause rather than a whole paragraph.
"""

from __future__ import annotations

import re

import numpy as np

from workbench.judge.facts import extract_facts

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9€$£])|\n+")
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|etc|approx|incl|no|vs|dr|mr|mrs|ms|st|fig|cf)\.$", re.IGNORECASE)
_INITIAL = re.compile(r"(?:^|[\s.])[A-Z]\.$")
"""A capital letter and a full stop ends a name's initial ("John R. Smith", "U.S."), not a sentence."""
_CITATIONS = re.compile(r"(?:[\[(]\d+(?:\s*[,-]\s*\d+)*[\])]\s*)+\.?")
"""Source markers ("[2]", "[1][3]") that open a piece trail the sentence before it and belong to that sentence."""
_ENDED = re.compile(r"[.!?](?:\s*[\[(]\d+(?:\s*[,-]\s*\d+)*[\])])*$")
"""A claim that ends a sentence: its stop, and any source markers after it."""
CLAUSE_JOIN = re.compile(r"\s*;\s*|,?\s+(?:and|while|whereas|but)\s+", re.IGNORECASE)


def split_claims(answer: str) -> list[str]:
    """The answer's claims: its sentences, each split further at ";" / "and" where every part states a fact."""
    claims = []
    for sentence in split_sentences(answer):
        claims.extend(_split_clauses(sentence))
    return claims


def split_sentences(text: str) -> list[str]:
    """Sentences and list items; a full stop after an abbreviation, an initial or inside a number does not end a
    sentence, and source markers after a sentence stay with it."""
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", text, flags=re.MULTILINE)  # list markers
    pieces, current = [], ""
    last = 0
    for match in _SENTENCE_END.finditer(text):
        current += text[last : match.start()]
        last = match.end()
        if _ABBREVIATIONS.search(current) or _INITIAL.search(current):
            current += " "
            continue
        pieces.append(current)
        current = ""
    pieces.append(current + text[last:])
    sentences = []
    for piece in (" ".join(p.split()) for p in pieces if re.search(r"\w", p)):
        markers = _CITATIONS.match(piece)  # markers that trail a sentence are part of it, never a claim
        if markers and sentences:
            sentences[-1] += " " + markers.group().strip()
        piece = piece[markers.end() :] if markers else piece
        if piece.strip():
            sentences.append(piece)
    return sentences


def _split_clauses(sentence: str) -> list[str]:
    """Split at a joint only when both sides keep a fact of their own and a few words, else keep them together."""
    clauses, start = [], 0
    for joint in CLAUSE_JOIN.finditer(sentence):
        left, right = sentence[start : joint.start()], sentence[joint.end() :]
        following = CLAUSE_JOIN.split(right, maxsplit=1)[0]
        if _states_fact(left) and _states_fact(following):
            clauses.append(left)
            start = joint.end()
    clauses.append(sentence[start:])
    return [c.strip() if _ENDED.search(c.rstrip()) else c.strip() + "." for c in clauses]


def _states_fact(clause: str) -> bool:
    return len(clause.split()) >= 4 and bool(extract_facts(clause))


AGGREGATIONS = ("mean", "max", "noisy_or")


def aggregate(scores: list[float], how: str) -> float:
    """An answer's score from its claims': how much of it is unsupported (`mean`), its worst claim (`max`), or the
    chance that any claim is unsupported (`noisy_or`)."""
    if not scores:
        return 0.0
    if how == "mean":
        return float(np.mean(scores))
    if how == "max":
        return max(scores)
    return 1.0 - float(np.prod([1.0 - s for s in scores]))
