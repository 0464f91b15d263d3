"""Run a split's questions through every chosen variant, score each answer and store it, resumably.

An eval is keyed by its id; each stored answer by (eval id, QA id, variant), stored with its judgements and
claims in one transaction, so a run stopped at any point (Ctrl-C, a crash) keeps every finished answer and none
of a half-scored one, and running the same eval again answers only what is missing. The default eval id is
derived from everything that shapes the answers (config, questions, judges, model, adapters, index, variants),
so rerunning the same command resumes it and a changed setup starts a new eval; an explicit `--eval-id` whose
setup changed is refused, naming what changed.

Local variants answer in one batch (`Engine.answers`: many questions' rows per decoding step, each answer the
one the arena gives alone); remote variants run on threads beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from workbench.config import Config
from workbench.data.loaders import BadInputError, load_qa
from workbench.records import read_split
from workbench.scoring import ScoreItem, Scorer, configured_detector
from workbench.variants import REMOTE_PREFIX, is_tuned, uses_retrieval
from workbench.workspace import machine, resolve_home, run_paths

NAMED_SPLITS = ("test", "val")
REMOTE_THREADS = 4
"""Requests in flight at once per eval to remote endpoints."""
SCORE_BATCH = 8
"""Answers scored together (the detector embeds their claims in one batch); each is still stored on its own."""


class EvalError(BadInputError):
    """An eval that cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class Question:
    """A held-out question with its reference answer and the documents that support it."""

    id: str
    question: str
    answer: str
    gold_doc_ids: tuple[str, ...] = ()
    type: str | None = None
    fields: dict = field(default_factory=dict, hash=False)
    """The QA file's own extra fields (`QAPair.fields`), for grouping results."""


@dataclass
class EvalPlan:
    """What an eval will do: its id, questions, variants, judges, the setup it is bound to, and what is missing."""

    eval_id: str
    run: str
    split: str
    variants: list[str]
    judges: list[str]
    questions: list[Question]
    setup: dict
    pending: list[tuple[Question, str]] = field(default_factory=list)


def load_questions(name: str, split: str, home: str | Path | None = None, limit: int | None = None) -> list[Question]:
    """The questions of a prepared split (`test`, `val`) or of a QA file (.jsonl / .csv), first `limit` only."""
    if split in NAMED_SPLITS:
        path = run_paths(name, home).split(split)
        if not path.is_file():
            raise EvalError(f"{path}: no {split} split; run `workbench prepare --name {name} ...` first")
        questions = [
            Question(e.id, e.question, e.answer, tuple(e.gold_doc_ids), e.type, dict(e.fields))
            for e in read_split(path)
            if e.is_question
        ]
        where = f"{path}"
    else:
        if not Path(split).suffix and not Path(split).exists():
            raise EvalError(f"--split {split}: use test, val or a QA file (.jsonl / .csv)")
        pairs, _ = load_qa(split)
        questions = [Question(p.id, p.question, p.answer, tuple(p.doc_ids), p.type, dict(p.fields)) for p in pairs]
        where = split
    if limit is not None:
        if limit < 1:
            raise EvalError(f"--limit {limit}: give a positive number of questions")
        questions = questions[:limit]
    if not questions:
        raise EvalError(
            f"{where}: no questions with a reference answer; prepare the run with `--qa FILE`, apply synthetic QA "
            "pairs (`workbench synth`; only accepted ones go to test), or pass a QA file with `--split FILE.jsonl`"
        )
    return questions


def build_scorer(config: Config, retriever, judges: list[str], judge_model: str = "local") -> Scorer:
    """The scorer for `judges`: `reference` (every reference judge), reference judge names, or LLM rubric names
    (`correctness`, ...; also as `llm:NAME`) run by `judge_model` (`local`, or `remote:NAME` of `chat.remotes`)."""
    from workbench.judge import REFERENCE_JUDGES, LLMJudge, LocalJudgeModel, RemoteJudgeModel, load_rubric, rubric_names

    reference, llm = [], []
    for name in judges:
        if name == "reference":
            reference += [j for j in REFERENCE_JUDGES if j not in reference]
        elif name in REFERENCE_JUDGES:
            reference.append(name)
        elif name.removeprefix("llm:") in rubric_names():
            llm.append(load_rubric(name.removeprefix("llm:")))
        else:
            known = ["reference", *REFERENCE_JUDGES, *rubric_names()]
            raise EvalError(f"--judges: unknown judge {name!r}; choose from {', '.join(known)}")
    pairwise = [r.name for r in llm if r.kind != "score"]
    if pairwise:
        raise EvalError(
            f"--judges: {', '.join(pairwise)} compares two answers, not one; eval scores each answer on its own"
        )
    model = None
    if llm:
        if judge_model == "local":
            model = LocalJudgeModel(config.model.base, device=config.model.device)
        elif judge_model.startswith(REMOTE_PREFIX) and judge_model[len(REMOTE_PREFIX) :] in config.chat.remotes:
            model = RemoteJudgeModel(config.chat.remotes[judge_model[len(REMOTE_PREFIX) :]])
        else:
            remotes = ", ".join(REMOTE_PREFIX + r for r in config.chat.remotes) or "none configured"
            raise EvalError(f"--judge-model {judge_model!r}: use local or remote:NAME ({remotes})")
    detector, problem = configured_detector(config, retriever)
    if problem:
        print(f"warning: claims are not checked: {problem}", file=sys.stderr)
    return Scorer(detector, reference, [LLMJudge(rubric, model) for rubric in llm])


def plan_eval(
    engine,
    store,
    config: Config,
    name: str,
    questions: list[Question],
    split: str,
    variants: list[str],
    scorer: Scorer,
    eval_id: str | None = None,
) -> EvalPlan:
    """The eval's id and setup, registered in the store, and the (question, variant) pairs still to answer."""
    setup = {
        "config_hash": _digest(
            {
                "config": answer_settings(config),
                "questions": [[q.id, q.question, q.answer, list(q.gold_doc_ids), q.type] for q in questions],
                "judges": scorer.judge_names,
                "judge_models": sorted({j.model.name for j in scorer.llm}),
                "detector": getattr(scorer.detector, "name", None),
                # the pairs `prompt` is shown (only then: the setups of other evals stay as they were)
                **(
                    {"prompt_examples": [config.chat.prompt_examples, engine.examples.id]}
                    if "prompt" in variants
                    else {}
                ),
            }
        ),
        "model_id": engine.model_id,
        "adapter_ids": {v: engine.adapter_ids.get(engine.adapter_of(v)) for v in variants if is_tuned(v)},
        "index_id": engine.index_id if any(uses_retrieval(v) for v in variants) else None,
    }
    split_label = split if split in NAMED_SPLITS else str(Path(split).resolve())
    eval_id = eval_id or _default_id(split, variants, setup)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", eval_id):
        raise EvalError(f"--eval-id {eval_id!r}: use letters, digits, '.', '_' and '-' (at most 80)")
    store.ensure_run(name)
    row = store.start_eval(
        eval_id,
        name,
        split_label,
        variants,
        scorer.judge_names,
        setup["config_hash"],
        config.model_dump(mode="json"),
        setup["model_id"],
        {v: a for v, a in setup["adapter_ids"].items() if a is not None},
        setup["index_id"],
        len(questions),
    )
    if row["run"] != name:
        raise EvalError(f"eval {eval_id} belongs to run {row['run']!r}, not {name!r}; choose another --eval-id")
    changed = [
        what
        for what, before, now in (
            ("split", row["split"], split_label),
            ("variants", row["variants"], variants),
            ("config, questions, judges or prompt examples", row["config_hash"], setup["config_hash"]),
            ("base model", row["model_id"], setup["model_id"]),
            ("adapter", row["adapter_ids"], {v: a for v, a in setup["adapter_ids"].items() if a is not None}),
            ("index", row["index_id"], setup["index_id"]),
        )
        if before != now
    ]
    if changed:
        raise EvalError(
            f"eval {eval_id} was started with another {', '.join(changed)}; its answers would not be comparable. "
            "Run without --eval-id (the default id follows the setup) or choose a new one"
        )
    done = store.eval_keys(eval_id)
    pending = [(q, v) for q in questions for v in variants if (q.id, v) not in done]
    return EvalPlan(eval_id, name, split_label, variants, scorer.judge_names, questions, setup, pending)


def answer_settings(config: Config) -> dict:
    """The parts of the config that shape an eval's answers and scores (model, decoding, retrieval, detector, system
    prompt); training settings only matter through the adapter, whose own id is part of the setup."""
    dump = config.model_dump(mode="json")
    del dump["chat"]["prompt_examples"]  # in the setup only when `prompt` answers (`plan_eval`)
    return {key: dump[key] for key in ("model", "chat", "index", "hallucination")} | {
        "system_prompt": config.finetune.system_prompt
    }


def run_eval(
    name: str,
    config: Config | None = None,
    home: str | Path | None = None,
    *,
    variants: list[str] | None = None,
    split: str = "test",
    limit: int | None = None,
    eval_id: str | None = None,
    judges: list[str] | None = None,
    judge_model: str = "local",
    workers: int | None = None,
    progress: bool = True,
    engine=None,
    store=None,
    stop=None,
) -> dict:
    """Answer, score and store every missing (question, variant) of the eval; returns `{eval_id, questions,
    variants, answered (this call), stored (in all), total, finished, stopped}`. Ctrl-C stops after the answers
    in progress are lost and the finished ones stored: the same call again completes the eval. `stop` (anything with
    `is_set()`, checked as each answer ends) ends it the same way."""
    from workbench.engine import Engine, batch_workers
    from workbench.store import Store

    config = config or Config()
    home = resolve_home(home)
    questions = load_questions(name, split, home, limit)
    engine = engine or Engine(config, name, home)
    variants = list(dict.fromkeys(variants or engine.available()))
    _check_variants(engine, config, variants)
    owned = store is None
    store = store or Store.open(home=home)
    try:
        scorer = build_scorer(config, engine.retriever, judges or ["reference"], judge_model)
        plan = plan_eval(engine, store, config, name, questions, split, variants, scorer, eval_id)
        answered, stopped = _answer(engine, store, scorer, plan, workers or batch_workers(), progress, stop)
        stored = len(store.eval_keys(plan.eval_id))
        total = len(questions) * len(variants)
        if stored == total:
            rows = store.answers(eval_id=plan.eval_id)
            errors = sum(bool(a["error"]) for a in rows)
            device = getattr(getattr(engine, "model", None), "device", None)
            store.finish_eval(plan.eval_id, {"answers": stored, "errors": errors, "machine": machine(device)})
        return {
            "eval_id": plan.eval_id,
            "questions": len(questions),
            "variants": variants,
            "answered": answered,
            "stored": stored,
            "total": total,
            "finished": stored == total,
            "stopped": stopped,
        }
    finally:
        if owned:
            store.close()


def _answer(engine, store, scorer: Scorer, plan: EvalPlan, workers: int, progress: bool, stop) -> tuple[int, bool]:
    """Answer the plan's pending pairs, storing the scored answers as they end; (answers stored, stopped early)."""
    local = [(q, v) for q, v in plan.pending if not v.startswith(REMOTE_PREFIX)]
    remote = [(q, v) for q, v in plan.pending if v.startswith(REMOTE_PREFIX)]
    chunks = {c.id: c for c in engine.retriever.chunks} if engine.retriever is not None else {}
    bar = tqdm(total=len(plan.pending), unit="answer", desc=f"eval {plan.eval_id}", disable=not progress)
    unscored: list[tuple[Question, object]] = []
    done = 0
    pool = ThreadPoolExecutor(REMOTE_THREADS) if remote else None
    futures: list[tuple[Question, Future]] = [(q, pool.submit(engine.remote_answer, q.question, v)) for q, v in remote]

    def flush() -> None:
        nonlocal done
        batch = unscored[:]
        unscored.clear()
        for (question, answer, shown), scores in zip(*_scored(scorer, batch, chunks)):
            _store(store, scorer, plan.eval_id, question, answer, shown, scores)
            done += 1
            bar.update(1)

    def keep(question: Question, answer) -> None:
        unscored.append((question, answer))
        if len(unscored) >= SCORE_BATCH:
            flush()

    def finished_remotes(wait: bool) -> None:
        for item in [f for f in futures if wait or f[1].done()]:
            futures.remove(item)
            keep(item[0], item[1].result())

    def stopping() -> bool:
        return stop is not None and stop.is_set()

    print(
        f"eval {plan.eval_id}: {len(plan.questions) * len(plan.variants) - len(plan.pending)} of "
        f"{len(plan.questions) * len(plan.variants)} answers stored; {len(plan.pending)} to answer",
        file=sys.stderr,
        flush=True,
    )
    answers = engine.answers([(q.question, v) for q, v in local], workers=workers) if local and not stopping() else None
    try:
        for position, answer in answers or ():
            keep(local[position][0], answer)
            finished_remotes(wait=False)
            if stopping():
                flush()
                return done, True
        if stopping():
            return done, True
        finished_remotes(wait=True)
        flush()
    except KeyboardInterrupt:
        return done, True
    finally:
        if answers is not None:
            answers.close()  # stops the decoding threads after their current step
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return done, False


def _scored(scorer: Scorer, batch: list[tuple[Question, object]], chunks: dict):
    """([(question, answer, chunks shown)], [Scores]) for a batch of answers, scored together."""
    from workbench.judge.hallucination import Passage

    rows, items = [], []
    for question, answer in batch:
        shown = [chunks[cid] for cid in answer.chunk_ids if cid in chunks]
        sources = [Passage(c.id, c.text, c.title) for c in shown] or None
        rows.append((question, answer, shown))
        items.append(ScoreItem(question.question, answer.text, question.answer, question.type, sources, answer.error))
    return rows, scorer.score(items)


def _store(store, scorer: Scorer, eval_id: str, question: Question, answer, shown: list, scores) -> None:
    """One scored answer stored with its judgements, claims and the rank of the first gold source it was shown."""
    claims = (scorer.detector.name, scores.claim_rows()) if scores.claims is not None else None
    store.add_eval_answer(
        eval_id,
        question.id,
        answer.to_dict(),
        gold_rank=gold_rank([c.doc_id for c in shown], question.gold_doc_ids),
        judgements=[j.to_dict() for j in scores.judgements],
        claims=claims,
    )


def gold_rank(shown_doc_ids: list[str], gold_doc_ids) -> int | None:
    """1-based rank of the first shown source from a gold document; 0 when none is; None when nothing was shown
    or the question names no gold document (then retrieval cannot be told apart from generation)."""
    if not shown_doc_ids or not gold_doc_ids:
        return None
    gold = set(gold_doc_ids)
    return next((rank for rank, doc in enumerate(shown_doc_ids, 1) if doc in gold), 0)


def _check_variants(engine, config: Config, variants: list[str]) -> None:
    for v in variants:
        if v.startswith(REMOTE_PREFIX):
            if v[len(REMOTE_PREFIX) :] not in config.chat.remotes:
                known = ", ".join(REMOTE_PREFIX + r for r in config.chat.remotes) or "none configured in chat.remotes"
                raise EvalError(f"--variants: {v} is not a configured endpoint ({known})")
        elif why := engine.why_unavailable(v):
            raise EvalError(f"--variants: {v} cannot answer here: {why}")


def _default_id(split: str, variants: list[str], setup: dict) -> str:
    label = split if split in NAMED_SPLITS else re.sub(r"[^A-Za-z0-9_-]+", "-", Path(split).stem)[:30] or "file"
    return f"{label}-{_digest({'variants': variants, **setup})[:10]}"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
