"""Labels for answers a model really gave: hallucinated or right, by a rule against the QA pair's reference.

This is how the detector is measured on real answers (bench/hallucination.py), next to the constructed set of
`labelled.py`. The rule, stated in the README:
- a question the sources cannot answer (QA type `unanswerable`, or an abstention as reference): an abstention is
  right (0); any other answer asserts what the sources do not hold and is hallucinated (1);
- an answerable question: an empty answer or an abstention asserts nothing, so it is left out (None); otherwise
  the reference's key facts (numbers, dates, names, codes, links the question does not already state) decide:
  all present in the answer is right, none present is hallucinated. A reference without such facts is judged by
  its content words the question does not already hold: at least RIGHT_WORDS of them present is right, at most
  WRONG_WORDS hallucinated. Anything in between is left out.
Rows are split by question, by a seeded shuffle, into a `fit` half (where the detector's weights and answer
aggregation are chosen) and an `evaluation` half (where they are reported).
"""

from __future__ import annotations

import random

from workbench.judge.facts import Coverage, extract_facts
from workbench.judge.reference import is_abstention, is_unanswerable
from workbench.text_metrics import content_words

RIGHT_WORDS, WRONG_WORDS = 0.6, 0.2
"""For a reference without checkable facts: the share of its content words an answer must hold to be right, and
at most may hold to be hallucinated."""


def label_answer(answer: str, question: str, reference: str, unanswerable: bool) -> int | None:
    """1 = hallucinated, 0 = right, None = left out (the module's rule)."""
    abstains = is_abstention(answer, question)
    if unanswerable:
        return 0 if abstains else 1
    if abstains or not answer.strip():
        return None
    facts = extract_facts(reference, question)
    if facts:
        stated = Coverage.of(answer)
        present = sum(stated.states(fact) for fact in facts)
        return 0 if present == len(facts) else 1 if present == 0 else None
    words = content_words(reference) - content_words(question)
    if not words:
        return None
    share = len(words & content_words(answer)) / len(words)
    return 0 if share >= RIGHT_WORDS else 1 if share <= WRONG_WORDS else None


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
