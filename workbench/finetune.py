"""`workbench finetune`: train a LoRA adapter on a prepared run, watching it as it trains.

Writes into `runs/NAME/`: `adapter/` (standard PEFT files, the best step by val loss), `metrics.csv` (one row per
step; val columns on evaluation steps), `events.jsonl` (best, spike, overfit, early_stop, stopped, forgetting),
`checkpoint/` (adapter, optimizer, scheduler, RNG and data position, for `--resume`) and the `finetune` section
of `manifest.json`. A checkpoint and the adapter are swapped in whole, so a kill never leaves half of one.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from workbench import __version__
from workbench.config import Config, FinetuneConfig
from workbench.data.loaders import BadInputError
from workbench.models import fresh_causal_lm, resolve
from workbench.parallel import SOLO, Group, join
from workbench.threads import use_free_cores
from workbench.train_data import (
    IGNORE,
    Encoded,
    collate,
    encode,
    length_grouped_batches,
    length_pieces,
    masked_lm_loss,
    raft_conversations,
    recipe_conversations,
)
from workbench.train_monitor import Event, Monitor
from workbench.workspace import (
    DEFAULT_ADAPTER,
    RAFT_ADAPTER,
    RunPaths,
    cached_file_sha256,
    file_sha256,
    machine,
    package_versions,
    replace_folder,
    run_paths,
    write_json_atomic,
)

METRIC_COLUMNS = ["step", "train_loss", "val_loss", "val_perplexity", "lr", "tokens_per_s", "elapsed_s"]
DEFAULT_GENERAL_TEXT = Path(__file__).resolve().parent.parent / "demo" / "general.txt"


def lora_config(settings: FinetuneConfig) -> LoraConfig:
    """The one place where our config becomes a `peft.LoraConfig`."""
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.target_modules),
    )


def steps_per_epoch(train_examples: int, settings: FinetuneConfig) -> int:
    return max(1, math.ceil(train_examples / settings.batch_size) // settings.gradient_accumulation)


def planned_steps(train_examples: int, settings: FinetuneConfig, max_steps: int | None = None) -> int:
    """The optimizer steps a run aims for: `max_steps`, else the config's, else epochs x steps per epoch."""
    if max_steps or settings.max_steps:
        return max_steps or settings.max_steps
    return math.ceil(settings.epochs * steps_per_epoch(train_examples, settings))


def perplexity(model, items: list[Encoded], batch_size: int, pad_id: int, group: Group = SOLO) -> tuple[float, float]:
    """(mean loss per labelled token, perplexity) over encoded items, in eval mode without gradients; a group of
    processes splits the items and adds up the sums. Batches hold items of similar length (the sums don't depend
    on the order), so little goes to padding."""
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    items = sorted(group.share(items), key=lambda item: len(item.input_ids))
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = {k: v.to(model.device) for k, v in collate(items[start : start + batch_size], pad_id).items()}
            tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
            total_loss += float(masked_lm_loss(model, batch)) * tokens
            total_tokens += tokens
    model.train(was_training)
    total_loss, total_tokens = group.sum([total_loss, total_tokens])
    loss = total_loss / max(1, total_tokens)
    return loss, math.exp(min(loss, 50))


def text_windows(text: str, tokenizer, window: int = 512) -> list[Encoded]:
    """A long text as consecutive token windows, every token labelled: for perplexity of plain prose."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [Encoded(ids[i : i + window], ids[i : i + window]) for i in range(0, len(ids), window)]


class _Checkpoint:
    """Resumable training state in `runs/NAME/checkpoint/`: adapter weights plus `state.pt` (tensors and plain data)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, model, optimizer, scheduler, state: dict) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=self.folder.parent))
        model.save_pretrained(staging / "adapter")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": list(random.getstate()[1]),
                "state": json.dumps(state),
            },
            staging / "state.pt",
        )
        replace_folder(staging, self.folder)

    def load(self, model, optimizer, scheduler) -> dict:
        saved = torch.load(self.folder / "state.pt", weights_only=True)
        set_peft_model_state_dict(model, load_file(self.folder / "adapter" / "adapter_model.safetensors"))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        random.setstate((3, tuple(saved["python_rng"]), None))
        return json.loads(saved["state"])


class _Log:
    """metrics.csv and events.jsonl, appended as training runs; on resume, rows after the checkpoint are dropped.
    With `tensorboard` installed, the same curves and events also go to TensorBoard event files in `tensorboard/`
    beside them, for teams that track experiments there."""

    def __init__(self, paths: RunPaths, resume_step: int | None, writes: bool = True) -> None:
        self.metrics, self.events, self.writes = paths.metrics, paths.events, writes
        self.board = None
        if not writes:  # another process of a data-parallel run writes the files
            return
        self.board = _tensorboard(paths.tensorboard, None if resume_step is None else resume_step + 1)
        if resume_step is None:
            self.metrics.write_text(",".join(METRIC_COLUMNS) + "\n")
            self.events.write_text("")
        else:
            rows = list(csv.DictReader(self.metrics.open())) if self.metrics.exists() else []
            kept = [row for row in rows if int(row["step"]) <= resume_step]
            with self.metrics.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, METRIC_COLUMNS)
                writer.writeheader()
                writer.writerows(kept)
            events = [json.loads(line) for line in self.events.read_text().splitlines()] if self.events.exists() else []
            self.events.write_text("".join(json.dumps(e) + "\n" for e in events if e["step"] <= resume_step))

    def metric(self, **row) -> None:
        if not self.writes:
            return
        with self.metrics.open("a", newline="") as fh:
            csv.DictWriter(fh, METRIC_COLUMNS).writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
        if self.board is not None:
            for column, tag in BOARD_TAGS.items():
                if row.get(column) is not None:
                    self.board.add_scalar(tag, row[column], row["step"])

    def event(self, event: Event, bar=None) -> None:
        if not self.writes:
            return
        with self.events.open("a") as fh:
            fh.write(json.dumps(event.to_dict()) + "\n")
        if self.board is not None:
            self.board.add_text(f"events/{event.kind}", event.message, event.step)
        if event.kind != "best":
            (bar.write if bar is not None else print)(f"[{event.kind}] {event.message}")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


BOARD_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "val_perplexity": "perplexity/val",
    "lr": "learning_rate",
    "tokens_per_s": "tokens_per_s",
}
"""metrics.csv columns and their TensorBoard tags."""


def _tensorboard(folder: Path, purge_step: int | None):
    """A TensorBoard writer into `folder` (a resumed run drops the events after its checkpoint), or None when
    `tensorboard` is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    if purge_step is None:
        shutil.rmtree(folder, ignore_errors=True)  # a new run: the last run's curves would mix with these
    return SummaryWriter(str(folder), purge_step=purge_step)


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def finetune(
    name: str,
    config: Config | None = None,
    home: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    stop: threading.Event | None = None,
    progress: bool = True,
    adapter: str | None = None,
) -> dict:
    """Train (or resume) adapter `adapter` of run `name` (default: `default`, or `raft` for the raft recipe) into
    `runs/NAME/adapters/ADAPTER/`; returns what its manifest records.

    Started by `torchrun` or `accelerate launch`, the processes train one adapter data-parallel (`parallel`).
    """
    config = config or Config()
    settings = config.finetune
    raft = settings.recipe == "raft"
    group = join()  # before anything lands on a GPU: each process takes its own
    paths = run_paths(name, home, adapter or (RAFT_ADAPTER if raft else DEFAULT_ADAPTER))
    if not paths.split("train").exists():
        raise BadInputError(
            f"{paths.root}: no prepared data; run `workbench prepare --name {name} --corpus PATH --qa PATH` first"
        )
    if not paths.split("train").read_text(encoding="utf-8").strip():  # before a model loads, not an IndexError after
        raise BadInputError(
            f"run {name!r}: {paths.split('train')} has no training examples; add a QA set (--qa) or more documents "
            f"with body text and re-run `workbench prepare --name {name} --corpus PATH --qa PATH`"
        )
    retriever = _raft_retriever(name, config, home) if raft else None
    paths.adapter.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = _Checkpoint(paths.checkpoint)
    if resume and not (checkpoint.folder / "state.pt").exists():
        raise BadInputError(f"{checkpoint.folder}: no checkpoint to resume from; run without --resume")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)

    base, tokenizer = fresh_causal_lm(config.model.base, config.model.device)
    model = get_peft_model(base, lora_config(settings))

    def encode_all(split: str) -> list:
        conversations = (
            raft_conversations(paths, split, retriever, settings)
            if raft
            else recipe_conversations(paths, split, settings.recipe, config.prepare.passage_words)
        )
        return [encode(c, tokenizer, settings.system_prompt, settings.max_length) for c in conversations]

    train = encode_all("train")
    val = encode_all("val") or train[:32]
    replayed, probe_windows = _general_text(settings, tokenizer)
    replay = _replay_examples(replayed, len(train), settings)
    train += replay
    cut = sum(all(label == IGNORE for label in item.labels) for item in train + val)
    if cut:
        raise BadInputError(
            f"finetune.max_length={settings.max_length}: {cut} example(s) lose their whole answer to truncation; "
            "raise max_length (the raft recipe's prompts with sources need about 1024)"
        )
    lengths = [len(item.input_ids) for item in train]
    total_steps = planned_steps(len(train), settings, max_steps)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    monitor = Monitor(settings.spike_factor, settings.spike_window, settings.overfit_evals, settings.patience)
    state = {"step": 0, "epoch": 0, "batch": 0, "elapsed": 0.0, "step_seconds": 0.0, "tokens": 0, "outcome": None}
    if resume:
        state = checkpoint.load(model, optimizer, scheduler)
        if state["outcome"] == "stopped":  # a stop request ends a session, not the run
            state["outcome"] = None
        for key, value in state.pop("monitor").items():
            setattr(monitor, key, [tuple(e) for e in value] if key == "evals" else value)
    log = _Log(paths, state["step"] if resume else None, writes=group.main)
    pad_id = tokenizer.pad_token_id

    def save_checkpoint() -> None:
        if group.main:
            checkpoint.save(model, optimizer, scheduler, state | {"monitor": monitor.state()})

    def save_best() -> None:
        if not group.main:
            return
        staging = Path(tempfile.mkdtemp(prefix=".adapter.", dir=paths.adapter.parent))
        model.save_pretrained(staging)
        replace_folder(staging, paths.adapter)

    bar = tqdm(
        total=total_steps, initial=state["step"], desc="finetune", unit="step", disable=not progress or not group.main
    )
    model.train()
    session_start = time.perf_counter() - state["elapsed"]
    try:
        order = length_grouped_batches(
            lengths, settings.batch_size, settings.seed + state["epoch"], settings.length_window
        )
        while state["step"] < total_steps and state["outcome"] is None:
            use_free_cores()
            step_start, step_losses, step_tokens = time.perf_counter(), [], 0
            for _ in range(settings.gradient_accumulation):
                if state["batch"] >= len(order):
                    state["epoch"], state["batch"] = state["epoch"] + 1, 0
                    order = length_grouped_batches(
                        lengths, settings.batch_size, settings.seed + state["epoch"], settings.length_window
                    )
                items = [train[i] for i in order[state["batch"]]]
                state["batch"] += 1
                step_tokens += sum(len(item.input_ids) for item in items)
                step_losses.append(_share_backward(model, items, group, pad_id, settings.gradient_accumulation))
            group.sum_gradients(trainable)
            step_losses = group.sum(step_losses)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds = time.perf_counter() - step_start
            state["step"] += 1
            state["tokens"] += step_tokens
            state["step_seconds"] += step_seconds
            step, train_loss = state["step"], sum(step_losses) / len(step_losses)
            lr = scheduler.get_last_lr()[0]
            for event in monitor.on_train_loss(step, train_loss, lr):
                log.event(event, bar)
            row = {
                "step": step,
                "train_loss": train_loss,
                "lr": lr,
                "tokens_per_s": step_tokens / step_seconds,
            }
            if step % settings.eval_every == 0 or step == total_steps:
                val_loss, val_ppl = perplexity(model, val, settings.batch_size, pad_id, group)
                row |= {"val_loss": val_loss, "val_perplexity": val_ppl}
                events, is_best, should_stop = monitor.on_eval(step, val_loss)
                if is_best:
                    save_best()
                for event in events:
                    log.event(event, bar)
                if should_stop:
                    state["outcome"] = "early_stop"
            state["elapsed"] = time.perf_counter() - session_start
            log.metric(**row, elapsed_s=state["elapsed"])
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}")
            if group.any(stop is not None and stop.is_set()) and state["outcome"] is None:
                state["outcome"] = "stopped"
                log.event(Event(step, "stopped", f"stop requested; ended cleanly after step {step}"), bar)
            if step % settings.checkpoint_every == 0 or state["outcome"] or step == total_steps:
                save_checkpoint()
    finally:
        bar.close()
    if monitor.best_step is None:  # stopped before the first evaluation: evaluate what we have
        val_loss, _ = perplexity(model, val, settings.batch_size, pad_id, group)
        monitor.on_eval(state["step"], val_loss)
        save_best()
    state["outcome"] = state["outcome"] or "completed"

    forgetting = (
        _forgetting_probe(model, tokenizer, paths.adapter, probe_windows, settings, log, state["step"])
        if group.main
        else None
    )
    log.close()
    summary = {
        "adapter": paths.adapter_name,
        "base_model": config.model.base,
        "base_model_sha256": _weights_hash(config.model.base),
        "recipe": settings.recipe,
        "config": config.finetune.model_dump(mode="json"),
        "data_sha256": {s: file_sha256(paths.split(s)) for s in ("train", "val")},
        "train_examples": len(train) - len(replay),
        "replay": {"share": settings.replay_share, "examples": len(replay), "text": settings.replay_text}
        if replay
        else None,
        "val_examples": len(val),
        "trainable_params": sum(p.numel() for p in trainable),
        "total_params": sum(p.numel() for p in model.parameters()),
        "steps": state["step"],
        "total_steps": total_steps,
        "epochs": round(state["step"] / steps_per_epoch(len(train), settings), 3),
        "outcome": state["outcome"],
        "best_step": monitor.best_step,
        "best_val_loss": monitor.best_val,
        "best_val_perplexity": math.exp(min(monitor.best_val, 50)),
        "final_train_loss": monitor.train_losses[-1] if monitor.train_losses else None,
        "tokens_per_s": state["tokens"] / max(state["step_seconds"], 1e-9),  # training steps only, no evaluation
        "step_seconds": state["step_seconds"],
        "train_seconds": state["elapsed"],
        "wall_seconds": time.perf_counter() - started,
        "forgetting": forgetting,
        "machine": machine(model.device),
        "versions": package_versions("torch", "transformers", "peft") | {"workbench": __version__},
    }
    if group.main:
        write_json_atomic(paths.adapter_manifest, summary)
    return summary


def _share_backward(model, items: list[Encoded], group: Group, pad_id: int, accumulation: int) -> float:
    """Backward passes on this process's share of a batch, in pieces of similar length (`length_pieces`), each
    piece's loss weighted by its share of the batch's answer tokens (summed over pieces and processes, the weighted
    losses are the batch's mean loss); returns this process's weighted loss."""
    batch_tokens = sum(_labelled(item) for item in items)
    mine = group.share(items)
    total = 0.0
    for piece in length_pieces([len(item.input_ids) for item in mine]):
        chosen = [mine[i] for i in piece]
        weight = sum(_labelled(item) for item in chosen) / batch_tokens
        batch = {k: v.to(model.device) for k, v in collate(chosen, pad_id).items()}
        loss = masked_lm_loss(model, batch) * weight
        (loss / accumulation).backward()
        total += loss.item()
    return total


def _labelled(item: Encoded) -> int:
    """Positions the loss is taken on (the first token predicts nothing)."""
    return sum(label != IGNORE for label in item.labels[1:])


def _raft_retriever(name: str, config: Config, home):
    from workbench.retrieval.index import Retriever
    from workbench.workspace import index_paths

    if not index_paths(name, home).manifest.exists():
        raise BadInputError(f"the raft recipe shows retrieved sources: run `workbench index --name {name}` first")
    return Retriever.load(name, config, home)


def _general_text(settings: FinetuneConfig, tokenizer) -> tuple[list[Encoded], tuple[str, list[Encoded]] | None]:
    """(windows to replay, (probe's source, windows to probe)). Without its own `replay_text`, replay takes the first
    half of the probe's text and the probe the second half, so the probe never measures what was replayed."""
    source = Path(settings.general_text) if settings.general_text else DEFAULT_GENERAL_TEXT
    windows = text_windows(source.read_text(encoding="utf-8"), tokenizer) if source.is_file() else []
    probe = (str(source), windows) if windows else None
    if not settings.replay_share:
        return [], probe
    if settings.replay_text:
        own = Path(settings.replay_text)
        if not own.is_file():
            raise BadInputError(f"finetune.replay_text: {own} is not a file; name a text file of general prose")
        return text_windows(own.read_text(encoding="utf-8"), tokenizer, settings.max_length), probe
    if len(windows) < 2:
        raise BadInputError(
            f"finetune.replay_share: {source} is too short to share between replay and the forgetting probe; "
            "name general prose with finetune.replay_text"
        )
    half = len(windows) // 2
    ids = [token for w in windows[:half] for token in w.input_ids]
    replayed = [
        Encoded(ids[i : i + settings.max_length], ids[i : i + settings.max_length])
        for i in range(0, len(ids), settings.max_length)
    ]
    return replayed, (f"{source} (second half)", windows[half:])


def replay_count(examples: int, settings: FinetuneConfig) -> int:
    """General-text windows added to `examples` training examples so they make `replay_share` of the whole."""
    return round(settings.replay_share / (1 - settings.replay_share) * examples)


def _replay_examples(windows: list[Encoded], examples: int, settings: FinetuneConfig) -> list[Encoded]:
    """`replay_count` general-text windows, repeated in turn."""
    return [windows[i % len(windows)] for i in range(replay_count(examples, settings))] if windows else []


def _forgetting_probe(
    model,
    tokenizer,
    adapter: Path,
    probe: tuple[str, list[Encoded]] | None,
    settings: FinetuneConfig,
    log: _Log,
    step: int,
) -> dict | None:
    """Perplexity on general prose with and without the best adapter; a warning event past the threshold."""
    if probe is None:
        return None
    source, windows = probe
    set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
    _, tuned = perplexity(model, windows, 4, tokenizer.pad_token_id)
    with model.disable_adapter():
        _, base = perplexity(model, windows, 4, tokenizer.pad_token_id)
    change = 100 * (tuned - base) / base
    if change > settings.forgetting_warn_pct:
        log.event(
            Event(
                step,
                "forgetting",
                f"perplexity on {Path(source).name} rose {change:.1f}% ({base:.2f} -> "
                f"{tuned:.2f}), above {settings.forgetting_warn_pct}%: the adapter may have forgotten "
                "general language; try fewer steps, a lower learning rate, a smaller rank or replay "
                "(finetune.replay_share)",
            )
        )
    return {"text": source, "base_perplexity": base, "finetuned_perplexity": tuned, "change_pct": change}


def _weights_hash(spec: str) -> str | None:
    weights = resolve(spec).weights_file
    return cached_file_sha256(weights) if weights is not None else None
