"""Plain records that flow between stages and into JSONL files; each knows how to become a JSON-ready dict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

QA_TYPES = ("fact", "numeric", "procedure", "multi_doc", "unanswerable")
"""Question types of a QA set; `unanswerable` questions have an abstention as their reference answer."""
COLUMN_LABELS = "ABCD"
"""The arena's columns, in order: a conversation's blind order puts its variants under them."""


SCALAR_TYPES = (str, int, float, bool, type(None))
"""Value types an extra QA field may have (`QAPair.fields`, `Example.fields`): single values to group by."""


def is_scalar(value) -> bool:
    """True for a value an extra QA field may hold: text, a number, true/false or null."""
    return isinstance(value, SCALAR_TYPES)


@dataclass
class Document:
    """One corpus document after loading (and later cleaning); `source` is `path` or `path:line` for row files."""

    id: str
    title: str
    text: str
    source: str
    format: str

    def to_dict(self) -> dict:
        return asdict(self) | {"words": len(self.text.split())}


@dataclass
class Chunk:
    """A retrievable piece of a document: `text == document.text[start:end]`; `headings` is its section path."""

    id: str
    doc_id: str
    title: str
    headings: list[str]
    text: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QAPair:
    """A question with its reference answer; `doc_ids` lists every supporting document, `doc_id` the main one."""

    id: str
    question: str
    answer: str
    source: str
    doc_id: str | None = None
    doc_ids: list[str] = field(default_factory=list)
    type: str | None = None
    paraphrases: list[str] = field(default_factory=list)
    fields: dict = field(default_factory=dict)
    """The QA file's own extra fields (e.g. `{"product": "S2"}`), scalar values only, kept so reports can group
    by them."""

    def questions(self) -> list[str]:
        """The question and all its rewordings: a pair's whole footprint for grouping and leakage checks."""
        return [self.question, *self.paraphrases]


ORIGINS = ("qa", "synthetic", "corpus")
"""Where an example came from: `qa` the QA file, `synthetic` questions generated from the documents with a
reference answer, `corpus` passages of the documents turned into examples (not questions)."""

QUESTION_ORIGINS = ("qa", "synthetic")
"""Origins of examples that are questions with a reference answer: the ones to evaluate and retrieve for."""


@dataclass
class Example:
    """One training or evaluation example in chat-messages form, with where it came from; a line of a prepared
    split file (`runs/NAME/data/{train,val,test}.jsonl`), read back with `read_split`.

    `origin` is `qa` for pairs from the QA file, `synthetic` for generated questions with a reference answer, and
    `corpus` for examples generated from documents (`kind` then says how: `continuation` or `section_qa`).
    `answer` is the reference answer of a question. `doc_ids` lists every supporting document, `doc_id` the main
    one (see `gold_doc_ids`).
    """

    id: str
    messages: list[dict]
    origin: str
    kind: str
    group: int
    question: str
    answer: str
    doc_id: str | None = None
    doc_ids: list[str] = field(default_factory=list)
    type: str | None = None
    paraphrases: list[str] = field(default_factory=list)
    fields: dict = field(default_factory=dict)
    """The QA file's own extra fields (e.g. `{"product": "S2"}`), scalar values only, kept so reports can group
    by them; empty for corpus examples."""

    @property
    def is_question(self) -> bool:
        """True for a question with a reference answer (`origin` `qa` or `synthetic`), False for a corpus example."""
        return self.origin in QUESTION_ORIGINS

    @property
    def gold_doc_ids(self) -> list[str]:
        """The documents that support the answer: `doc_ids`, else `[doc_id]`, else none (an unanswerable question)."""
        if self.doc_ids:
            return list(self.doc_ids)
        return [self.doc_id] if self.doc_id else []

    def to_dict(self) -> dict:
        return asdict(self)


_EXAMPLE_FIELDS = {
    "id": str,
    "messages": list,
    "origin": str,
    "kind": str,
    "group": int,
    "question": str,
    "answer": str,
    "doc_id": str | None,
    "doc_ids": list,
    "type": str | None,
    "paraphrases": list,
    "fields": dict,
}
_OPTIONAL_FIELDS = ("doc_id", "doc_ids", "type", "paraphrases", "fields")
"""Fields older split files may lack; they take the `Example` defaults."""


def read_split(path: Path) -> list[Example]:
    """The examples of a prepared split file, one per non-blank line, in file order.

    Older files may lack the optional fields (`doc_id`, `doc_ids`, `type`, `paraphrases`, `fields`); unknown
    fields are ignored. A line that is not a JSON object (or not UTF-8, or nested too deeply), lacks a required field
    or has a field of the wrong type is a `BadInputError` naming `file:line` and the field.
    """
    path = Path(path)
    redo = f"re-run `workbench prepare --name {path.parent.parent.name}` to rewrite it"
    if not path.is_file():
        raise _bad_input(f"{path}: no such split file; {redo}")
    from workbench.data.loaders import numbered_jsonl_rows  # loaders reads into these records: import when needed

    return [_example_from_row(row, f"{path}:{number}", redo) for number, row in numbered_jsonl_rows(path)]


def _example_from_row(row: dict | str, where: str, redo: str) -> Example:
    if isinstance(row, str):
        raise _bad_input(f"{where}: {row}; {redo}")
    values = {}
    for name, expected in _EXAMPLE_FIELDS.items():
        if name not in row:
            if name in _OPTIONAL_FIELDS:
                continue
            raise _bad_input(f"{where}: missing field '{name}'; {redo}")
        value = row[name]
        if not isinstance(value, expected) or isinstance(value, bool) or not _items_ok(name, value):
            raise _bad_input(f"{where}: field '{name}' has the wrong type ({_describe(value)}); {redo}")
        values[name] = value
    for key, value in values.get("fields", {}).items():
        if not is_scalar(value):
            raise _bad_input(f"{where}: field 'fields' has a non-scalar value for {key!r} ({_describe(value)}); {redo}")
    if values["origin"] not in ORIGINS:
        raise _bad_input(f"{where}: field 'origin' is {values['origin']!r}, not one of {', '.join(ORIGINS)}; {redo}")
    return Example(**values)


def _items_ok(name: str, value) -> bool:
    """Lists hold what they should: messages are `{role, content}` dicts of strings, the others strings."""
    if name == "messages":
        return all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return True


def _describe(value) -> str:
    return "null" if value is None else f"a {type(value).__name__}: {json.dumps(value, ensure_ascii=False)[:60]}"


def _bad_input(message: str) -> Exception:
    from workbench.data.loaders import BadInputError  # loaders reads into these records: import when needed

    return BadInputError(message)
