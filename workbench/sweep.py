"""`workbench sweep`: train one named adapter per hyperparameter setting, score them all on the val split, pick one.

A grid (`--grid lr=1e-4,3e-4 --grid r=8,16`) gives every combination; `--random N` tries N of them, drawn with the
sweep's seed (random search over the same grid). Each trial is the adapter `TRIAL` of the run, named after its
settings (`lr1e-4-r8`), trained by `finetune` with early stopping (`finetune.patience`) and an optional step budget.
When every trial has trained, one eval on the val split answers its questions with every trial side by side
(`ft:TRIAL`, one batch, the eval's own resume), and each trial's val token F1 stands beside its best val loss.

Everything resumes: a trial whose adapter manifest records its settings is done; one with a checkpoint continues
from it; the eval completes what it lacks. The table is `runs/NAME/sweeps/SWEEP.json`, where the sweep's id comes
from its grid and settings, so the same command continues the same sweep. `--promote` makes the best trial what
`ft` means (`default_adapter` in the run manifest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.config import Config, ConfigError, FinetuneConfig, config_from_dict
from workbench.data.loaders import BadInputError
from workbench.workspace import (
    check_adapter_name,
    read_json,
    resolve_home,
    run_paths,
    write_json_atomic,
)

SHORT_KEYS = {
    "lr": "learning_rate",
    "r": "lora_r",
    "alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "batch": "batch_size",
    "wd": "weight_decay",
    "warmup": "warmup_ratio",
}
"""Short names a grid may use for `finetune` settings; any setting's own name works too."""


class SweepError(BadInputError):
    """A sweep that cannot run as asked; the message names the option and what to do."""


@dataclass(frozen=True)
class Trial:
    """One setting of the grid: the adapter it trains and the `finetune` settings it changes."""

    adapter: str
    settings: dict


def parse_grid(grid: list[str]) -> dict[str, list[str]]:
    """`["lr=1e-4,3e-4", "r=8,16"]` as {finetune field: values}; a clear error names a bad entry."""
    axes: dict[str, list[str]] = {}
    for entry in grid:
        key, _, values = entry.partition("=")
        field = SHORT_KEYS.get(key.strip(), key.strip())
        if field not in FinetuneConfig.model_fields:
            short = ", ".join(f"{k} ({v})" for k, v in SHORT_KEYS.items())
            raise SweepError(f"grid entry {entry!r}: unknown setting {key!r}; use a finetune setting or one of {short}")
        if field in ("max_steps",):
            raise SweepError(f"grid entry {entry!r}: give max_steps as the step budget per trial, not in the grid")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not choices:
            raise SweepError(f"grid entry {entry!r}: give values after '=', separated by commas (lr=1e-4,3e-4)")
        if field in axes:
            raise SweepError(f"grid entry {entry!r}: {field} is already in the grid")
        axes[field] = choices
    if not axes:
        raise SweepError("give at least one grid entry, KEY=V1,V2")
    return axes


def plan_trials(axes: dict[str, list[str]], sample: int | None = None, seed: int = 0) -> list[Trial]:
    """Every combination of the grid, or `sample` of them drawn with `seed`; each named after its settings."""
    short = {v: k for k, v in SHORT_KEYS.items()}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    if sample is not None:
        if sample < 1:
            raise SweepError(f"--random {sample}: give at least 1")
        combos = random.Random(seed).sample(combos, min(sample, len(combos)))
    trials = []
    for combo in combos:
        label = "-".join(f"{short.get(k, k)}{v}" for k, v in combo.items())
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")
        if len(label) > 64 or not label:
            label = "trial-" + hashlib.sha256(json.dumps(combo, sort_keys=True).encode()).hexdigest()[:10]
        trials.append(Trial(check_adapter_name(label), combo))
    return trials


def sweep_id(axes: dict, sample: int | None, seed: int, recipe: str | None, budget_steps: int | None) -> str:
    spec = {"grid": axes, "random": sample, "seed": seed, "recipe": recipe, "budget_steps": budget_steps}
    return "sweep-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def sweep_file(name: str, home, sweep: str) -> Path:
    return run_paths(name, home).root / "sweeps" / f"{sweep}.json"


def trial_config(config: Config, trial: Trial, recipe: str | None, budget_steps: int | None) -> Config:
    """The config trial `trial` trains with; a value the setting cannot take is an error naming it."""
    settings = dict(trial.settings) | ({"recipe": recipe} if recipe else {})
    if budget_steps is not None:
        settings["max_steps"] = budget_steps
    try:
        return config_from_dict(config.model_dump() | {"finetune": config.finetune.model_dump() | settings}, "grid")
    except ConfigError as exc:
        raise SweepError(f"trial {trial.adapter}: {exc}") from None


def run_sweep(
    name: str,
    grid: list[str],
    config: Config | None = None,
    home: str | Path | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    recipe: str | None = None,
    budget_steps: int | None = None,
    promote: bool = False,
    progress: bool = True,
    val_limit: int | None = None,
    stop=None,
) -> dict:
    """Train every trial still to train, score them on the val split, and write the sweep's table; returns it
    (`{id, trials: [...], best, promoted, eval_id, stopped}`, each trial with its settings, steps, outcome, best val
    loss, val token F1 and wall seconds). `stop` (anything with `is_set()`) ends the trial in progress cleanly and
    skips the rest: the same call again continues the sweep."""
    from workbench.finetune import finetune

    config = config or Config()
    home = resolve_home(home)
    paths = run_paths(name, home)
    if not paths.split("train").is_file():
        raise SweepError(f"run {name!r} is not prepared: run `workbench prepare --name {name} --corpus PATH` first")
    axes = parse_grid(grid)
    trials = plan_trials(axes, sample, seed)
    configs = {t.adapter: trial_config(config, t, recipe, budget_steps) for t in trials}  # all checked up front
    sweep = sweep_id(axes, sample, seed, recipe, budget_steps)
    table_file = sweep_file(name, home, sweep)
    table = read_json(table_file) if table_file.is_file() else {"id": sweep, "grid": axes, "trials": {}}
    table |= {"random": sample, "seed": seed, "recipe": recipe, "budget_steps": budget_steps}
    for number, trial in enumerate(trials, 1):
        trained = run_paths(name, home, trial.adapter)
        wanted = configs[trial.adapter].finetune.model_dump(mode="json")
        record = read_json(trained.adapter_manifest) if trained.adapter_manifest.is_file() else {}
        if record.get("config") == wanted and record.get("outcome") != "stopped":
            continue
        if progress:
            print(f"trial {number}/{len(trials)}: {trial.adapter} ({_settings_text(trial.settings)})")
        # a checkpoint this sweep left continues; any other adapter of the same name is trained again
        resume = (trained.checkpoint / "state.pt").is_file() and trial.adapter in table["trials"]
        table["trials"][trial.adapter] = {"settings": trial.settings}
        write_json_atomic(table_file, table)
        started = time.perf_counter()
        finetune(name, configs[trial.adapter], home, resume=resume, stop=stop, progress=progress, adapter=trial.adapter)
        if stop is not None and stop.is_set():
            table |= {"stopped": True}
            write_json_atomic(table_file, table)
            return table
        if progress:
            print(f"trial {trial.adapter}: trained in {time.perf_counter() - started:.0f} s")
    rows = [_trial_row(name, home, t) for t in trials]
    eval_id, f1 = _score_on_val(name, config, home, [t.adapter for t in trials], sweep, progress, val_limit, stop)
    if stop is not None and stop.is_set():
        table |= {"stopped": True, "eval_id": eval_id}
        write_json_atomic(table_file, table)
        return table
    for row in rows:
        row["val_token_f1"] = f1.get(row["adapter"])
    best = max(rows, key=_rank)["adapter"] if rows else None
    table |= {"trials": {row["adapter"]: row for row in rows}, "order": [r["adapter"] for r in rows]}
    table |= {"best": best, "eval_id": eval_id, "promoted": None, "stopped": False}
    if promote and best is not None:
        promote_adapter(name, home, best)
        table["promoted"] = best
    write_json_atomic(table_file, table)
    return table


def promote_adapter(name: str, home, adapter: str) -> None:
    """Make `adapter` what variant `ft` means for run `name` (the `default_adapter` of its manifest)."""
    paths = run_paths(name, home, adapter)
    if not (paths.adapter / "adapter_config.json").is_file():
        raise SweepError(f"run {name!r} has no trained adapter {adapter!r} to promote")
    manifest = read_json(paths.manifest) if paths.manifest.is_file() else {"name": name}
    write_json_atomic(paths.manifest, manifest | {"default_adapter": adapter})


def _trial_row(name: str, home, trial: Trial) -> dict:
    m = read_json(run_paths(name, home, trial.adapter).adapter_manifest)
    return {
        "adapter": trial.adapter,
        "settings": trial.settings,
        "recipe": m.get("recipe"),
        "steps": m.get("steps"),
        "outcome": m.get("outcome"),
        "best_step": m.get("best_step"),
        "best_val_loss": m.get("best_val_loss"),
        "wall_seconds": m.get("wall_seconds"),
    }


def _rank(row: dict) -> tuple:
    """Highest val token F1 first (when measured), then lowest best val loss."""
    f1 = row.get("val_token_f1")
    return (f1 is not None, f1 or 0.0, -(row["best_val_loss"] if row["best_val_loss"] is not None else float("inf")))


def _score_on_val(name, config, home, adapters, sweep, progress, limit, stop) -> tuple[str | None, dict[str, float]]:
    """One eval of every trial (`ft:TRIAL`) on the val split; ({}, None) when the split has no questions."""
    from workbench.eval import run_eval
    from workbench.report.summary import eval_figures
    from workbench.runs import has_questions
    from workbench.store import Store

    if not has_questions(name, "val", home):
        if progress:
            print("the val split holds no question: trials are ranked by best val loss alone")
        return None, {}
    variants = [f"ft:{a}" for a in adapters]
    with Store.open(home=home) as store:
        done = run_eval(
            name,
            config,
            home,
            variants=variants,
            split="val",
            limit=limit,
            eval_id=f"{sweep}-val",
            progress=progress,
            store=store,
            stop=stop,
        )
        figures = eval_figures(store.answers(eval_id=done["eval_id"]), store.judgements(eval_id=done["eval_id"]), [])
    f1 = {v.removeprefix("ft:"): row["judges"].get("token_f1", {}).get("mean") for v, row in figures.items()}
    return done["eval_id"], f1


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def table_text(table: dict) -> str:
    """The sweep's trials as a plain table, best marked with `*`."""
    rows = [table["trials"][a] for a in table.get("order", table["trials"])]
    keys = list(table["grid"])
    head = ["", "adapter", *keys, "steps", "outcome", "best val loss", "val token F1", "wall s"]
    lines = [head]
    for r in rows:
        f1 = r.get("val_token_f1")
        loss = r.get("best_val_loss")
        lines.append(
            [
                "*" if r["adapter"] == table.get("best") else "",
                r["adapter"],
                *(str(r["settings"].get(k, "")) for k in keys),
                str(r.get("steps")),
                str(r.get("outcome")),
                f"{loss:.4f}" if loss is not None else "-",
                f"{f1:.3f}" if f1 is not None else "-",
                f"{r['wall_seconds']:.0f}" if r.get("wall_seconds") is not None else "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
