"""Pairwise judging with position swapping: the judge sees each pair in both orders, so position bias shows.

Judge models often prefer whichever answer comes first (or second). Asking (a, b) and then (b, a) and keeping
the verdict only when both orders agree turns that bias into a tie instead of a false win.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from workbench.data.loaders import BadInputError
from workbench.judge.llm import PAIR_FIELDS, JudgeModel, Rubric, ask, item_values, json_values, missing_inputs

VERDICTS = ("a", "b", "tie")

_LABEL = r"(?:answer\s+|assistant\s+)?([AB]|tie)\b"
_VERDICT_PATTERNS = (  # strongest evidence first; the first pattern that matches decides
    re.compile(r"\[\[\s*([ABC]|tie)\s*\]\]", re.IGNORECASE),
    re.compile(rf"\b(?:verdict|winner|better(?:\s+answer)?|choice)\b\s*(?:is|:|=)\s*\**\s*{_LABEL}", re.IGNORECASE),
    re.compile(r"\banswer\s+([AB])\s+is\s+better\b", re.IGNORECASE),
    re.compile(r"^\W*([AB]|tie)\W*$", re.IGNORECASE),
)


def parse_verdict(output: str) -> tuple[str | None, str | None]:
    """("A" | "B" | "tie", None) from a judge's reply, or (None, why not).

    Read in order of strength: JSON with `verdict`/`winner`, `[[A]]` (`[[C]]` is a tie, as in MT-bench),
    "Verdict: A", "Answer A is better", a reply that is only the label. Conflicting labels are a failure.
    """
    if not output.strip():
        return None, "the judge returned an empty reply"
    for value in json_values(output, ("verdict", "winner", "better")):
        if isinstance(value, str) and _label(value):
            return _label(value), None
    for pattern in _VERDICT_PATTERNS:
        labels = {_label(m) for m in pattern.findall(output)}
        if len(labels) > 1:
            return None, f"ambiguous: the reply names several verdicts ({', '.join(sorted(labels))})"
        if labels:
            return labels.pop(), None
    return None, "no verdict (A, B or tie) found in the judge's reply"


def _label(text: str) -> str | None:
    text = text.strip().lower().removeprefix("answer").strip()
    return {"a": "A", "b": "B", "c": "tie", "tie": "tie"}.get(text)


@dataclass(frozen=True)
class PairVerdict:
    """The comparison of answers a and b: `first` from the order (a, b), `second` from (b, a), both mapped back to
    a/b/tie; `winner` is their shared verdict, a tie when they disagree, None (with `reason`) when one failed."""

    winner: str | None
    first: str | None
    second: str | None
    agree: bool | None
    reason: str | None
    outputs: tuple[str, str]

    def to_dict(self) -> dict:
        return asdict(self)


def combine(first: str | None, second: str | None) -> tuple[str | None, bool | None]:
    """(winner, agree) from the two orders' verdicts, already in a/b/tie terms."""
    if first is None or second is None:
        return None, None
    return (first, True) if first == second else ("tie", False)


@dataclass
class PairwiseJudge:
    """A `pairwise` rubric run by a judge model over pairs (`question`, `answer_a`, `answer_b`, ...)."""

    rubric: Rubric
    model: JudgeModel

    def __post_init__(self):
        if self.rubric.kind != "pairwise":
            raise BadInputError(
                f"rubric {self.rubric.name} is a {self.rubric.kind} rubric; PairwiseJudge needs pairwise"
            )

    def compare_many(self, pairs: list[dict]) -> list[PairVerdict]:
        """One verdict per pair, in order; both orders of every pair go to the model together."""
        results: list[PairVerdict | None] = [None] * len(pairs)
        pending, conversations = [], []
        for i, pair in enumerate(pairs):
            values = item_values(pair, PAIR_FIELDS)
            missing = missing_inputs(self.rubric, values)
            if missing:
                results[i] = PairVerdict(None, None, None, None, missing, ("", ""))
                continue
            swapped = values | {"answer_a": values["answer_b"], "answer_b": values["answer_a"]}
            pending.append(i)
            conversations += [self.rubric.messages(values), self.rubric.messages(swapped)]
        replies = ask(self.model, conversations)
        for n, i in enumerate(pending):
            results[i] = _verdict(replies[2 * n], replies[2 * n + 1])
        return results


def _verdict(reply_1: str | OSError, reply_2: str | OSError) -> PairVerdict:
    reasons, verdicts = [], []
    for order, reply, swap in (("(a, b)", reply_1, False), ("(b, a)", reply_2, True)):
        if isinstance(reply, OSError):
            label, why = None, f"judge model failed: {reply}"
        else:
            label, why = parse_verdict(reply)
        if label is None:
            reasons.append(f"order {order}: {why}")
        verdicts.append({"A": "b", "B": "a"}.get(label, label) if swap else {"A": "a", "B": "b"}.get(label, label))
    winner, agree = combine(*verdicts)
    outputs = tuple(r if isinstance(r, str) else "" for r in (reply_1, reply_2))
    return PairVerdict(winner, verdicts[0], verdicts[1], agree, "; ".join(reasons) or None, outputs)
