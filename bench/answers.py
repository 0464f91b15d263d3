"""Answer quality on the demo under the shared decoding settings: token F1 per variant and how answers end.

The demo run is prepared, indexed and fine-tuned with `configs/default.yaml` (the adapter `make run` trains), then
every variant answers the demo's test questions through `Engine.answer_batch` (the path eval uses; each answer is
the one the arena gives alone) under each setting, in the same run:
- `before`: no repetition penalty, no stop at a repeated sentence, and the earlier RAG instruction (the
  baseline, as the engine decoded before these settings existed);
- `after`: the configured defaults (`chat.stop_on_repeat` on, `variants.SOURCES_INSTRUCTION`; no repetition
  penalty, see the next line);
- `after_penalty_1.2`: the defaults with `chat.repetition_penalty` 1.2, which a 12-question trial showed hurting
  the RAG columns (they quote their sources) and so is off by default.
Figures: mean token F1 per variant, `hit_cap` (share of answers cut at `max_new_tokens`), `ended_on_repeat`,
mean answer tokens, and `after_over_before` of the mean F1 over variants.
Usage: python bench/answers.py [--adapter-home DIR (reuse a trained demo workspace)] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench import variants as prompts
from workbench.config import load_config
from workbench.data.prepare import prepare
from workbench.engine import Engine
from workbench.finetune import finetune
from workbench.records import Example, read_split
from workbench.retrieval.index import build_index
from workbench.text_metrics import token_f1
from workbench.variants import Decoding
from workbench.workspace import run_paths

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ["base", "ft", "rag", "ft_rag"]
EARLIER_INSTRUCTION = (
    "Answer the question using only the numbered sources above, and cite the sources you use like [1]. "
    "If the sources do not contain the answer, say that they do not."
)


def demo_home(home: Path, config, reuse: Path | None) -> None:
    """The demo prepared, indexed and fine-tuned as `make run` does (or copied from `reuse`)."""
    if reuse is not None:
        shutil.copytree(reuse, home, dirs_exist_ok=True)
        return
    prepare("demo", [ROOT / "demo" / "corpus"], ROOT / "demo" / "qa.jsonl", config=config, home=home, progress=False)
    build_index("demo", config, home, progress=False)
    finetune("demo", config, home, progress=False)


def demo_parser() -> argparse.ArgumentParser:
    """The options of the benches that answer the demo's test questions: a trained workspace to reuse, a limit."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter-home", type=Path, help="a workspace with the demo prepared, indexed and trained")
    parser.add_argument("--limit", type=int, help="only the first N test questions")
    return parser


def measure(engine: Engine, rows: list[Example], decoding: Decoding, instruction: str) -> dict:
    prompts.SOURCES_INSTRUCTION = instruction
    started = time.perf_counter()
    answers = engine.answer_batch([row.question for row in rows], VARIANTS, decoding)
    seconds = time.perf_counter() - started
    figures: dict = {"seconds": round(seconds, 1)}
    for name in VARIANTS:
        given = [turn[name] for turn in answers]
        figures[name] = {
            "token_f1": round(statistics.mean(token_f1(a.text, row.answer) for a, row in zip(given, rows)), 4),
            "hit_cap": round(sum(a.finish_reason == "length" for a in given) / len(given), 3),
            "ended_on_repeat": round(sum(a.finish_reason == "repeat" for a in given) / len(given), 3),
            "mean_tokens": round(statistics.mean(a.tokens_out for a in given), 1),
        }
    figures["mean_token_f1"] = round(statistics.mean(figures[n]["token_f1"] for n in VARIANTS), 4)
    figures["mean_hit_cap"] = round(statistics.mean(figures[n]["hit_cap"] for n in VARIANTS), 3)
    print({k: v for k, v in figures.items() if not isinstance(v, dict)}, flush=True)
    return figures


def main() -> None:
    args = demo_parser().parse_args()
    config = load_config(ROOT / "configs" / "default.yaml")
    new_instruction = prompts.SOURCES_INSTRUCTION
    after = Decoding.from_config(config.chat)
    before = dataclasses.replace(after, repetition_penalty=1.0, stop_on_repeat=False)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        demo_home(home, config, args.adapter_home)
        rows = [e for e in read_split(run_paths("demo", home).split("test")) if e.is_question][: args.limit]
        engine = Engine(config, "demo", home)
        settings = {
            "before": (before, EARLIER_INSTRUCTION),
            "after": (after, new_instruction),
            "after_penalty_1.2": (dataclasses.replace(after, repetition_penalty=1.2), new_instruction),
        }
        figures: dict = {"questions": len(rows), "max_new_tokens": after.max_new_tokens}
        figures["settings"] = {
            name: {
                "repetition_penalty": d.repetition_penalty,
                "stop_on_repeat": d.stop_on_repeat,
                "new_instruction": text == new_instruction,
            }
            for name, (d, text) in settings.items()
        }
        for name, (decoding, instruction) in settings.items():
            figures[name] = measure(engine, rows, decoding, instruction)
    prompts.SOURCES_INSTRUCTION = new_instruction
    figures["after_over_before_f1"] = round(figures["after"]["mean_token_f1"] / figures["before"]["mean_token_f1"], 3)
    record("answers", figures)


if __name__ == "__main__":
    main()
