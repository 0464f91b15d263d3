"""Labels for answers a model really gave: hallucinated or right, by a rule against the QA pair's reference.

This is how the detector is measured on real answers (bench/hallucination.py), next to the constructed set of
`labelled.py`. The rule, stated in the README:
- an answer that asserts nothing (empty, or only questions and words the question already holds, such as an echo
  of it) cannot hallucinate and is left out (None);
- a question the sources cannot answer (QA type `unanswerable`, or an abstention as reference): an abstention is
  right (0); any other answer asserts what the sources do not hold and is hallucinated (1);
- an answerable question: an abstention is left out; otherwise the reference's key facts (numbers, dates, names,
  codes, links the question does not already state) decide: one of them given another value (another quantity of
  the same unit, date or time, even beside the right one: "0.5 to 1.2 °C" for "0.5 °C") is hallucinated; all
  present is right; none present is hallucinated. A reference without such facts is judged by its content words
  the question does not already hold: at least RIGHT_WORDS of them present is right, at most WRONG_WORDS
  hallucinated. Anything in between is left out.
Rows are split by question, by a seeded shuffle, into a `fit` half (where the detector's weights and answer
aggregation are chosen) and an `evaluation` half (where they are reported).
"""

from __future__ import annotations

import random

from workbench.judge.claims import split_sentences
from workbench.judge.facts import Coverage, contradicts, extract_facts, facts_agree
from workbench.judge.reference import is_abstention, is_unanswerable
from workbench.text_metrics import content_words

RIGHT_WORDS, WRONG_WORDS = 0.6, 0.2
"""For a reference without checkable facts: the share of its content words an answer must hold to be right, and
at most may hold to be hallucinated."""


def label_answer(answer: str, question: str, reference: str, unanswerable: bool) -> int | None:
    """1 = hallucinated, 0 = right, None = left out (the module's rule)."""
    abstains = is_abstention(answer, question)
    if unanswerable and abstains:
        return 0
    if abstains or not asserts(answer, question):
        return None
    if unanswerable:
        return 1
    facts = extract_facts(reference, question)
    if facts:
        if contradicts_reference(answer, question, reference, facts):
            return 1
        stated = Coverage.of(answer)
        present = sum(stated.states(fact) for fact in facts)
        return 0 if present == len(facts) else 1 if present == 0 else None
    words = content_words(reference) - content_words(question)
    if not words:
        return None
    share = len(words & content_words(answer)) / len(words)
    return 0 if share >= RIGHT_WORDS else 1 if share <= WRONG_WORDS else None


def asserts(answer: str, question: str) -> bool:
    """Whether some sentence of the answer, not itself a question, holds a content word the question does not."""
    asked = content_words(question)
    return any(not s.rstrip().endswith("?") and content_words(s) - asked for s in split_sentences(answer))


def contradicts_reference(answer: str, question: str, reference: str, facts: list) -> bool:
    """Whether the answer gives one of the reference's key `facts` another value: a fact of its own (agreeing with
    nothing in the reference or the question) of the same kind and unit."""
    given = extract_facts(reference) + extract_facts(question)
    own = [f for f in extract_facts(answer) if not any(facts_agree(f, g) or facts_agree(g, f) for g in given)]
    return any(contradicts(f, key) for f in own for key in facts)


def real_answer_set(answers: list[dict], questions: dict[str, dict], seed: int = 13) -> list[dict]:
    """The labelled rows of `answers` (`{id, variant, qa_id, text, chunk_ids}`, as `Store.answers` gives them),
    `questions` being `{qa_id: {question, answer, type}}`: each answer with `question`, `reference`, `label` and
    `half` added; answers left out by the rule, or whose question is unknown, are not returned."""
    ids = sorted({a["qa_id"] for a in answers if a["qa_id"] in questions})
    random.Random(seed).shuffle(ids)
    half = {qa_id: "fit" if i < len(ids) // 2 else "evaluation" for i, qa_id in enumerate(ids)}
    rows = []
    for answer in answers:
        qa = questions.get(answer["qa_id"])
        if qa is None:
            continue
        unanswerable = is_unanswerable({"type": qa.get("type"), "reference": qa["answer"]})
        label = label_answer(answer["text"], qa["question"], qa["answer"], unanswerable)
        if label is not None:
            rows.append(
                answer
                | {"question": qa["question"], "reference": qa["answer"], "label": label, "half": half[answer["qa_id"]]}
            )
    return rows
