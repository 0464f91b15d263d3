"""Hallucination detector figures on the demo's labelled set (true reference answers against corrupted ones).

The set (workbench/judge/labelled.py) is split by QA pair into a calibration half and an evaluation half. On the
calibration half only, the answer aggregation (max or noisy-or over claims) is chosen by AUROC and the flagging
threshold fitted for F1; on the evaluation half, AUROC, AUC-PR (average precision, next to the base rate) and
precision / recall at that threshold are reported, in two settings:
- with context: the detector is given the gold documents' chunks (unanswerable questions: the top 3 retrieved
  chunks, as a RAG variant would see), and no index;
- without context: evidence comes from index retrieval only (how base and fine-tuned answers are checked).
Baselines are scored the same way: answer length in words, the mean negative log-probability of the answer's
tokens under the local chat model given the question, and a seeded random score. Throughput is judged answers
per second over the evaluation half (models loaded beforehand).
Usage: python bench/hallucination.py [--limit N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import Config
from workbench.data.prepare import prepare
from workbench.judge.hallucination import (
    Item,
    Passage,
    aggregate,
    auroc,
    average_precision,
    fit_threshold,
    make_detector,
    precision_recall,
)
from workbench.judge.labelled import build_labelled_set, load_documents, load_questions, summary
from workbench.retrieval.index import Retriever, build_index

DEMO = Path(__file__).resolve().parent.parent / "demo"
SEED = 13


def measures(scores: list[float], labels: list[int], threshold: float) -> dict:
    precision, recall = precision_recall(scores, labels, threshold)
    return {
        "auroc": round(auroc(scores, labels), 4),
        "auc_pr": round(average_precision(scores, labels), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "threshold": round(threshold, 4),
    }


def score_rows(detector, rows: list[dict], contexts: list | None) -> tuple[dict[str, list[float]], float]:
    """Per aggregation, each row's score; and the seconds the detector took."""
    items = [Item(r["question"], r["answer"], contexts[i] if contexts else None) for i, r in enumerate(rows)]
    started = time.perf_counter()
    checks = [c for start in range(0, len(items), 16) for c in detector.check(items[start : start + 16])]
    seconds = time.perf_counter() - started
    claim_scores = [[claim.score for claim in check.claims] for check in checks]
    return {how: [aggregate(s, how) for s in claim_scores] for how in ("max", "noisy_or")}, seconds


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
    labels = {part: [r["label"] for r in rows] for part, rows in (("cal", calibration), ("eval", evaluation))}
    cal_scores, _ = score_rows(detector, calibration, contexts["cal"] if contexts else None)
    by_how = {how: auroc(s, labels["cal"]) for how, s in cal_scores.items()}
    how = max(by_how, key=by_how.get)
    threshold = fit_threshold(cal_scores[how], labels["cal"])
    eval_scores, seconds = score_rows(detector, evaluation, contexts["eval"] if contexts else None)
    figures = {
        "aggregation": how,
        "calibration_auroc": {k: round(v, 4) for k, v in by_how.items()},
        "detector": measures(eval_scores[how], labels["eval"], threshold),
        "other_aggregation": measures(
            eval_scores[other(how)], labels["eval"], fit_threshold(cal_scores[other(how)], labels["cal"])
        ),
        "answers_per_s": round(len(evaluation) / seconds, 1),
    }
    figures["by_kind_recall"] = recall_by_kind(evaluation, eval_scores[how], threshold)
    return figures


def other(how: str) -> str:
    return "noisy_or" if how == "max" else "max"


def recall_by_kind(rows: list[dict], scores: list[float], threshold: float) -> dict:
    kinds = sorted({r["kind"] for r in rows})
    result = {}
    for kind in kinds:
        chosen = [s for r, s in zip(rows, scores) if r["kind"] == kind]
        result[kind] = round(sum(s >= threshold for s in chosen) / len(chosen), 4)
    return result  # for `true` this is the false-positive rate


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, help="use only the first N rows of each half (quick look)")
    parser.add_argument("--home", help="a workspace where the demo is already prepared and indexed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home) if args.home else Path(tmp)
        if not args.home:
            prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
            build_index("demo", home=home, progress=False)
        config = Config()
        rows = build_labelled_set(load_questions("demo", home), load_documents("demo", home), SEED)
        calibration = [r for r in rows if r["half"] == "calibration"][: args.limit]
        evaluation = [r for r in rows if r["half"] == "evaluation"][: args.limit]
        retriever = Retriever.load("demo", config, home)
        contexts = {"cal": gold_contexts(calibration, retriever), "eval": gold_contexts(evaluation, retriever)}
        figures = {
            "labelled_set": summary(rows),
            "with_context": setting_figures(make_detector(config), calibration, evaluation, contexts),
            "without_context": setting_figures(make_detector(config, retriever), calibration, evaluation, None),
            "baselines": baselines(calibration, evaluation, config),
        }
    record("hallucination", figures)


if __name__ == "__main__":
    main()
