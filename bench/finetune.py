"""Fine-tuning figures on the demo: training speed against a naive HF Trainer, and answer quality per recipe.

1. Speed. The same train examples (default recipe), the same batch size, steps and learning rate, trained twice
   on the packaged model: with `workbench finetune` (length-grouped batches, loss on the answer only, vocabulary
   projection on labelled positions only) and with a naive `transformers.Trainer` (every example padded to
   `max_length`, loss on every token). `tokens_per_s` counts real (non-padding) tokens per second of training, so
   both rates measure useful work. Both val losses are the mean answer-token loss on the val split.
2. Quality. For each recipe, the demo's default settings with only the recipe changed; token F1 of greedy
   answers on the test split, for the base model and for the best adapter. `demo_wall_s` is the wall time of
   the default recipe's run; `default_recipe_wins` checks that configs/default.yaml names the best recipe.
Usage: python bench/finetune.py [--speed-steps 8] [--recipes qa,qa+docs,paraphrase]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import record

from workbench.config import load_config
from workbench.data.prepare import prepare
from workbench.finetune import finetune, lora_config, perplexity
from workbench.generate import greedy_replies
from workbench.models import fresh_causal_lm, load_causal_lm
from workbench.text_metrics import token_f1
from workbench.train_data import encode, recipe_conversations
from workbench.workspace import read_jsonl, run_paths

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
RECIPES = ("qa", "qa+docs", "paraphrase")


def naive_trainer_run(config, paths, steps: int) -> dict:
    """The textbook recipe: pad every example to max_length, labels are the input ids, HF Trainer runs it."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    settings = config.finetune
    torch.manual_seed(settings.seed)
    base, tokenizer = fresh_causal_lm(config.model.base, config.model.device)
    model = get_peft_model(base, lora_config(settings))
    system = [{"role": "system", "content": settings.system_prompt}]
    texts = [
        tokenizer.apply_chat_template(system + c, tokenize=False)
        for c in recipe_conversations(paths, "train", settings.recipe)
    ]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=settings.max_length)
    dataset = Dataset.from_dict(dict(encoded))
    used = steps * settings.batch_size
    real_tokens = sum(sum(mask) for mask in encoded["attention_mask"][:used])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=settings.batch_size,
            max_steps=steps,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=int(settings.warmup_ratio * steps),
            seed=settings.seed,
            report_to=[],
            save_strategy="no",
            logging_steps=steps,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {"tokens_per_s": real_tokens / seconds, "val_loss": _val_loss(model, tokenizer, paths, settings)}


def ours_run(config, home: Path, steps: int) -> dict:
    summary = finetune("demo", config, home, max_steps=steps, progress=False)
    return {"tokens_per_s": summary["tokens_per_s"], "val_loss": _final_val_loss(run_paths("demo", home))}


def _final_val_loss(paths) -> float:
    import csv

    rows = [row for row in csv.DictReader(paths.metrics.open()) if row["val_loss"]]
    return float(rows[-1]["val_loss"])


def _val_loss(model, tokenizer, paths, settings) -> float:
    val = [
        encode(c, tokenizer, settings.system_prompt, settings.max_length)
        for c in recipe_conversations(paths, "val", settings.recipe)
    ]
    return perplexity(model, val, settings.batch_size, tokenizer.pad_token_id)[0]


def test_f1(model, tokenizer, paths, system_prompt: str, max_new_tokens: int) -> float:
    rows = read_jsonl(paths.split("test"))
    replies = greedy_replies(model, tokenizer, [r["messages"][:-1] for r in rows], system_prompt, max_new_tokens)
    return sum(token_f1(reply, row["answer"]) for reply, row in zip(replies, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--speed-steps", type=int, default=8)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    config = load_config(args.config)
    figures: dict = {"model": config.model.base, "threads": torch.get_num_threads()}

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, config=config, progress=False)
        paths = run_paths("demo", home)

        speed_config = config.model_copy(deep=True)
        speed_config.finetune.eval_every = args.speed_steps
        ours = ours_run(speed_config, home, args.speed_steps)
        naive = naive_trainer_run(speed_config, paths, args.speed_steps)
        figures["speed"] = {
            "steps": args.speed_steps,
            "batch_size": config.finetune.batch_size,
            "ours_tokens_per_s": round(ours["tokens_per_s"], 1),
            "naive_tokens_per_s": round(naive["tokens_per_s"], 1),
            "speedup_vs_naive": round(ours["tokens_per_s"] / naive["tokens_per_s"], 2),
            "ours_val_loss": round(ours["val_loss"], 4),
            "naive_val_loss": round(naive["val_loss"], 4),
        }
        print(figures["speed"], flush=True)

        base, tokenizer = load_causal_lm(config.model.base, config.model.device)
        system = config.finetune.system_prompt
        figures["base_test_f1"] = round(test_f1(base, tokenizer, paths, system, args.max_new_tokens), 4)
        figures["recipes"] = {}
        for recipe in args.recipes.split(","):
            recipe_config = config.model_copy(deep=True)
            recipe_config.finetune.recipe = recipe
            summary = finetune("demo", recipe_config, home, progress=False)
            tuned = PeftModel.from_pretrained(fresh_causal_lm(config.model.base, config.model.device)[0], paths.adapter)
            figures["recipes"][recipe] = {
                "ft_test_f1": round(test_f1(tuned, tokenizer, paths, system, args.max_new_tokens), 4),
                "train_examples": summary["train_examples"],
                "steps": summary["steps"],
                "best_step": summary["best_step"],
                "best_val_loss": round(summary["best_val_loss"], 4),
                "wall_s": round(summary["wall_seconds"], 1),
                "forgetting_change_pct": round(summary["forgetting"]["change_pct"], 2),
            }
            print(recipe, figures["recipes"][recipe], flush=True)
    results = figures["recipes"]
    if config.finetune.recipe in results:
        figures["demo_wall_s"] = results[config.finetune.recipe]["wall_s"]
        figures["ft_test_f1"] = results[config.finetune.recipe]["ft_test_f1"]
        figures["best_recipe"] = max(results, key=lambda r: results[r]["ft_test_f1"])
        figures["default_recipe_wins"] = figures["best_recipe"] == config.finetune.recipe
    figures["speedup_vs_naive"] = figures["speed"]["speedup_vs_naive"]
    record("finetune", figures)


if __name__ == "__main__":
    main()
