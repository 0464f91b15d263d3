"""Few-shot examples for the `prompt` variant: the training questions closest in meaning to the one asked.

The `prompt` variant is the prompt-engineering baseline: the base model, the shared system prompt, and
`chat.prompt_examples` question-answer pairs of the run's train split shown as earlier turns, with no training and
no retrieved documents. The pairs are those whose questions the embedder finds closest to the asked question
(cosine, ties by split order), so the report can say whether fine-tuning beats simply showing good examples. Only
the train split is read, so a val or test question is never shown as an example. Each question is embedded alone,
as the retriever embeds a query, so a question picks the same examples in a batch as alone.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from workbench.records import Example, read_split
from workbench.workspace import run_paths


def training_pairs(name: str, home: str | Path | None = None) -> list[Example]:
    """Run `name`'s train-split questions with a reference answer (from the QA set or applied synthetic pairs)."""
    path = run_paths(name, home).split("train")
    return [e for e in read_split(path) if e.is_question and e.answer.strip()] if path.is_file() else []


class ExamplePicker:
    """Picks the `k` training pairs closest to a question; their questions are embedded once, on first use."""

    def __init__(
        self, examples: list[Example], embedder_spec: str, device: str = "auto", k: int = 3, runtime: str = "auto"
    ):
        self.examples, self.embedder_spec, self.device, self.k = examples, embedder_spec, device, k
        self.runtime = runtime
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()  # one embedder, shared by the sessions that build rows at once

    @property
    def id(self) -> str:
        """Short hash of the pairs that can be shown: an eval's answers of `prompt` depend on them."""
        text = "\n".join(f"{e.question}\t{e.answer}" for e in self.examples)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def pick(self, question: str) -> list[Example]:
        """The closest examples, closest first (an example asking exactly `question` is left out)."""
        from workbench.retrieval.embedding import embed, query_embedder

        with self._lock:
            model = query_embedder(self.embedder_spec, self.device, self.runtime)
            if self._vectors is None:
                self._vectors = embed(model, [e.question for e in self.examples])
            query = embed(model, [question])[0]
        scores = self._vectors @ query
        order = sorted(range(len(self.examples)), key=lambda i: (-float(scores[i]), i))
        asked = question.strip().casefold()
        return [self.examples[i] for i in order if self.examples[i].question.strip().casefold() != asked][: self.k]
