"""Everything a report reads, gathered once: store rows of one eval and of the arena, the QA rows, the manifests.

The report's sections are pure functions of a `ReportRows`; this module is the only one that touches the store and
the workspace files, and it never loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.eval.runner import Question, load_questions
from workbench.freshness import freshness_file
from workbench.report.blind import revealed_arena_rows
from workbench.store import Store
from workbench.variants import is_tuned
from workbench.workspace import (
    adapter_aliases,
    adapter_names,
    index_paths,
    read_events,
    read_json,
    read_metrics,
    resolve_home,
    run_paths,
)


class ReportError(BadInputError):
    """A report that cannot be made as asked; the message says what to do."""


@dataclass
class ReportRows:
    """The rows of one run's report. `eval` is the chosen eval's row (None when the run has none); `questions` maps
    its QA ids to their questions (empty, with a note, when the QA file can no longer be read)."""

    run: str
    config: Config
    eval: dict | None = None
    questions: dict[str, Question] = field(default_factory=dict)
    eval_answers: list[dict] = field(default_factory=list)
    eval_judgements: list[dict] = field(default_factory=list)
    eval_claims: list[dict] = field(default_factory=list)
    arena_answers: list[dict] = field(default_factory=list)
    ratings: list[dict] = field(default_factory=list)
    arena_judgements: list[dict] = field(default_factory=list)
    arena_claims: list[dict] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    index: dict | None = None
    index_bytes: int | None = None
    adapters: dict[str, dict] = field(default_factory=dict)
    """Per adapter name: its manifest, size, curves and events."""
    adapter_of: dict[str, str] = field(default_factory=dict)
    """Per fine-tuned variant of the report: the adapter it answers with (`ft` / `ft_rag` resolved)."""
    freshness: dict | None = None
    """The run's latest `workbench probe-freshness` result, when there is one."""
    notes: list[str] = field(default_factory=list)

    def scores(self, judge: str) -> dict[tuple[str, str], float]:
        """{(qa id, variant): score} of one judge over the eval's answers (failed judgements left out)."""
        return {
            (j["qa_id"], j["variant"]): j["score"]
            for j in self.eval_judgements
            if j["judge"] == judge and j["score"] is not None
        }

    @property
    def judges(self) -> list[str]:
        """The judges that scored the eval's answers, in the eval's order."""
        stored = {j["judge"] for j in self.eval_judgements}
        listed = [j for j in (self.eval or {}).get("judges", []) if j in stored]
        return listed + sorted(stored - set(listed))

    @property
    def variants(self) -> list[str]:
        """The eval's variants in its own order, those with answers only."""
        answered = {a["variant"] for a in self.eval_answers}
        return [v for v in (self.eval or {}).get("variants", []) if v in answered]


def load_rows(store: Store, name: str, config: Config, home=None, eval_id: str | None = None) -> ReportRows:
    """The rows of run `name`'s report on eval `eval_id` (default: its latest eval with stored answers)."""
    home = resolve_home(home)
    rows = ReportRows(name, config)
    with store.snapshot():
        evals = store.evals(name)
        rows.eval = _pick_eval(name, evals, eval_id)
        if rows.eval is not None:
            chosen = rows.eval["id"]
            rows.eval_answers = store.answers(eval_id=chosen)
            rows.eval_judgements = store.judgements(eval_id=chosen)
            rows.eval_claims = store.claim_flags(eval_id=chosen)
        # blind until the vote: turns not voted on yet stay out of every figure
        arena = revealed_arena_rows(store, name)
        rows.arena_answers, rows.ratings, rows.arena_judgements, rows.arena_claims = arena
    if rows.eval is None:
        rows.notes.append(f"run {name} has no eval yet: `workbench eval --name {name}` answers its test questions")
    else:
        try:
            split = rows.eval["split"]
            rows.questions = {q.id: q for q in load_questions(name, split, home)}
        except BadInputError as exc:
            rows.notes.append(f"breakdowns by question are left out: the eval's questions cannot be read ({exc})")
        stored, total = len(rows.eval_answers), rows.eval["questions"] * len(rows.eval["variants"])
        if stored < total:
            rows.notes.append(
                f"eval {rows.eval['id']} is not finished ({stored} of {total} answers): its figures cover the "
                f"answers stored so far; `workbench eval --name {name} --eval-id {rows.eval['id']}` completes it"
            )
        larger = [e for e in evals if e["stored"] > rows.eval["stored"]]
        if eval_id is None and larger:
            biggest = max(larger, key=lambda e: e["stored"])
            rows.notes.append(
                f"this is the run's latest eval ({rows.eval['stored']} answers); eval {biggest['id']} has more "
                f"({biggest['stored']}): `--eval {biggest['id']}` reports on it"
            )
    _read_workspace(rows, name, home)
    return rows


def _pick_eval(name: str, evals: list[dict], eval_id: str | None) -> dict | None:
    if eval_id is not None:
        found = [e for e in evals if e["id"] == eval_id]
        if not found:
            known = ", ".join(e["id"] for e in evals) or "none yet"
            raise ReportError(f"--eval {eval_id}: run {name} has no such eval (its evals: {known})")
        return found[0]
    stored = [e for e in evals if e["stored"]]
    return stored[-1] if stored else None


def _read_workspace(rows: ReportRows, name: str, home: Path) -> None:
    """The run manifest, each adapter's size and training files, the index manifest and size, and the freshness
    probe's result."""
    paths = run_paths(name, home)
    if paths.manifest.is_file():
        rows.manifest = read_json(paths.manifest)
    trained, aliases = adapter_names(name, home), adapter_aliases(name, home)
    for variant in [v for v in rows.variants if is_tuned(v)] if rows.eval else ["ft", "ft_rag"]:
        adapter = aliases.get(variant) or variant.partition(":")[2]
        training = run_paths(name, home, adapter)
        if adapter not in trained or not training.adapter_manifest.is_file():
            continue
        rows.adapter_of[variant] = adapter
        rows.adapters.setdefault(
            adapter,
            {
                "manifest": read_json(training.adapter_manifest),
                "bytes": _folder_bytes(training.adapter),
                "curve": read_metrics(training.metrics),
                "events": read_events(training.events),
            },
        )
    index = index_paths(name, home)
    if index.manifest.is_file():
        rows.index = read_json(index.manifest)
        rows.index_bytes = _folder_bytes(index.root)
    if freshness_file(name, home).is_file():
        rows.freshness = read_json(freshness_file(name, home))


def _folder_bytes(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
