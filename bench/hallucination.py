"""Hallucination detector figures on the demo: on real answers of its variants and on a constructed labelled set.

Real answers (part `real`). `workbench eval` answers the demo's test and val questions with base, ft, rag and
ft_rag, and the train questions with base and rag (configs/default.yaml; the workspace's ft adapter, trained with
the config's `finetune` when it has none). Each answer is labelled by `workbench/judge/answer_labels.py`'s rule
(hallucinated, right, or left out) and split by question into a fit half and an evaluation half. On the evaluation
half, each scorer's AUROC (with `auroc_95`, a 95% interval from resampling questions) and AUC-PR, overall, for RAG
and closed-book answers apart, and inside length-matched pairs (a wrong and a right answer within PAIR_WORDS words
or 20%):
- `detector`: the configured detector as eval runs it (each answer checked against the chunks it was shown, or the
  index); precision and recall of its own flag (an answer with a likely unsupported claim); every aggregation's
  AUROC on both halves;
- `missing_content_words`: the share of the answer's content words found in none of its sources (a closed-book
  answer: the question's top retrieved chunks); `length_words`; `random` (thresholds fitted on the fit half).
`by_variant`: per variant on test and val, the share of answers flagged beside mean token F1.

Constructed set (part `labelled`, workbench/judge/labelled.py): reference answers against copies with a swapped
number, a swapped name or an invented sentence, split by QA pair into a calibration half and an evaluation half;
the configured detector measured on the evaluation half with the gold context, and with index retrieval only
(throughput in answers per second, models loaded beforehand), beside answer length, the local model's mean token
negative log-probability and random.

`--fit` refits the claim score's weights (WEIGHTS, INTERCEPT in workbench/judge/hallucination.py) on the fit and
calibration halves of both sets together and prints them beside the shipped ones; nothing from the evaluation
halves is used.
Usage: python bench/hallucination.py [--parts labelled,real] [--limit N (first N rows of each half and N questions
       per split: a quick look)] [--home DIR (a workspace with the demo prepared and indexed, copied; its adapter
       is reused)] [--work DIR (keep the workspace between runs: answers already stored are not generated again)]
       [--finetune-steps N (when an adapter is trained)] [--fit]. Parts not run keep earlier figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import Config, load_config
from workbench.data.prepare import prepare
from workbench.eval import run_eval
from workbench.finetune import finetune
from workbench.judge.answer_labels import real_answer_set
from workbench.judge.checking import BATCH
from workbench.judge.claims import AGGREGATIONS, aggregate
from workbench.judge.hallucination import (
    INTERCEPT,
    WEIGHTS,
    Item,
    Passage,
    fit_threshold,
    make_detector,
    precision_recall,
)
from workbench.judge.labelled import build_labelled_set, load_documents, load_questions, summary
from workbench.records import read_split
from workbench.retrieval.index import Retriever, build_index
from workbench.store import Store
from workbench.text_metrics import content_words, normalize, token_f1
from workbench.workspace import run_paths, write_jsonl_atomic

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
SEED = 13
PARTS = ("labelled", "real")
VARIANTS = ["base", "ft", "rag", "ft_rag"]
REAL_EVALS = (("test", VARIANTS), ("val", VARIANTS), ("train", ["base", "rag"]))
"""Where real answers come from: every variant on the held-out splits; on the train split's questions, the two
variants that were not trained on them (more answers, and more right ones, to fit and report on)."""
PAIR_WORDS = 2
"""Length-matched pairs: a wrong and a right answer within this many words (or 20%) of each other."""


def measures(scores: list[float], labels: list[int], threshold: float | None, flags: list[bool] | None = None) -> dict:
    """AUROC, AUC-PR (average precision), and precision / recall of flagging: `score >= threshold`, or for the
    detector its own flags (an answer with a likely unsupported claim). Answers without a score are left out and
    counted."""
    kept = [(s, y, f) for s, y, f in zip(scores, labels, flags or [None] * len(scores)) if s is not None]
    scores, labels = [s for s, _, _ in kept], [y for _, y, _ in kept]
    if not 0 < sum(labels) < len(labels):
        return {"answers": len(labels), "wrong": sum(labels), "auroc": None}
    if flags is None:
        precision, recall = precision_recall(scores, labels, threshold)
    else:
        precision, recall = precision_recall([float(f) for _, _, f in kept], labels, 1.0)
    return {
        "answers": len(labels),
        "wrong": sum(labels),
        "auroc": round(float(roc_auc_score(labels, scores)), 4),
        "auc_pr": round(float(average_precision_score(labels, scores)), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "threshold": round(threshold, 4) if threshold is not None else "any claim flagged",
    }


def score_rows(detector, rows: list[dict], contexts: list | None) -> tuple[dict[str, list[float]], float, list, list]:
    """Per aggregation, each row's score; the seconds the detector took; each row's signals (`answer_features`);
    whether each row was flagged."""
    items = [Item(r["question"], r["answer"], contexts[i] if contexts else None) for i, r in enumerate(rows)]
    started = time.perf_counter()
    checks = check_all(detector, items)
    seconds = time.perf_counter() - started
    claim_scores = [[claim.score for claim in check.claims] for check in checks]
    scores = {how: [aggregate(s, how) for s in claim_scores] for how in AGGREGATIONS}
    return scores, seconds, [answer_features(check) for check in checks], [check.flagged for check in checks]


def gold_contexts(rows: list[dict], retriever: Retriever) -> list[list[Passage]]:
    """The gold documents' chunks; for a question without gold documents, its top 3 retrieved chunks."""
    by_doc: dict[str, list[Passage]] = {}
    for chunk in retriever.chunks:
        by_doc.setdefault(chunk.doc_id, []).append(
            Passage(chunk.id, chunk.text, " ".join([chunk.title, *chunk.headings]))
        )
    contexts = []
    for row in rows:
        passages = [p for d in row["doc_ids"] for p in by_doc.get(d, [])]
        if not passages:
            passages = [Passage(h.chunk.id, h.chunk.text) for h in retriever.search(row["question"], 3)]
        contexts.append(passages)
    return contexts


def setting_figures(detector, calibration: list[dict], evaluation: list[dict], contexts) -> dict:
    """The detector as configured (aggregation, threshold) on the evaluation half; every aggregation's AUROC on
    both halves, so the configured choice can be checked against the calibration half it was made on."""
    labels = {part: [r["label"] for r in rows] for part, rows in (("cal", calibration), ("eval", evaluation))}
    cal_scores, _, cal_features, _ = score_rows(detector, calibration, contexts["cal"] if contexts else None)
    eval_scores, seconds, _, eval_flags = score_rows(detector, evaluation, contexts["eval"] if contexts else None)
    how = detector.settings.aggregate
    figures = {
        "aggregation": how,
        "auroc_by_aggregation": {
            other: {
                "calibration": round(float(roc_auc_score(labels["cal"], cal_scores[other])), 4),
                "evaluation": round(float(roc_auc_score(labels["eval"], eval_scores[other])), 4),
            }
            for other in AGGREGATIONS
        },
        "detector": measures(eval_scores[how], labels["eval"], None, eval_flags),
        "answers_per_s": round(len(evaluation) / seconds, 1),
    }
    figures["by_kind_recall"] = recall_by_kind(evaluation, eval_flags)
    figures["fit_set"] = (cal_features, labels["cal"])  # for --fit; not recorded
    return figures


def recall_by_kind(rows: list[dict], flags: list[bool]) -> dict:
    """The share of each kind of row the detector flagged (for `true`, the false-positive rate)."""
    result = {}
    for kind in sorted({r["kind"] for r in rows}):
        chosen = [f for r, f in zip(rows, flags) if r["kind"] == kind]
        result[kind] = round(sum(chosen) / len(chosen), 4)
    return result


def answer_nll(rows: list[dict], config: Config, batch_size: int = 16) -> dict[str, float]:
    """Mean negative log-probability per answer token under the local chat model, given the question."""
    import torch

    from workbench.models import load_causal_lm
    from workbench.train_data import IGNORE, collate, encode

    model, tokenizer = load_causal_lm(config.model.base, config.model.device)
    scores = {}
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        items = [
            encode(
                [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}],
                tokenizer,
                config.finetune.system_prompt,
                512,
            )
            for r in batch
        ]
        tensors = collate(items, tokenizer.pad_token_id)
        with torch.inference_mode():
            logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"]).logits[:, :-1]
        labels = tensors["labels"][:, 1:]
        mask = labels != IGNORE
        token_nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none"
        )
        per_row = (token_nll * mask).sum(1) / mask.sum(1).clamp(min=1)
        scores |= {r["id"]: float(v) for r, v in zip(batch, per_row)}
    return scores


def baselines(calibration: list[dict], evaluation: list[dict], config: Config) -> dict:
    rng = random.Random(SEED)
    nll = answer_nll(calibration + evaluation, config)
    result = {}
    for name, score in (
        ("length_words", lambda r: len(r["answer"].split())),
        ("mean_token_nll", lambda r: nll[r["id"]]),
        ("random", lambda r: rng.random()),
    ):
        cal = [score(r) for r in calibration]
        ev = [score(r) for r in evaluation]
        threshold = fit_threshold(cal, [r["label"] for r in calibration])
        result[name] = measures(ev, [r["label"] for r in evaluation], threshold)
    return result


def demo_workspace(home: Path, config: Config, reuse: Path | None) -> None:
    """The demo prepared and indexed into `home`, or a copy of `reuse` (left as it is)."""
    if reuse is not None:
        shutil.copytree(reuse, home, dirs_exist_ok=True)
        return
    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", config=config, home=home, progress=False)
    build_index("demo", config, home, progress=False)


def labelled_figures(config: Config, home: Path, limit: int | None) -> dict:
    rows = build_labelled_set(load_questions("demo", home), load_documents("demo", home), SEED)
    calibration = [r for r in rows if r["half"] == "calibration"][:limit]
    evaluation = [r for r in rows if r["half"] == "evaluation"][:limit]
    retriever = Retriever.load("demo", config, home)
    contexts = {"cal": gold_contexts(calibration, retriever), "eval": gold_contexts(evaluation, retriever)}
    return {
        "labelled_set": summary(rows),
        "with_context": setting_figures(make_detector(config), calibration, evaluation, contexts),
        "without_context": setting_figures(make_detector(config, retriever), calibration, evaluation, None),
        "baselines": baselines(calibration, evaluation, config),
    }


def real_answers(config: Config, home: Path, limit: int | None, finetune_steps: int | None) -> dict:
    """Real answers of the demo's variants, labelled by `answer_labels`' rule; the detector (as configured) and the
    baselines measured on the evaluation half; the fit half's signals kept for `--fit`."""
    if not (run_paths("demo", home).adapter / "adapter_config.json").is_file():
        finetune("demo", config, home, max_steps=finetune_steps, progress=False)  # the adapter `make run` trains
    questions = load_questions("demo", home)
    train_file = home / "train_questions.jsonl"
    train = [e for e in read_split(run_paths("demo", home).split("train")) if e.is_question]
    write_jsonl_atomic(train_file, [qa_row(q) for q in train[:limit]])
    answers, eval_ids = [], []
    for split, variants in REAL_EVALS:
        split = str(train_file) if split == "train" else split
        result = run_eval("demo", config, home, split=split, variants=variants, limit=limit, judges=[], progress=False)
        with Store.open(home=home) as store:
            answers += store.answers(eval_id=result["eval_id"])
        eval_ids.append(result["eval_id"])
    by_id = {q.id: {"question": q.question, "answer": q.answer, "type": q.type} for q in questions}
    retriever = Retriever.load("demo", config, home)
    answered = [a for a in answers if not a["error"] and a["qa_id"] in by_id]
    checks = check_answers(make_detector(config, retriever), answered, retriever)  # each answer checked once
    rows = real_answer_set(answered, by_id, SEED)
    figures = real_answer_figures(rows, [checks[r["id"]] for r in rows], retriever)
    figures["by_variant"] = variant_figures([a for a in answered if a["eval_id"] in eval_ids[:2]], by_id, checks)
    return {"evals": eval_ids} | figures


def qa_row(example) -> dict:
    """A prepared question as a QA file row (the train split's questions are asked through a QA file)."""
    return {"id": example.id, "question": example.question, "answer": example.answer, "doc_ids": example.doc_ids}


def check_all(detector, items: list[Item]) -> list:
    """The detector's verdicts, in batches of `checking.BATCH` as `workbench check` runs it."""
    return [check for start in range(0, len(items), BATCH) for check in detector.check(items[start : start + BATCH])]


def check_answers(detector, answers: list[dict], retriever: Retriever) -> dict:
    """{answer id: the detector's verdict}, each answer checked against the chunks it was shown, as eval checks it."""
    chunks = {chunk.id: chunk for chunk in retriever.chunks}
    items = [
        Item(a["question"], a["text"], [Passage(c, chunks[c].text, chunks[c].title) for c in a["chunk_ids"]] or None)
        for a in answers
    ]
    return {a["id"]: check for a, check in zip(answers, check_all(detector, items))}


def answer_features(check) -> list[float]:
    """An answer's signals for fitting: each the highest over its claims (none: all 0)."""
    claims = [c.features for c in check.claims if c.features]
    return [max((c[name] for c in claims), default=0.0) for name in WEIGHTS]


def missing_share(text: str, chunk_ids: list[str] | None, chunk_texts: dict[str, str]) -> float | None:
    """The share of the answer's distinct content words found in none of the chunks; None without chunks or words."""
    words = content_words(text)
    if not chunk_ids or not words:
        return None
    source = set(normalize(" ".join(chunk_texts.get(cid, "") for cid in chunk_ids)))
    return len(words - source) / len(words)


def real_answer_figures(rows: list[dict], checks: list, retriever: Retriever) -> dict:
    """Per scorer (the detector's answer score, answer length, content words missing from the sources, random):
    AUROC, AUC-PR and precision / recall on the evaluation half (baselines' thresholds fitted on the fit half),
    overall, for RAG and closed-book answers apart, and inside length-matched pairs."""
    chunk_texts = {chunk.id: chunk.text for chunk in retriever.chunks}
    shown = {r["qa_id"]: r["chunk_ids"] for r in rows if r["chunk_ids"]}  # the question's top retrieved chunks
    rng = random.Random(SEED)
    claims = [[claim.score for claim in check.claims] for check in checks]
    scores = {
        "detector": [check.score for check in checks],
        "length_words": [len(r["text"].split()) for r in rows],
        "missing_content_words": [
            missing_share(r["text"], r["chunk_ids"] or shown.get(r["qa_id"]), chunk_texts) for r in rows
        ],
        "random": [rng.random() for _ in rows],
    }
    fit_rows = [i for i, r in enumerate(rows) if r["half"] == "fit"]
    evaluation = [i for i, r in enumerate(rows) if r["half"] == "evaluation"]
    labels = [r["label"] for r in rows]
    figures: dict = {"rule": "workbench/judge/answer_labels.py", "labels": label_counts(rows)}
    flags = [check.flagged for check in checks]
    for name, values in scores.items():
        fitted = [(values[i], labels[i]) for i in fit_rows if values[i] is not None]
        cut = None if name == "detector" else fit_threshold([v for v, _ in fitted], [y for _, y in fitted])
        flagged = flags if name == "detector" else None

        figures[name] = measured(values, labels, cut, flagged, evaluation) | {
            group: measured(values, labels, cut, flagged, chosen)
            for group, chosen in (
                ("rag", [i for i in evaluation if rows[i]["chunk_ids"]]),
                ("closed_book", [i for i in evaluation if not rows[i]["chunk_ids"]]),
            )
        }
        figures[name]["length_matched"] = paired_auroc(rows, evaluation, values)
        figures[name]["auroc_95"] = auroc_interval(rows, evaluation, values)
    figures["detector"]["auroc_by_aggregation"] = {
        how: {
            half: round(
                float(roc_auc_score([labels[i] for i in chosen], [aggregate(claims[i], how) for i in chosen])), 4
            )
            for half, chosen in (("fit", fit_rows), ("evaluation", evaluation))
        }
        for how in AGGREGATIONS
    }
    figures["fit_set"] = ([answer_features(checks[i]) for i in fit_rows], [labels[i] for i in fit_rows])
    return figures


def measured(values: list, labels: list[int], cut: float | None, flags: list[bool] | None, chosen: list[int]) -> dict:
    """`measures` over the chosen rows."""
    picked = [flags[i] for i in chosen] if flags else None
    return measures([values[i] for i in chosen], [labels[i] for i in chosen], cut, picked)


def label_counts(rows: list[dict]) -> dict:
    return {
        half: {
            "wrong": sum(r["label"] for r in rows if r["half"] == half),
            "right": sum(1 - r["label"] for r in rows if r["half"] == half),
        }
        for half in ("fit", "evaluation")
    }


def fit_weights(sets: list[tuple[list[list[float]], list[int]]]) -> dict:
    """The claim score's logistic model fitted on the fitting halves `[(features, labels)]` (the real answers',
    and the constructed set's with and without context): each set and, within it, each class weighs the same;
    weights are kept non-negative, since every signal is evidence against a claim, never for it; a small L2
    penalty keeps them finite where a signal separates a set perfectly. Paste the result into WEIGHTS/INTERCEPT."""
    from scipy.optimize import minimize

    features, labels, weights = [], [], []
    for x, y in sets:
        y = np.asarray(y)
        weights += list(np.where(y == 1, 0.5 / y.sum(), 0.5 / (len(y) - y.sum())) / len(sets))
        features += x
        labels += list(y)
    x, y, w = np.asarray(features), np.asarray(labels), np.asarray(weights)

    def loss(p: np.ndarray) -> float:
        z = x @ p[:-1] + p[-1]
        return float((w * (np.logaddexp(0, z) - y * z)).sum() + 1e-3 * (p[:-1] ** 2).sum())

    n = x.shape[1]
    fitted = minimize(loss, np.zeros(n + 1), bounds=[(0, None)] * n + [(None, None)], method="L-BFGS-B").x
    return {
        "weights": {name: round(float(v), 3) for name, v in zip(WEIGHTS, fitted)},
        "intercept": round(float(fitted[-1]), 3),
    }


def auroc_interval(rows: list[dict], chosen: list[int], values: list, resamples: int = 2000) -> list[float] | None:
    """A 95% percentile interval for the AUROC over the chosen rows, resampling questions rather than answers: the
    variants' answers to one question are not independent (scipy's bootstrap resamples single observations only).
    Resamples that hold a single class are skipped."""
    by_question: dict[str, list[int]] = {}
    for i in chosen:
        if values[i] is not None:
            by_question.setdefault(rows[i]["qa_id"], []).append(i)
    groups = list(by_question.values())
    rng = np.random.default_rng(SEED)
    estimates = []
    for _ in range(resamples):
        picked = [i for g in rng.integers(len(groups), size=len(groups)) for i in groups[g]]
        labels = [rows[i]["label"] for i in picked]
        if 0 < sum(labels) < len(labels):
            estimates.append(roc_auc_score(labels, [values[i] for i in picked]))
    return [round(float(v), 4) for v in np.percentile(estimates, [2.5, 97.5])] if estimates else None


def paired_auroc(rows: list[dict], chosen: list[int], values: list) -> dict:
    """The chance a wrong answer outscores a right one of about the same length (within PAIR_WORDS words or 20%),
    over all such pairs of the chosen rows (ties count half)."""
    wrong = [i for i in chosen if rows[i]["label"] == 1 and values[i] is not None]
    right = [i for i in chosen if rows[i]["label"] == 0 and values[i] is not None]
    wins, pairs = 0.0, 0
    for i in wrong:
        n = len(rows[i]["text"].split())
        for j in right:
            m = len(rows[j]["text"].split())
            if abs(n - m) <= max(PAIR_WORDS, 0.2 * max(n, m)):
                pairs += 1
                wins += 1.0 if values[i] > values[j] else 0.5 if values[i] == values[j] else 0.0
    return {"auroc": round(wins / pairs, 4) if pairs else None, "pairs": pairs}


def variant_figures(held_out: list[dict], questions: dict, checks: dict) -> dict:
    """Per variant over the held-out answers (test and val): the share of answers flagged beside mean token F1."""
    figures = {}
    for variant in VARIANTS:
        mine = [(a, checks[a["id"]]) for a in held_out if a["variant"] == variant]
        if mine:
            f1 = [token_f1(a["text"], questions[a["qa_id"]]["answer"]) for a, _ in mine]
            figures[variant] = {
                "answers": len(mine),
                "flag_rate": round(sum(c.flagged for _, c in mine) / len(mine), 4),
                "mean_token_f1": round(sum(f1) / len(f1), 4),
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default=",".join(PARTS), help="labelled, real or both")
    parser.add_argument("--limit", type=int, help="only the first N rows of each half and N test questions")
    parser.add_argument("--home", type=Path, help="a workspace with the demo prepared and indexed (copied)")
    parser.add_argument("--finetune-steps", type=int, help="steps when an adapter must be trained")
    parser.add_argument("--fit", action="store_true", help="refit the detector's weights on both sets' fit halves")
    parser.add_argument(
        "--work", type=Path, help="keep the workspace here between runs (made when missing): stored answers are reused"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}; choose from {', '.join(PARTS)}")
    config = load_config(ROOT / "configs" / "default.yaml")
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = args.work or Path(tmp)
        if not (home / "runs" / "demo").is_dir():
            demo_workspace(home, config, args.home)
        if "labelled" in parts:
            figures |= labelled_figures(config, home, args.limit)
        if "real" in parts:
            figures["real"] = real_answers(config, home, args.limit, args.finetune_steps)
            print("real", json.dumps(figures["real"], indent=1), flush=True)
    fit_sets = [
        f.pop("fit_set")
        for f in (figures.get("with_context"), figures.get("without_context"), figures.get("real"))
        if f
    ]
    if args.fit:
        if len(fit_sets) < 3:
            parser.error("--fit needs both parts: it fits on the real and the constructed fitting halves together")
        figures["fitted"] = fit_weights(fit_sets)
        print("fitted", figures["fitted"], "shipped", WEIGHTS, INTERCEPT, flush=True)
    record("hallucination", figures, parts=sorted(parts))


if __name__ == "__main__":
    main()
