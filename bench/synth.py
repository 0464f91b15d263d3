"""Synthetic QA on the demo: does `workbench synth` teach the fine-tuned model as well as the shipped QA set?

Two runs of the demo corpus in one workspace, both prepared with the shipped QA set (configs/default.yaml), so both
hold the same test split, question for question (checked):
- `shipped`: trained with the config's recipe (`qa`) on the shipped train questions, as `make run` trains it.
- `synthetic`: the shipped train and val questions taken out of its splits, so only the test questions stay; then
  `workbench synth` (`synthesize`: `--generator`, default the packaged model, `--per-fact`, `--paraphrases`,
  `--limit-docs`) and `synth --apply` (`apply_pairs`, nothing accepted: pending pairs go to the train and val
  documents only, a test document's held back, and a pair as similar to a test question as
  `prepare.leakage_threshold` is left out), then trained with the same recipe and steps. Before training it is
  checked that its train and val splits hold synthetic rows only, with no question that close to a test question.
Both adapters and the base model answer the test questions through `workbench eval` (`run_eval`, greedy,
`--max-new-tokens` as bench/finetune.py), and test token F1 is the mean of the `token_f1` judge read from the store.
Figures (`synth` in bench/results.json): per document the facts, questions and pairs kept (and the document's split
under apply); the share of kept answers found verbatim or with all key facts in their chunk; synth seconds;
`base_test_f1`, `ft_test_f1_shipped`, `ft_test_f1_synthetic`, each adapter's ratio to base, and the same three over
`covered` test questions (every gold document among those the synthetic adapter trained on); the fine-tunes'
summaries; `settings` (generator, limits, steps) with `complete` false for a partial run. With
`--generator remote:NAME` (an endpoint of `chat.remotes` in `--config`) the figures go under `synth["remote:NAME"]`.
Usage: python bench/synth.py [--generator local|remote:NAME] [--config FILE] [--limit-docs N] [--per-fact 1]
       [--paraphrases 2] [--finetune-steps N (default: the config's max_steps)] [--max-new-tokens 64]
       [--limit N (first N test questions: a quick look)] [--work DIR (keep the workspace: pairs generated with the
       same settings and answers already stored are reused)].
Runtime on 2 CPU cores (measured with other work on them): synth with the packaged model is the bulk, 43 min for
the demo's 44 documents; each fine-tune 3.5-4 min at 60 steps; the evals (42 questions: base, ft and ft) under a
minute at 64 tokens; 52 min in all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import Config, load_config
from workbench.data import split as splitting
from workbench.data import synth
from workbench.data.prepare import prepare
from workbench.eval import run_eval
from workbench.finetune import finetune
from workbench.records import read_split
from workbench.store import Store
from workbench.workspace import file_sha256, read_json, run_paths, write_jsonl_atomic

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
SHIPPED, SYNTHETIC = "shipped", "synthetic"


def prepare_runs(config: Config, home: Path) -> dict:
    """Both runs prepared with the shipped QA; the synthetic run's train and val rows removed (its test kept, so
    apply's leakage check guards the test questions). Returns what was removed."""
    removed = {}
    for name in (SHIPPED, SYNTHETIC):
        prepare(name, [DEMO / "corpus"], DEMO / "qa.jsonl", config=config, home=home, progress=False)
    paths = run_paths(SYNTHETIC, home)
    for split in ("train", "val"):
        rows = read_split(paths.split(split))
        write_jsonl_atomic(paths.split(split), [e.to_dict() for e in rows if e.origin == "synthetic"])
        removed[split] = len(rows)
    shipped_test = [e.id for e in read_split(run_paths(SHIPPED, home).split("test"))]
    if [e.id for e in read_split(paths.split("test"))] != shipped_test:
        raise SystemExit("the two runs' test splits differ: prepare is expected to split the same inputs alike")
    return removed


def synthesize_pairs(config: Config, home: Path, generator: str, settings: dict) -> tuple[dict, bool]:
    """The synth summary, and whether it was reused: pairs already in the workspace (`--work`) made by the same
    generator with the same settings are kept, else generated now."""
    summary_path = synth.summary_file(SYNTHETIC, home)
    if summary_path.is_file():
        earlier = read_json(summary_path)
        same = {key: earlier["settings"].get(key) for key in settings} == settings
        if same and earlier["generator"] == synth.make_generator(generator, config).name:
            return earlier, True
    return synth.synthesize(SYNTHETIC, config, home, generator=generator, **settings), False


def apply_and_check(config: Config, home: Path) -> dict:
    """Apply the pending pairs, then check the synthetic run trains on synthetic rows only and that none of them
    asks a test question (at the leakage threshold)."""
    report = synth.apply_pairs(SYNTHETIC, config, home)
    paths = run_paths(SYNTHETIC, home)
    rows = {s: read_split(paths.split(s)) for s in splitting.SPLITS}
    origins = {s: dict(Counter(e.origin for e in rows[s])) for s in splitting.SPLITS}
    if set(origins["train"]) | set(origins["val"]) != {"synthetic"} or set(origins["test"]) != {"qa"}:
        raise SystemExit(f"the synthetic run's splits hold {origins}: expected synthetic train/val rows, qa test rows")
    near_test = splitting.leakage(
        [[e.question, *e.paraphrases] for e in rows["train"] + rows["val"]],
        [[e.question, *e.paraphrases] for e in rows["test"]],
        config.prepare.leakage_threshold,
    )
    if near_test:
        raise SystemExit(f"{len({i for i, _, _ in near_test})} synthetic training question(s) ask a test question")
    return {
        "added": report["added"],
        "paraphrases": report["paraphrases"],
        "held_back_pending": report["held_back_pending"],
        "left_out_for_leakage": len(report["left_out_for_leakage"]),
        "split_origins": origins,
    }


def train(config: Config, home: Path, name: str, steps: int | None) -> dict:
    """Fine-tune run `name`'s adapter; the summary's figures, checked to name the split files it trained on."""
    summary = finetune(name, config, home, max_steps=steps, progress=False)
    paths = run_paths(name, home)
    if summary["data_sha256"] != {s: file_sha256(paths.split(s)) for s in ("train", "val")}:
        raise SystemExit(f"run {name}: the adapter's data hashes differ from its split files")
    return {
        "recipe": summary["recipe"],
        "train_examples": summary["train_examples"],
        "val_examples": summary["val_examples"],
        "steps": summary["steps"],
        "best_step": summary["best_step"],
        "best_val_loss": round(summary["best_val_loss"], 4),
        "wall_s": round(summary["wall_seconds"], 1),
    }


def test_f1(config: Config, home: Path, name: str, variants: list[str], limit: int | None) -> dict[str, dict]:
    """{variant: {QA id: token F1}} of a `workbench eval` of run `name`'s test split, read from the store."""
    result = run_eval(name, config, home, variants=variants, limit=limit, judges=["token_f1"], progress=False)
    with Store.open(home=home) as store:
        judgements = store.judgements(eval_id=result["eval_id"])
    scores: dict[str, dict] = {variant: {} for variant in variants}
    for j in judgements:
        if j["judge"] == "token_f1" and j["score"] is not None:
            scores[j["variant"]][j["qa_id"]] = j["score"]
    return scores


def mean(scores: dict, ids: list[str] | None = None) -> float | None:
    values = [scores[i] for i in (scores if ids is None else ids) if i in scores]
    return round(sum(values) / len(values), 4) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def per_document(summary: dict, splits: dict[str, str]) -> dict:
    return {
        doc_id: {key: row[key] for key in ("facts", "questions", "kept", "paraphrases")} | {"split": splits[doc_id]}
        for doc_id, row in summary["documents"].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--generator", default="local", help="local or remote:NAME of chat.remotes")
    parser.add_argument("--limit-docs", type=int, help="synthesize from the first N documents only")
    parser.add_argument("--per-fact", type=int, default=1)
    parser.add_argument("--paraphrases", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, help="default: the config's max_steps")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--limit", type=int, help="answer only the first N test questions (a quick look)")
    parser.add_argument("--work", type=Path, help="keep the workspace here (made when missing)")
    args = parser.parse_args()
    config = load_config(args.config)
    config.chat.max_new_tokens = args.max_new_tokens
    steps = args.finetune_steps or config.finetune.max_steps
    synth_settings = {"per_fact": args.per_fact, "paraphrases": args.paraphrases, "limit_docs": args.limit_docs}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.work or Path(tmp)
        removed = prepare_runs(config, home)
        timings = {"prepare_s": round(time.perf_counter() - started, 1)}
        summary, reused = synthesize_pairs(config, home, args.generator, synth_settings)
        print(f"synth: kept {summary['totals']['kept']} pairs in {summary['timings']['total']:.0f} s", flush=True)
        applied = apply_and_check(config, home)
        print(f"applied: {applied['added']}", flush=True)
        if not applied["added"]["train"]:
            raise SystemExit("no synthetic pair reached the train split: synthesize from more documents")
        training = {name: train(config, home, name, steps) for name in (SHIPPED, SYNTHETIC)}
        evaluated = time.perf_counter()
        shipped = test_f1(config, home, SHIPPED, ["base", "ft"], args.limit)
        synthetic = test_f1(config, home, SYNTHETIC, ["ft"], args.limit)["ft"]
        timings["eval_s"] = round(time.perf_counter() - evaluated, 1)
        documents = [d.id for d in synth.load_run_documents(SYNTHETIC, home)]
        splits = synth.document_splits(documents, config.prepare)
        trained_docs = {e.doc_id for e in read_split(run_paths(SYNTHETIC, home).split("train"))}
        test = read_split(run_paths(SYNTHETIC, home).split("test"))
    covered = [e.id for e in test if e.gold_doc_ids and set(e.gold_doc_ids) <= trained_docs]
    base, ft_shipped, ft_synthetic = mean(shipped["base"]), mean(shipped["ft"]), mean(synthetic)
    totals = summary["totals"]
    figures = {
        "settings": {
            "generator": summary["generator"],
            **synth_settings,
            "finetune_steps": steps,
            "recipe": config.finetune.recipe,
            "max_new_tokens": args.max_new_tokens,
            "test_questions_limit": args.limit,
            "complete": args.limit_docs is None and args.limit is None and steps == config.finetune.max_steps,
        },
        "documents": totals["documents"],
        "per_document": per_document(summary, splits),
        "kept": totals["kept"],
        "kept_per_document": totals["kept_per_document"],
        "kept_share_of_questions": totals["kept_share_of_questions"],
        "paraphrases": totals["paraphrases"],
        "dropped": totals["dropped"],
        "answers_verbatim": totals["answers"]["verbatim"],
        "answers_key_facts": totals["answers"]["key_facts"],
        "synth_s": summary["timings"]["total"],
        "synth_reused": reused,
        "timings": timings
        | {"synth_s": summary["timings"]["total"]}
        | {f"finetune_{name}_s": row["wall_s"] for name, row in training.items()},
        "shipped_rows_removed": removed,
        "applied": applied,
        "finetune": training,
        "test_questions": len(shipped["base"]),
        "base_test_f1": base,
        "ft_test_f1_shipped": ft_shipped,
        "ft_test_f1_synthetic": ft_synthetic,
        "ft_shipped_over_base": ratio(ft_shipped, base),
        "ft_synthetic_over_base": ratio(ft_synthetic, base),
        "ft_synthetic_over_shipped": ratio(ft_synthetic, ft_shipped),
        "covered": {
            "questions": len([i for i in covered if i in shipped["base"]]),
            "base_test_f1": mean(shipped["base"], covered),
            "ft_test_f1_shipped": mean(shipped["ft"], covered),
            "ft_test_f1_synthetic": mean(synthetic, covered),
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.generator != "local":
        figures = {args.generator: figures}
    record("synth", figures, parts=[args.generator])


if __name__ == "__main__":
    main()
