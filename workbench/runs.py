"""Every run of a workspace and how far it has come: prepared, indexed, trained, evaluated.

Read from what each step leaves behind: `prepare` a quality report and documents in `runs/NAME/`, `index` a manifest
in `indexes/NAME/`, `finetune` an adapter in `runs/NAME/adapters/`, and `eval` answers
stored under one of the run's evals. Nothing is loaded: listing runs is cheap enough for every page load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.workspace import adapter_aliases, adapter_names, check_name, index_paths, resolve_home, run_paths

STEPS = ("prepared", "indexed", "trained", "evaluated")


@dataclass(frozen=True)
class RunState:
    """A prepared run and the later steps it has been through."""

    name: str
    indexed: bool = False
    trained: bool = False
    evaluated: bool = False

    @property
    def steps(self) -> list[str]:
        """The steps done, in workflow order (`prepared` always: only prepared runs are listed)."""
        done = {"prepared": True, "indexed": self.indexed, "trained": self.trained, "evaluated": self.evaluated}
        return [step for step in STEPS if done[step]]

    @property
    def label(self) -> str:
        """The run as a picker shows it: `NAME · prepared, indexed`."""
        return f"{self.name} · {', '.join(self.steps)}"


def has_questions(name: str, split: str, home: str | Path | None = None) -> bool:
    """Whether split `split` of run `name` holds a question with a reference answer (what an eval asks)."""
    from workbench.records import read_split

    path = run_paths(name, home).split(split)
    return path.is_file() and any(e.is_question for e in read_split(path))


def tuned_variants(name: str, home: str | Path | None = None, indexed: bool = True) -> list[str]:
    """The fine-tuned variants run `name`'s trained adapters give: `ft` and (when `indexed`) `ft_rag` if the
    adapters they mean are trained, then each other adapter by name (`ft:A`, `ft_rag:A`)."""
    trained, aliases = adapter_names(name, home), adapter_aliases(name, home)
    kinds = ("ft", "ft_rag") if indexed else ("ft",)
    built_in = [kind for kind in kinds if aliases[kind] in trained]
    return built_in + [f"{kind}:{a}" for a in trained for kind in kinds if aliases[kind] != a]


def is_prepared(name: str, home: str | Path | None = None) -> bool:
    """Whether run `name` has prepared documents and a quality report (a valid name, too)."""
    try:
        paths = run_paths(name, home)
    except ValueError:
        return False
    return paths.quality_md.is_file() and paths.documents.is_file()


def run_states(home: str | Path | None = None, store=None) -> list[RunState]:
    """The prepared runs of workspace `home`, by name, with the steps each went through; `evaluated` needs the
    store (`workbench.store.Store`; without it no run counts as evaluated)."""
    home = resolve_home(home)
    runs = home / "runs"
    names = sorted(p.name for p in runs.iterdir() if p.is_dir() and _valid(p.name)) if runs.is_dir() else []
    names = [name for name in names if is_prepared(name, home)]
    evaluated = {row["run"] for row in store.evals() if row["stored"]} if store is not None and names else set()
    return [
        RunState(
            name,
            indexed=index_paths(name, home).manifest.is_file(),
            trained=bool(adapter_names(name, home)),
            evaluated=name in evaluated,
        )
        for name in names
    ]


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True
