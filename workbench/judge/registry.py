"""What every judge returns, and the name -> judge registry that lets a caller run "all reference judges".

A judge that cannot score an answer says why (`score` None plus `reason`) instead of inventing a number, so the
store and the report can tell "scored low" from "could not score". Store a judgement with
`Store.add_judgement(answer_id, j.judge, j.score, j.reason, j.details)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from workbench.data.loaders import BadInputError


@dataclass(frozen=True)
class Judgement:
    """One judge's verdict on one answer: `score` in 0..1 (higher is better), or None with the `reason`."""

    judge: str
    score: float | None
    reason: str | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.score is None and not self.reason:
            raise ValueError(f"judge {self.judge}: a judgement without a score needs the reason it failed")
        if self.score is not None and not 0 <= self.score <= 1:
            raise ValueError(f"judge {self.judge}: score {self.score!r} is outside 0..1")

    def to_dict(self) -> dict:
        return asdict(self)


Judge = Callable[[dict], Judgement]
"""A judge of one answer item: `question`, `text` (the answer), and the QA pair's `reference` and `type`."""

REFERENCE_JUDGES: dict[str, Judge] = {}
"""Judges that compare an answer with its reference answer; filled by `workbench.judge.reference`."""


def register_reference_judge(name: str, judge: Judge) -> Judge:
    if name in REFERENCE_JUDGES:
        raise ValueError(f"reference judge {name!r} is already registered")
    REFERENCE_JUDGES[name] = judge
    return judge


def run_judges(
    item: dict, names: list[str] | None = None, judges: Mapping[str, Judge] | None = None
) -> list[Judgement]:
    """Every named judge's judgement of `item` (default: all reference judges), in order.

    A judge that raises is recorded as failed, with the error as its reason, so one broken judge (say, a missing
    embedder) never hides the others' scores.
    """
    judges = REFERENCE_JUDGES if judges is None else judges
    names = list(judges) if names is None else names
    unknown = [n for n in names if n not in judges]
    if unknown:
        raise BadInputError(f"unknown judge(s) {', '.join(unknown)}; known: {', '.join(judges)}")
    for key in ("question", "text"):
        if not isinstance(item.get(key), str):
            raise BadInputError(f"answer item: {key!r} must be a text, got {item.get(key)!r}")
    results = []
    for name in names:
        try:
            results.append(judges[name](item))
        except Exception as exc:  # noqa: BLE001 - recorded as this judge's failure, see docstring
            results.append(Judgement(name, None, f"judge failed: {type(exc).__name__}: {exc}"))
    return results
