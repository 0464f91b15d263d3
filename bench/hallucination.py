"""Hallucination detector figures on the demo: on its labelled set (true reference answers against corrupted
ones) and on real answers of the four variants.

Labelled set (part `labelled`). The set (workbench/judge/labelled.py) is split by QA pair into a calibration half
and an evaluation half. On the calibration half only, the answer aggregation (max or noisy-or over claims) is chosen
by AUROC and the flagging threshold fitted for F1; on the evaluation half, AUROC, AUC-PR (average precision, next
to the base rate) and precision / recall at that threshold are reported, in two settings:
- with context: the detector is given the gold documents' chunks (unanswerable questions: the top 3 retrieved
  chunks, as a RAG variant would see), and no index;
- without context: evidence comes from index retrieval only (how base and fine-tuned answers are checked).
Baselines are scored the same way: answer length in words, the mean negative log-probability of the answer's
tokens under the local chat model given the question, and a seeded random score. Throughput is judged answers
per second over the evaluation half (models loaded beforehand).

Real answers (part `real_answers`). `workbench eval` answers the demo's test split with base, ft, rag and ft_rag
(configs/default.yaml; the workspace's ft adapter, trained with the config's `finetune` when it has none) and
scores each answer as the arena does: the `token_f1` judge, and the detector's claims checked against the sources
a RAG answer was shown or, for a closed-book answer, against the index. From the stored rows, an answer is wrong
(label 1) at token F1 below 0.2 and right (label 0) at 0.5 or above; the answers between are left out. Each score
below is measured by AUROC over the labelled answers, all together and for RAG and closed-book answers apart
(nothing is fitted here):
- `detector`: the answer's highest claim score; answers without claims (empty or failed ones) are left out and
  counted. `flag_rate`: the share of checked answers with an unsupported claim, of wrong and of right answers;
- `length_words`: the answer's length in words;
- `missing_content_words`: the share of the answer's distinct content words (token F1's words less
  scikit-learn's English stop words) found in none of its sources; a closed-book answer is compared with the
  sources the RAG variants were shown for the same question (the question's top retrieved chunks).
Usage: python bench/hallucination.py [--parts labelled,real_answers] [--limit N (first N rows of each half and
       first N test questions: a quick look)] [--home DIR (a workspace with the demo prepared and indexed, copied;
       its adapter is reused)] [--finetune-steps N (when an adapter is trained; default: the config's)].
       Parts not run keep their figures from an earlier run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import Config, load_config
from workbench.data.prepare import prepare
from workbench.eval import run_eval
from workbench.finetune import finetune
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
from workbench.store import Store
from workbench.text_metrics import normalize
from workbench.workspace import run_paths

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
SEED = 13
PARTS = ("labelled", "real_answers")
VARIANTS = ["base", "ft", "rag", "ft_rag"]
WRONG_BELOW, RIGHT_FROM = 0.2, 0.5
"""Real answers: token F1 below WRONG_BELOW is wrong (1), at least RIGHT_FROM right (0), in between left out."""


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
    """The four variants' answers to the demo's test questions through `workbench eval`, measured from the store."""
    if not (run_paths("demo", home).adapter / "adapter_config.json").is_file():
        finetune("demo", config, home, max_steps=finetune_steps, progress=False)  # the adapter `make run` trains
    result = run_eval("demo", config, home, variants=VARIANTS, limit=limit, judges=["token_f1"], progress=False)
    with Store.open(home=home) as store:
        rows = [read(eval_id=result["eval_id"]) for read in (store.answers, store.judgements, store.claim_flags)]
    chunk_texts = {chunk.id: chunk.text for chunk in Retriever.load("demo", config, home).chunks}
    figures = real_answer_figures(*rows, chunk_texts)
    return {"eval_id": result["eval_id"], "questions": result["questions"]} | figures


def real_answer_figures(
    answers: list[dict], judgements: list[dict], claims: list[dict], chunk_texts: dict[str, str]
) -> dict:
    """Labels, detector and baseline AUROCs and flag rates from one eval's rows (`Store.answers/judgements/
    claim_flags(eval_id=...)`: answers with `id, variant, qa_id, text, chunk_ids`; judgements with `answer_id,
    judge, score`; claims with `answer_id, score, supported`) and the index's `{chunk id: text}`."""
    f1 = {j["answer_id"]: j["score"] for j in judgements if j["judge"] == "token_f1" and j["score"] is not None}
    label = {
        a["id"]: int(f1[a["id"]] < WRONG_BELOW)
        for a in answers
        if a["id"] in f1 and (f1[a["id"]] < WRONG_BELOW or f1[a["id"]] >= RIGHT_FROM)
    }
    claim_scores: dict[str, list[float]] = defaultdict(list)
    flagged = set()
    for c in claims:
        claim_scores[c["answer_id"]].append(c["score"])
        if not c["supported"]:
            flagged.add(c["answer_id"])
    shown = {a["qa_id"]: a["chunk_ids"] for a in answers if a["chunk_ids"]}  # the question's top retrieved chunks
    scores = {
        "detector": lambda a: max(claim_scores[a["id"]]) if claim_scores[a["id"]] else None,
        "length_words": lambda a: len(a["text"].split()),
        "missing_content_words": lambda a: missing_share(
            a["text"], a["chunk_ids"] or shown.get(a["qa_id"]), chunk_texts
        ),
    }
    kept = [a for a in answers if a["id"] in label]
    groups = {
        "all": kept,
        "rag": [a for a in kept if a["chunk_ids"]],
        "closed_book": [a for a in kept if not a["chunk_ids"]],
    }
    figures: dict = {
        "labels": {
            "wrong": sum(label.values()),
            "right": len(label) - sum(label.values()),
            "left_out": len(answers) - len(label),
        },
        "by_variant": {},
    }
    for variant in sorted({a["variant"] for a in answers}):
        mine = [a for a in answers if a["variant"] == variant]
        wrong = sum(label.get(a["id"]) == 1 for a in mine)
        right = sum(label.get(a["id"]) == 0 for a in mine)
        figures["by_variant"][variant] = {"wrong": wrong, "right": right, "left_out": len(mine) - wrong - right}
    for name, score in scores.items():
        figures[name] = {group: auroc_of(rows, score, label) for group, rows in groups.items()}
    checked = [a for a in kept if claim_scores[a["id"]]]
    figures["detector"]["flag_rate"] = {
        kind: (round(sum(a["id"] in flagged for a in rows) / len(rows), 4) if rows else None)
        for kind, rows in (
            ("wrong", [a for a in checked if label[a["id"]] == 1]),
            ("right", [a for a in checked if label[a["id"]] == 0]),
        )
    }
    return figures


def auroc_of(answers: list[dict], score, label: dict) -> dict:
    """AUROC of `score(answer)` against the labels (None when a class is missing), the answers it scored and the
    answers without a score."""
    scored = [(s, label[a["id"]]) for a in answers if (s := score(a)) is not None]
    labels = [y for _, y in scored]
    value = auroc([s for s, _ in scored], labels) if 0 < sum(labels) < len(labels) else None
    return {
        "auroc": round(value, 4) if value is not None else None,
        "answers": len(scored),
        "wrong": sum(labels),
        "without_score": len(answers) - len(scored),
    }


def missing_share(text: str, chunk_ids: list[str] | None, chunk_texts: dict[str, str]) -> float | None:
    """The share of the answer's distinct content words found in none of the chunks; None without chunks or words."""
    if not chunk_ids:
        return None
    words = {w for w in normalize(text) if w not in ENGLISH_STOP_WORDS}
    if not words:
        return None
    source = set(normalize(" ".join(chunk_texts.get(cid, "") for cid in chunk_ids)))
    return len(words - source) / len(words)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default=",".join(PARTS), help="labelled, real_answers or both")
    parser.add_argument("--limit", type=int, help="only the first N rows of each half and N test questions")
    parser.add_argument("--home", type=Path, help="a workspace with the demo prepared and indexed (copied)")
    parser.add_argument("--finetune-steps", type=int, help="steps when an adapter must be trained")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}; choose from {', '.join(PARTS)}")
    config = load_config(ROOT / "configs" / "default.yaml")
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        demo_workspace(home, config, args.home)
        if "labelled" in parts:
            figures |= labelled_figures(config, home, args.limit)
        if "real_answers" in parts:
            figures["real_answers"] = real_answers(config, home, args.limit, args.finetune_steps)
            print("real_answers", figures["real_answers"], flush=True)
    record("hallucination", figures, parts=sorted(parts))


if __name__ == "__main__":
    main()
