"""Judges that compare an answer with its QA pair's reference answer, abstention-aware.

Token overlap (F1, exact match, containment), ROUGE-L through the local `evaluate` module, embedding cosine, and
key-fact recall: the share of the reference's checkable facts (numbers with units, dates, money, percentages,
product codes, names) that the answer states, after number formats are made comparable (`1,200` = `1200`,
`30-day` = `30 days`, `€85,000` = `85000 euros`, `two` = `2`). Facts the question already states are not counted:
repeating them proves nothing.

Unanswerable questions (QA type `unanswerable`, or a reference that is itself an abstention) have no facts to
match: there every judge scores 1 when the answer abstains and 0 when it asserts an answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from workbench.judge.facts import Coverage, clean, extract_facts
from workbench.judge.registry import Judgement, register_reference_judge
from workbench.text_metrics import exact_match, normalize, token_f1

DEFAULT_EMBEDDER = "all-minilm-l6-v2"


@dataclass(frozen=True)
class FactRecall:
    """Which of the reference's facts the answer states; `recall` is None when the reference has none."""

    recall: float | None
    found: list[str]
    missing: list[str]


def key_fact_recall(answer: str, reference: str, question: str | None = None) -> FactRecall:
    facts = extract_facts(reference, question)
    stated = Coverage.of(answer)
    found = [f.text for f in facts if stated.states(f)]
    missing = [f.text for f in facts if not stated.states(f)]
    return FactRecall(len(found) / len(facts) if facts else None, found, missing)


# -- abstention ------------------------------------------------------------------------------------------------------

_SOURCES = (
    r"(?:sources?|documentation|documents?|docs|context|text|passages?|excerpts?|information|manuals?|materials?|"
    r"data|records?|knowledge base|corpus|snippets?)"
)
_ABSTAIN = re.compile(
    "|".join(
        (
            (
                rf"\b{_SOURCES}\s+(?:\w+\s+){{0,3}}?(?:does|do|did)(?:\s+not|n't)\s+(?:\w+\s+)?"
                r"(?:say|mention|specify|state|contain|include|provide|cover|give|list|describe|discuss|have|tell|"
                r"indicate|answer|address)"
            ),
            r"\bnot\s+(?:\w+\s+)?(?:mentioned|specified|stated|documented|described|addressed)\b",
            rf"\bnot\s+(?:in|within|part of|covered by|found in)\s+(?:the\s+)?(?:provided\s+|given\s+)?{_SOURCES}",
            r"\bno\s+(?:information|mention|details?|data|record|indication)\b",
            (
                r"\b(?:i|we)\s+(?:do\s+not|don't|cannot|can't|could\s+not|couldn't|am\s+unable\s+to|'m\s+unable\s+to)"
                r"\s+(?:\w+\s+)?(?:know|find|say|tell|answer|determine|confirm|verify)\b"
            ),
            r"\bi\s*(?:'m|am)\s+(?:not\s+(?:sure|certain|aware)|unable\s+to|afraid)\b",
            (
                r"\b(?:i|we)\s+(?:do\s+not|don't)\s+have\s+(?:any\s+|enough\s+|the\s+)?(?:information|data|details|"
                r"access|knowledge|that)\b"
            ),
            r"\b(?:i|we)\s+have\s+no\s+(?:information|data|details|knowledge)\b",
            r"\bunable\s+to\s+(?:find|determine|answer|say|confirm|locate)\b",
            r"\b(?:cannot|can't|could\s+not|couldn't)\s+be\s+(?:determined|found|answered|confirmed)\b",
            r"\b(?:is|are)\s+not\s+known\b",
        )
    ),
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"(?<=[.!?;])\s+|\n+|,?\s+\b(?:but|however|although|though|yet)\b,?\s+", re.IGNORECASE)


def is_abstention(text: str, question: str | None = None) -> bool:
    """Whether `text` declines to answer and asserts nothing checkable.

    An abstention phrase ("I don't know", "the sources do not say", "not mentioned", ...) must be present, and no
    other clause may state a fact the question does not already give: "I don't know the exact date, but it was
    2011" asserts a year and is no abstention; "The documentation does not say what the S3 Pro bracket costs" is.
    """
    clauses = [c for c in _CLAUSES.split(clean(text)) if c and c.strip()]
    abstaining = [bool(_ABSTAIN.search(c)) for c in clauses]
    if not any(abstaining):
        return False
    return not any(extract_facts(c, question) for c, abstains in zip(clauses, abstaining) if not abstains)


def is_unanswerable(item: dict) -> bool:
    """A question the sources cannot answer: QA type `unanswerable`, or a reference that is an abstention."""
    reference = item.get("reference") or ""
    return item.get("type") == "unanswerable" or bool(reference.strip() and is_abstention(reference))


# -- the other measures ---------------------------------------------------------------------------------------------


def contains(answer: str, reference: str) -> bool:
    """Whether the normalised reference occurs, as whole tokens, inside the normalised answer."""
    expected = " ".join(normalize(reference))
    return bool(expected) and f" {expected} " in f" {' '.join(normalize(answer))} "


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure, through the repository's offline `evaluate` module."""
    from workbench.metrics import load_metric

    scores = load_metric("rouge").compute(predictions=[answer], references=[reference], rouge_types=["rougeL"])
    return float(scores["rougeL"])


def embedding_cosine(answer: str, reference: str, embedder: str = DEFAULT_EMBEDDER) -> float:
    """Cosine of the two texts' sentence embeddings (-1..1)."""
    from workbench.models import load_embedder
    from workbench.retrieval.embedding import embed

    vectors = embed(load_embedder(embedder), [answer, reference])
    return float(vectors[0] @ vectors[1])


# -- the judges ------------------------------------------------------------------------------------------------------

Measure = Callable[[str, str, dict], tuple[float | None, str | None, dict]]
"""(answer, reference, item) -> (score, reason when None, details)."""


def reference_judge(name: str, measure: Measure) -> Callable[[dict], Judgement]:
    """Wrap a measure as a judge: unanswerable questions score the abstention; a missing reference fails."""

    def judge(item: dict) -> Judgement:
        if is_unanswerable(item):
            abstained = is_abstention(item["text"], item.get("question"))
            reason = "unanswerable question: the answer " + ("abstains" if abstained else "asserts an answer")
            return Judgement(name, float(abstained), reason, {"unanswerable": True, "abstained": abstained})
        reference = (item.get("reference") or "").strip()
        if not reference:
            return Judgement(name, None, "no reference answer for this question")
        score, reason, details = measure(item["text"], reference, item)
        return Judgement(name, score, reason, details)

    judge.__name__ = name
    return judge


def _facts(answer: str, reference: str, item: dict) -> tuple[float | None, str | None, dict]:
    result = key_fact_recall(answer, reference, item.get("question"))
    reason = None if result.recall is not None else "the reference states no checkable facts beyond the question"
    return result.recall, reason, {"found": result.found, "missing": result.missing}


def embedding_cosines(pairs: list[tuple[str, str]], embedder: str = DEFAULT_EMBEDDER) -> dict[tuple[str, str], float]:
    """`embedding_cosine` of many (answer, reference) pairs, each distinct text embedded once, in one batch: the
    four variants of a question share its reference."""
    from workbench.models import load_embedder
    from workbench.retrieval.embedding import embed

    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    vectors = dict(zip(texts, embed(load_embedder(embedder), texts)))
    return {(answer, reference): float(vectors[answer] @ vectors[reference]) for answer, reference in pairs}


def embedding_judge(
    embedder: str = DEFAULT_EMBEDDER, cosines: dict[tuple[str, str], float] | None = None
) -> Callable[[dict], Judgement]:
    """The embedding-similarity judge for an embedder spec; the score is the cosine floored at 0. `cosines` holds
    ones already computed (see `embedding_cosines`), keyed by (answer, stripped reference)."""

    def measure(answer: str, reference: str, item: dict) -> tuple[float, None, dict]:
        known = (cosines or {}).get((answer, reference))
        cosine = known if known is not None else embedding_cosine(answer, reference, embedder)
        return min(max(cosine, 0.0), 1.0), None, {"cosine": cosine, "embedder": embedder}

    return reference_judge("embedding", measure)


def _register(name: str, measure: Measure) -> None:
    register_reference_judge(name, reference_judge(name, measure))


_register("token_f1", lambda answer, reference, _: (token_f1(answer, reference), None, {}))
_register("exact_match", lambda answer, reference, _: (float(exact_match(answer, reference)), None, {}))
_register("contains", lambda answer, reference, _: (float(contains(answer, reference)), None, {}))
_register("rouge_l", lambda answer, reference, _: (rouge_l(answer, reference), None, {}))
_register("key_facts", _facts)
register_reference_judge("embedding", embedding_judge())
