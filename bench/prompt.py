"""The prompt-engineering baseline on the demo: does showing the closest training pairs do what fine-tuning does?

The demo run is prepared, indexed and fine-tuned with `configs/default.yaml` (the adapter `make run` trains; or
copied from `--adapter-home`), then `base`, `prompt` (the base model shown `chat.prompt_examples` training pairs
closest to the question, `workbench.fewshot`) and `ft` answer the demo's test questions through
`Engine.answer_batch` (the path eval uses) with the configured decoding, in the same run; `prompt` also with 1 and
5 examples. Figures (`prompt` in bench/results.json): mean token F1 per variant with its share of answers cut at
`max_new_tokens` and mean prompt tokens, `prompt_over_base` and `ft_over_prompt` (F1 ratios), and seconds per
setting (the examples make prompts longer: that is the baseline's cost).
Usage: python bench/prompt.py [--adapter-home DIR (a demo workspace prepared, indexed and trained)] [--limit N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import demo_home, demo_parser
from results_file import record

from workbench.config import load_config
from workbench.engine import Engine
from workbench.records import read_split
from workbench.text_metrics import token_f1
from workbench.variants import Decoding
from workbench.workspace import run_paths

ROOT = Path(__file__).resolve().parent.parent


def figures_of(answers: list, rows: list) -> dict:
    return {
        "token_f1": round(statistics.mean(token_f1(a.text, row.answer) for a, row in zip(answers, rows)), 4),
        "hit_cap": round(sum(a.finish_reason == "length" for a in answers) / len(answers), 3),
        "mean_prompt_tokens": round(statistics.mean(a.tokens_in for a in answers), 1),
    }


def main() -> None:
    args = demo_parser().parse_args()
    config = load_config(ROOT / "configs" / "default.yaml")
    decoding = Decoding.from_config(config.chat)
    shown = config.chat.prompt_examples
    figures: dict = {"examples": shown, "max_new_tokens": decoding.max_new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        demo_home(home, config, args.adapter_home)
        rows = [e for e in read_split(run_paths("demo", home).split("test")) if e.is_question][: args.limit]
        figures["questions"] = len(rows)
        questions = [row.question for row in rows]
        engine = Engine(config, "demo", home)
        started = time.perf_counter()
        answers = engine.answer_batch(questions, ["base", "prompt", "ft"], decoding)
        figures["seconds"] = round(time.perf_counter() - started, 1)
        for name in ("base", "prompt", "ft"):
            figures[name] = figures_of([turn[name] for turn in answers], rows)
            print(name, figures[name], flush=True)
        for count in (1, 5):
            engine.examples.k = count
            started = time.perf_counter()
            given = [turn["prompt"] for turn in engine.answer_batch(questions, ["prompt"], decoding)]
            figures[f"prompt_{count}_examples"] = figures_of(given, rows) | {
                "seconds": round(time.perf_counter() - started, 1)
            }
            print(count, figures[f"prompt_{count}_examples"], flush=True)
    f1 = {name: figures[name]["token_f1"] for name in ("base", "prompt", "ft")}
    figures["prompt_over_base"] = round(f1["prompt"] / f1["base"], 3)
    figures["ft_over_prompt"] = round(f1["ft"] / f1["prompt"], 3)
    record("prompt", figures)


if __name__ == "__main__":
    main()
