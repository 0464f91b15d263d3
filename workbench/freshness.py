"""`workbench probe-freshness`: after the corpus changes, which variants give the new facts before any retraining?

Fine-tuned knowledge goes stale while an index can be updated in seconds; this measures both on the run itself. A
copy of run NAME (its prepared files, index and adapters, in a scratch workspace) gets `facts` checkable facts of
its documents changed: QA pairs are taken in split order (test, val, train) whose reference answer holds a whole
number (`judge.facts`) written exactly once in the whole corpus (in its gold document), and that number becomes
another one the document does not hold (`changed_number`). The copy's index is updated incrementally (`build_index(update=True)`,
timed); then every local variant answers those questions through the engine, and each answer counts as giving the
new value, the old value, both, or neither (its numbers read by the same extractor). The adapters learned the old
text, so only retraining teaches them a new value: the run's training seconds stand beside the index update's.
The run itself is never touched; the result goes to `runs/NAME/freshness.json`, which the report shows.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.judge.facts import extract_facts
from workbench.records import read_split
from workbench.workspace import (
    default_adapter,
    index_paths,
    read_json,
    read_jsonl,
    run_paths,
    write_json_atomic,
    write_jsonl_atomic,
)

OUTCOMES = ("new", "old", "both", "neither")


@dataclass(frozen=True)
class Edit:
    """One changed fact: the question about it, its document, and the number as it was and as it is now."""

    qa_id: str
    question: str
    doc_id: str
    old: str
    new: str
    was: str
    now: str
    """`was`: the words of the document that held the number; `now`: the same words with the new number."""


def freshness_file(name: str, home: str | Path | None = None) -> Path:
    return run_paths(name, home).root / "freshness.json"


def changed_number(value: int, text: str, percent: bool = False) -> str | None:
    """A number near `value` (a fifth more, or less when more is taken; a percentage stays at most 100) that `text`
    does not hold as a number of its own, so an answer giving it can only have read the changed document."""
    step = max(1, value // 5)
    for candidate in [value + step * k for k in range(1, 20)] + [value - step * k for k in range(1, 20)]:
        if candidate <= 0 or (percent and candidate > 100):
            continue
        if not re.search(rf"(?<![\d.,]){candidate}(?![\d]|[.,]\d)", text):
            return str(candidate)
    return None


def pick_edits(name: str, home: str | Path | None, count: int) -> tuple[list[Edit], dict[str, str]]:
    """Up to `count` edits, at most one per document (so each edit is the only change its question sees), and the
    documents' new texts by id."""
    paths = run_paths(name, home)
    documents = {row["id"]: row["text"] for row in read_jsonl(paths.documents)}
    corpus = "\n".join(documents.values())
    edits, texts = [], {}
    for split in ("test", "val", "train"):
        for example in read_split(paths.split(split)) if paths.split(split).is_file() else []:
            if len(edits) >= count:
                return edits, texts
            doc_id = example.gold_doc_ids[0] if example.is_question and len(example.gold_doc_ids) == 1 else None
            if doc_id is None or doc_id in texts or doc_id not in documents:
                continue
            edit = _edit(example, doc_id, documents[doc_id], corpus)
            if edit is not None:
                edits.append(edit)
                texts[doc_id] = documents[doc_id].replace(edit.was, edit.now, 1)
    return edits, texts


def _edit(example, doc_id: str, text: str, corpus: str) -> Edit | None:
    asked = {f.value for f in extract_facts(example.question) if f.kind == "number"}
    for fact in extract_facts(example.answer):
        digits = example.answer[fact.span[0] : fact.span[1]]
        if fact.kind != "number" or not digits.isdigit() or int(digits) < 2 or digits.startswith("0"):
            continue  # 0 and 1 make odd sentences ("2 hour"); a leading 0 is a code, not a quantity
        if fact.value in asked or len(extract_facts(fact.text)) != 1:
            continue
        if not text.count(fact.text) == corpus.count(fact.text) == 1:
            continue  # written once in the whole corpus, in the gold document: after the edit, none holds it
        new = changed_number(int(digits), text, fact.text.rstrip().endswith("%"))
        if new is None:
            continue
        now = fact.text.replace(digits, new, 1)
        return Edit(example.id, example.question, doc_id, digits, new, fact.text, now)
    return None


def outcome(answer: str, edit: Edit) -> str:
    """Whether `answer` gives the new value, the old one, both or neither (as numbers of its own)."""
    values = {f.value for f in extract_facts(answer) if f.kind == "number"}
    new, old = edit.new in values, edit.old in values
    return "both" if new and old else "new" if new else "old" if old else "neither"


def probe_freshness(
    name: str,
    config: Config | None = None,
    home: str | Path | None = None,
    facts: int = 20,
    variants: list[str] | None = None,
) -> dict:
    """Change `facts` facts of a copy of run `name`, update its index, ask every variant; returns (and writes to
    `freshness_file`) the edits, each variant's share of new / old / both / neither, and the two update times."""
    from workbench.engine import Engine
    from workbench.retrieval.index import build_index
    from workbench.variants import BUILT_IN, Decoding

    config = config or Config()
    if facts < 1:
        raise BadInputError(f"--facts {facts}: change at least 1 fact")
    paths = run_paths(name, home)
    if not paths.documents.is_file() or not index_paths(name, home).manifest.is_file():
        raise BadInputError(
            f"{paths.root}: probe-freshness needs a prepared and indexed run; run `workbench prepare` and "
            f"`workbench index --name {name}` first"
        )
    edits, texts = pick_edits(name, home, facts)
    if not edits:
        raise BadInputError(
            f"{paths.root}: no QA pair has a whole number in its answer written once in the corpus (in its gold "
            "document), so no fact can be changed; add a QA set whose answers give figures from the documents"
        )
    with tempfile.TemporaryDirectory(prefix="workbench-freshness-") as scratch:
        copy = Path(scratch)
        shutil.copytree(paths.root, run_paths(name, copy).root)
        shutil.copytree(index_paths(name, home).root, index_paths(name, copy).root)
        changed = run_paths(name, copy).documents
        write_jsonl_atomic(changed, [row | {"text": texts.get(row["id"], row["text"])} for row in read_jsonl(changed)])
        started = time.perf_counter()
        build_index(name, config, copy, update=True, progress=False)
        index_seconds = time.perf_counter() - started
        engine = Engine(config, name, copy)
        chosen = list(variants or [v for v in engine.local_variants() if v in BUILT_IN])
        turns = engine.answer_batch([e.question for e in edits], chosen, Decoding.from_config(config.chat))
    answers = [
        {"qa_id": e.qa_id, "variant": v, "answer": turn[v].text, "outcome": outcome(turn[v].text, e)}
        for e, turn in zip(edits, turns)
        for v in chosen
    ]
    trained = run_paths(name, home, default_adapter(name, home)).adapter_manifest
    manifest = read_json(trained) if trained.is_file() else {}
    result = {
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "facts": len(edits),
        "index_update_s": round(index_seconds, 2),
        "retrain_s": manifest.get("wall_seconds"),
        "variants": {
            v: {
                o: round(sum(a["outcome"] == o for a in answers if a["variant"] == v) / len(edits), 3) for o in OUTCOMES
            }
            for v in chosen
        },
        "edits": [asdict(e) for e in edits],
        "answers": answers,
    }
    write_json_atomic(freshness_file(name, home), result)
    return result
