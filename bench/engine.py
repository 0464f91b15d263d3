"""Side-by-side engine figures on the packaged model: one batched 4-variant turn against each variant alone.

Every measurement uses the same question, the demo index (the RAG rows carry their real retrieved sources) and a
LoRA adapter of the default shape (rank and target modules from the config; random weights, which cost the same
as trained ones), and every row generates exactly `--tokens` new tokens (end of sequence suppressed until then).
- `four_way_over_single`: wall time of one turn with base, ft, rag and ft_rag in one batch / the mean wall time
  of the same four variants each generated alone (goal <= 1.3); `sequential_over_batched`: the four alone one
  after another / the batched turn.
- `peft_four_over_single`: the same ratio for peft's own mixed-adapter batch (`generate(adapter_names=...)`,
  left-padded prompts), the baseline, measured in the same run.
- `rss_four_over_one`: peak RSS of a process serving the four variants (model, adapter, index, embedder) through
  one turn / a process serving the base model alone through one turn (goal <= 1.15).
- `tokens_per_s` of the batched turn (all rows), and each variant's time to first token in it.
- The engine's fixed single thread (`engine.ENGINE_THREADS`), the same 4-way turn against itself on an idle machine
  (`load_idle_s`, measured just before):
  `turn_under_load_over_idle` while another CPU-bound job runs beside (a torch
  process decoding with all cores, `results_file.NEIGHBOUR_JOB`) (goal <= 2.5), next to
  `fixed_threads_under_load_over_idle`, the same with torch's default thread count (the baseline; a 32-token
  turn against the same turn idle, since it runs tens of times slower);
  `turn_during_training_over_idle` while the demo adapter trains in the background exactly as `make run` starts
  it (`TrainingJob`, a niced child process), measured once its first step has ended (goal <= 1.5).
Usage: python bench/engine.py [--tokens 128 (chat.max_new_tokens)] [--repeats 2] [--parts turn,load,memory]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from peft import PeftModel, get_peft_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import NEIGHBOUR_JOB, record

from workbench.config import Config, load_config
from workbench.data.prepare import prepare
from workbench.engine import Engine
from workbench.finetune import lora_config
from workbench.models import fresh_causal_lm
from workbench.retrieval.index import build_index
from workbench.training_job import training_job
from workbench.variants import Decoding
from workbench.workspace import run_paths

DEMO = Path(__file__).resolve().parent.parent / "demo"
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
QUESTION = "How long is the return window for the Skylark S3 Pro, and who pays for the return shipping?"
VARIANTS = ["base", "ft", "rag", "ft_rag"]
BASELINE_THREADS = torch.get_num_threads()  # torch's default: one per core


def make_home(home: Path, config: Config) -> None:
    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, config=config, progress=False)
    build_index("demo", config, home, progress=False)
    torch.manual_seed(0)
    base, _ = fresh_causal_lm(config.model.base, config.model.device)
    get_peft_model(base, lora_config(config.finetune)).save_pretrained(run_paths("demo", home).adapter)


def timed(call, repeats: int) -> float:
    """Median wall seconds of `call()` after one warm-up run."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peft_baseline(engine: Engine, home: Path, decoding: Decoding, repeats: int) -> dict:
    """peft's mixed-adapter batch through `generate`, with the engine's own prompts."""
    model = PeftModel.from_pretrained(fresh_causal_lm(engine.config.model.base)[0], run_paths("demo", home).adapter)
    tokenizer = engine.tokenizer
    prompts = {a.variant: a.prompt for a in engine.answer(QUESTION, VARIANTS, decoding=decoding).values()}
    adapter_of = {"base": "__base__", "ft": "default", "rag": "__base__", "ft_rag": "default"}

    def generate(names: list[str]) -> None:
        texts = [tokenizer.apply_chat_template(prompts[n], add_generation_prompt=True, tokenize=False) for n in names]
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            model.generate(
                **batch,
                adapter_names=[adapter_of[n] for n in names],
                max_new_tokens=decoding.max_new_tokens,
                min_new_tokens=decoding.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )

    batched = timed(lambda: generate(VARIANTS), repeats)
    alone = [timed(lambda n=n: generate([n]), repeats) for n in VARIANTS]
    return {"batched_s": batched, "alone_s": alone, "four_over_single": batched / statistics.mean(alone)}


def peak_rss_mb(home: Path, variants: list[str], tokens: int) -> float:
    """Peak RSS (VmHWM) of a fresh process that loads an engine for `variants` and answers one turn with them.

    Not `ru_maxrss`: a child started by fork and exec inherits the parent's maximum.
    """
    code = (
        "import json, sys\n"
        "from workbench.config import Config\n"
        "from workbench.engine import Engine\n"
        "from workbench.variants import Decoding\n"
        "variants, home, tokens = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
        "name = None if variants == ['base'] else 'demo'\n"
        "engine = Engine(Config(), name, home)\n"
        "engine.answer(sys.argv[4], variants, decoding=Decoding(max_new_tokens=tokens, min_new_tokens=tokens))\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(variants), str(home), str(tokens), QUESTION],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def turn_figures(engine: Engine, home: Path, decoding: Decoding, repeats: int) -> dict:
    answers = engine.answer(QUESTION, VARIANTS, decoding=decoding)
    batched = timed(lambda: engine.answer(QUESTION, VARIANTS, decoding=decoding), repeats)
    alone = {n: timed(lambda n=n: engine.answer(QUESTION, [n], decoding=decoding), repeats) for n in VARIANTS}
    figures = {
        "prompt_tokens": {name: a.tokens_in for name, a in answers.items()},
        "ttft_s": {name: round(a.ttft_s, 3) for name, a in answers.items()},
        "batched_s": round(batched, 3),
        "alone_s": {n: round(s, 3) for n, s in alone.items()},
        "four_way_over_single": round(batched / statistics.mean(alone.values()), 3),
        "sequential_over_batched": round(sum(alone.values()) / batched, 3),
        "tokens_per_s": round(len(VARIANTS) * decoding.max_new_tokens / batched, 1),
    }
    print({k: figures[k] for k in ("batched_s", "alone_s", "four_way_over_single")}, flush=True)
    peft = peft_baseline(engine, home, decoding, repeats)
    figures["peft_four_over_single"] = round(peft["four_over_single"], 3)
    figures["peft_batched_s"] = round(peft["batched_s"], 3)
    return figures


def contention_figures(engine: Engine, home: Path, decoding: Decoding, repeats: int, idle_s: float) -> dict:
    """The batched turn under another process's load and while the demo adapter trains (see the docstring)."""

    def turn() -> None:
        engine.answer(QUESTION, VARIANTS, decoding=decoding)

    figures = {}
    short = dataclasses.replace(decoding, max_new_tokens=32, min_new_tokens=32)  # the baseline is very slow
    idle_short = timed(lambda: engine.answer(QUESTION, VARIANTS, decoding=short), repeats)
    hog = subprocess.Popen([sys.executable, "-c", NEIGHBOUR_JOB])
    try:
        time.sleep(2)
        loaded = timed(turn, repeats)
        loaded_short = timed(lambda: engine.answer(QUESTION, VARIANTS, decoding=short), 1)
        with mock.patch("workbench.engine.ENGINE_THREADS", BASELINE_THREADS):
            started = time.perf_counter()
            engine.answer(QUESTION, VARIANTS, decoding=short)  # once
            fixed = time.perf_counter() - started
    finally:
        hog.kill()
        hog.wait()
    figures["under_load_s"] = round(loaded, 3)
    figures["turn_under_load_over_idle"] = round(loaded / idle_s, 3)
    figures["short_turn"] = {
        "new_tokens": short.max_new_tokens,
        "idle_s": round(idle_short, 3),
        "under_load_s": round(loaded_short, 3),
        "fixed_threads_under_load_s": round(fixed, 3),
        "fixed_threads_under_load_over_idle": round(fixed / idle_short, 3),
    }
    figures["turn_under_load_over_idle_short"] = round(loaded_short / idle_short, 3)
    figures["fixed_threads_under_load_over_idle"] = figures["short_turn"]["fixed_threads_under_load_over_idle"]
    print({k: figures[k] for k in ("turn_under_load_over_idle", "fixed_threads_under_load_over_idle")}, flush=True)

    job = training_job("demo", home)
    job.start(load_config(DEMO_CONFIG), resume=False)
    try:
        while job.status().state == "running" and not job.status().step:
            time.sleep(1)
        if job.status().state != "running":
            raise SystemExit(f"the demo training did not run: {job.status().error}")
        during = timed(turn, repeats)
        figures["training_steps_during_turns"] = job.status().step
    finally:
        job.stop()
        job.wait(300)
    figures["during_training_s"] = round(during, 3)
    figures["turn_during_training_over_idle"] = round(during / idle_s, 3)
    print({"turn_during_training_over_idle": figures["turn_during_training_over_idle"]}, flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=Config().chat.max_new_tokens, help="new tokens per answer")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="turn,load,memory", help="parts not run keep their earlier figures")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    config = Config()
    decoding = Decoding(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    figures: dict = {"model": config.model.base, "threads": torch.get_num_threads(), "new_tokens": args.tokens}

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        make_home(home, config)
        engine = Engine(config, "demo", home)
        if "turn" in parts:
            figures |= turn_figures(engine, home, decoding, args.repeats)
        if "load" in parts:
            idle = timed(lambda: engine.answer(QUESTION, VARIANTS, decoding=decoding), args.repeats)
            figures |= {"load_idle_s": round(idle, 3)} | contention_figures(engine, home, decoding, args.repeats, idle)
        if "memory" in parts:
            one = peak_rss_mb(home, ["base"], args.tokens)
            four = peak_rss_mb(home, VARIANTS, args.tokens)
            figures["peak_rss_mb"] = {"base_alone": round(one), "four_variants": round(four)}
            figures["rss_four_over_one"] = round(four / one, 3)
    figures["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    record("engine", figures, parts=sorted(parts))


if __name__ == "__main__":
    main()
