"""The automatic checks of answers: reference judges, LLM judges and the hallucination detector, in one place.

The arena (after each turn) and eval (over a split) score answers with the same `Scorer`, so a judge's number
means the same thing wherever it was produced and the report can read both alike. Reference judges run only on
answers whose question has a reference answer; the detector checks an answer's claims against the sources it
was shown, or, for a closed-book answer, against the run's index (when the detector has one); an empty or
failed answer is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.judge.registry import REFERENCE_JUDGES, Judgement, run_judges


@dataclass
class ScoreItem:
    """One answer to score, with what its checks need."""

    question: str
    text: str
    reference: str | None = None  # the QA pair's reference answer, when the question has one
    type: str | None = None  # the QA pair's question type (`unanswerable` questions expect an abstention)
    sources: list | None = None  # `judge.hallucination.Passage`s the answer was shown, None for a closed-book one
    error: str | None = None


@dataclass
class Scores:
    """An answer's judgements and, when the detector ran, its claims (`ClaimCheck.to_dict()` each)."""

    judgements: list[Judgement] = field(default_factory=list)
    claims: list[dict] | None = None

    def claim_rows(self) -> list[dict]:
        """The claims as `Store.add_claims` takes them."""
        return [
            {"claim": c["text"], "score": c["score"], "supported": c["supported"], "evidence": c["evidence"]}
            for c in self.claims or []
        ]


class Scorer:
    """Scores answers with the reference judges (`reference`: their names, default all), any `llm` judges
    (`LLMJudge`s, run on every answer, each recording why when an item lacks what its rubric needs) and the
    `detector` (None: no claims)."""

    def __init__(self, detector=None, reference: list[str] | None = None, llm: list | None = None):
        self.detector = detector
        self.reference = list(REFERENCE_JUDGES) if reference is None else list(reference)
        self.llm = list(llm or [])

    @property
    def judge_names(self) -> list[str]:
        return self.reference + [judge.name for judge in self.llm]

    def score(self, items: list[ScoreItem]) -> list[Scores]:
        """One `Scores` per item, in order; the detector and each LLM judge see all items in one batch."""
        results = [Scores() for _ in items]
        judges = self._reference_judges([item for item in items if item.reference is not None])
        for item, scores in zip(items, results):
            if item.reference is not None and self.reference:
                record = {"question": item.question, "text": item.text, "reference": item.reference, "type": item.type}
                scores.judgements += run_judges(record, self.reference, judges)
        if self.llm:
            records = [
                {
                    "question": item.question,
                    "text": item.text,
                    "reference": item.reference,
                    "context": [p.text for p in item.sources] if item.sources else None,
                }
                for item in items
            ]
            for judge in self.llm:
                for scores, judgement in zip(results, judge.judge_many(records)):
                    scores.judgements.append(judgement)
        if self.detector is not None:
            self._detect(items, results)
        return results

    def _reference_judges(self, items: list[ScoreItem]) -> dict:
        """The reference judges, the embedding judge with the batch's cosines computed at once."""
        if "embedding" not in self.reference or not items:
            return REFERENCE_JUDGES
        from workbench.judge.reference import embedding_cosines, embedding_judge

        pairs = [(item.text, item.reference.strip()) for item in items if item.reference.strip()]
        return REFERENCE_JUDGES | {"embedding": embedding_judge(cosines=embedding_cosines(pairs))}

    def _detect(self, items: list[ScoreItem], results: list[Scores]) -> None:
        from workbench.judge.hallucination import Item

        checked = [
            i
            for i, item in enumerate(items)
            if item.text and not item.error and (item.sources or getattr(self.detector, "retriever", None) is not None)
        ]
        if not checked:
            return
        checks = self.detector.check(
            [Item(items[i].question, items[i].text, items[i].sources or None) for i in checked]
        )
        for i, check in zip(checked, checks):
            results[i].claims = [c.to_dict() for c in check.claims]


def configured_detector(config, retriever) -> tuple[object | None, str | None]:
    """The configured hallucination detector over `retriever`'s index, or None and why (then no claims)."""
    from workbench.data.loaders import BadInputError
    from workbench.models import ModelNotAvailable

    try:
        from workbench.judge.hallucination import make_detector
    except ImportError as exc:
        return None, f"no hallucination detector in this build ({exc})"
    try:
        return make_detector(config, retriever), None
    except (BadInputError, ModelNotAvailable, OSError) as exc:
        return None, f"hallucination detector unavailable: {exc}"
