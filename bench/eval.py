"""Eval throughput: `workbench eval` against the same answers produced one question at a time, in the same run.

The demo is prepared, indexed and fine-tuned with `configs/default.yaml` (or copied from `--adapter-home`); one
`Engine` serves both sides, so model loading is left out of both. The baseline answers each test question with
the four variants through `Engine.answer` (an arena turn each, one after another). Eval is `run_eval` as the CLI
runs it with its default workers: every (question, variant) row batched, and each answer scored (reference judges
and the hallucination detector) and stored. Figures:
- `eval_over_one_by_one`: answers/s of eval (answering, scoring and storing) over the baseline's (answering only);
- `answering_over_one_by_one`: the same for `Engine.answers` alone (no scoring), with the same workers;
- `identical_texts`: every eval answer's text equals the baseline's for that question and variant;
- `scoring_s_per_answer`: what scoring and storing add per answer.
Usage: python bench/eval.py [--adapter-home DIR] [--limit N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import demo_home, demo_parser
from results_file import record

from workbench.config import load_config
from workbench.engine import DECODE_ROWS, Engine, batch_workers
from workbench.eval import run_eval
from workbench.eval.runner import load_questions
from workbench.store import Store

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ["base", "ft", "rag", "ft_rag"]


def main() -> None:
    args = demo_parser().parse_args()
    config = load_config(ROOT / "configs" / "default.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        demo_home(home, config, args.adapter_home)
        (home / "workbench.db").unlink(missing_ok=True)
        questions = load_questions("demo", "test", home, args.limit)
        engine = Engine(config, "demo", home)
        engine.answer(questions[0].question, VARIANTS)  # warm up both sides alike

        started = time.perf_counter()
        alone = {q.id: engine.answer(q.question, VARIANTS) for q in questions}
        one_by_one_s = time.perf_counter() - started
        print(f"one question at a time: {one_by_one_s:.1f} s", flush=True)

        started = time.perf_counter()
        batched = list(engine.answers([(q.question, v) for q in questions for v in VARIANTS], workers=batch_workers()))
        answering_s = time.perf_counter() - started
        print(f"answers batched: {answering_s:.1f} s", flush=True)

        started = time.perf_counter()
        result = run_eval("demo", config, home, variants=VARIANTS, limit=args.limit, engine=engine, progress=False)
        eval_s = time.perf_counter() - started
        print(f"workbench eval: {eval_s:.1f} s", flush=True)
        with Store.open(home=home) as store:
            stored = store.answers(eval_id=result["eval_id"])

    count = len(questions) * len(VARIANTS)
    expected = {(q_id, v): answers[v].text for q_id, answers in alone.items() for v in VARIANTS}
    got = [((a["qa_id"], a["variant"]), a["text"]) for a in stored]
    got += [((questions[i // len(VARIANTS)].id, a.variant), a.text) for i, a in batched]
    different = sorted({key for key, text in got if text != expected[key]})
    figures = {
        "questions": len(questions),
        "variants": VARIANTS,
        "answers": count,
        "workers": batch_workers(),
        "decode_rows": DECODE_ROWS,
        "max_new_tokens": config.chat.max_new_tokens,
        "one_by_one_s": round(one_by_one_s, 1),
        "answering_s": round(answering_s, 1),
        "eval_s": round(eval_s, 1),
        "one_by_one_answers_per_s": round(count / one_by_one_s, 3),
        "eval_answers_per_s": round(count / eval_s, 3),
        "eval_over_one_by_one": round(one_by_one_s / eval_s, 2),
        "answering_over_one_by_one": round(one_by_one_s / answering_s, 2),
        "scoring_s_per_answer": round(max(eval_s - answering_s, 0.0) / count, 3),
        "stored": len(stored),
        "identical_texts": not different and len(stored) == count,
        "different_texts": different[:10],
    }
    record("eval", figures)


if __name__ == "__main__":
    main()
