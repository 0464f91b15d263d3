"""Judges of answers: reference metrics, rubric-driven LLM judges and pairwise comparison.

How far they agree with people is the report's to measure (`workbench.report.agreement`).

Every judge returns a `Judgement` (score 0..1, or None with the reason); see `registry` for running all reference
judges on an answer item (`question`, `text`, and the QA pair's `reference` and `type`).
"""

from workbench.judge.facts import Fact, extract_facts
from workbench.judge.llm import (
    JudgeModel,
    LLMJudge,
    LocalJudgeModel,
    RemoteJudgeModel,
    Rubric,
    load_rubric,
    parse_score,
    rubric_names,
)
from workbench.judge.pairwise import PairVerdict, PairwiseJudge, parse_verdict
from workbench.judge.reference import (
    DEFAULT_EMBEDDER,
    FactRecall,
    contains,
    embedding_cosine,
    embedding_judge,
    is_abstention,
    is_unanswerable,
    key_fact_recall,
    rouge_l,
)
from workbench.judge.registry import REFERENCE_JUDGES, Judgement, register_reference_judge, run_judges

__all__ = [
    "DEFAULT_EMBEDDER",
    "REFERENCE_JUDGES",
    "Fact",
    "FactRecall",
    "JudgeModel",
    "Judgement",
    "LLMJudge",
    "LocalJudgeModel",
    "PairVerdict",
    "PairwiseJudge",
    "RemoteJudgeModel",
    "Rubric",
    "contains",
    "embedding_cosine",
    "embedding_judge",
    "extract_facts",
    "is_abstention",
    "is_unanswerable",
    "key_fact_recall",
    "load_rubric",
    "parse_score",
    "parse_verdict",
    "register_reference_judge",
    "rouge_l",
    "rubric_names",
    "run_judges",
]
