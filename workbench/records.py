"""Plain records that flow between stages and into JSONL files; each knows how to become a JSON-ready dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

QA_TYPES = ("fact", "numeric", "procedure", "multi_doc", "unanswerable")
"""Question types of a QA set; `unanswerable` questions have an abstention as their reference answer."""


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

    def questions(self) -> list[str]:
        """The question and all its rewordings: a pair's whole footprint for grouping and leakage checks."""
        return [self.question, *self.paraphrases]


@dataclass
class Example:
    """One training or evaluation example in chat-messages form, with where it came from.

    `origin` is `qa` for pairs from the QA file and `corpus` for examples generated from documents
    (`kind` then says how: `continuation` or `section_qa`).
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

    def to_dict(self) -> dict:
        return asdict(self)
