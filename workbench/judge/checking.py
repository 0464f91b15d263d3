"""`workbench check`: flag unsupported claims in a JSONL file of answers from any system.

Input rows carry `question`, `answer` and optionally `context` (a string or a list of strings: what the answering
system was shown). Rows without context are checked against the named run's index, and with both, against both.
Each row comes back with every input field kept (an `id` added when missing, `FILE-LINE`), plus
`hallucination_score` (0..1, higher = more likely unsupported), `flagged` and `claims`
(`[{text, score, supported, evidence: [{chunk_id, text, score}]}]`). The output is written whole, then renamed into
place.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from workbench.config import Config
from workbench.data.loaders import BadInputError, numbered_jsonl_rows
from workbench.judge.hallucination import Item, context_passages, make_detector
from workbench.limits import JSON_DEPTH
from workbench.workspace import write_jsonl_atomic

BATCH = 16
"""Rows checked together: retrieval and embedding run once per batch."""


def read_rows(path: str | Path, indexed: bool, json_depth: int = JSON_DEPTH) -> list[dict]:
    """The input rows, validated before any model loads; every problem names its `file:line`. A row without an id
    (absent, null or blank) gets `FILE-LINE`; `json_depth` bounds JSON nesting (`limits.json_depth`)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: input file not found")
    rows = []
    for line_number, row in numbered_jsonl_rows(path, json_depth):
        where = f"{path}:{line_number}"
        if isinstance(row, str):
            raise BadInputError(f"{where}: {row} (each line holds one JSON object with question and answer)")
        _validate(row, where, indexed)
        if row.get("id") is None or row["id"] == "":
            row["id"] = f"{path.stem}-{line_number}"
        rows.append(row)
    return rows


def _validate(row: dict, where: str, indexed: bool) -> None:
    row_id = row.get("id")
    if isinstance(row_id, bool) or not isinstance(row_id, str | int | None):
        raise BadInputError(f"{where}: `id` must be a string or a whole number")
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str):
            raise BadInputError(f"{where}: `{key}` missing or not a string; every row needs question and answer")
    context = row.get("context")
    if context is not None and not (
        isinstance(context, str) or (isinstance(context, list) and all(isinstance(c, str) for c in context))
    ):
        raise BadInputError(f"{where}: `context` must be a string or a list of strings")
    if context is None and not indexed:
        raise BadInputError(
            f"{where}: no `context` and no index to retrieve evidence from; add context to the row or pass --name "
            "with a run built by `workbench index`"
        )


def check_rows(rows: list[dict], detector, progress: bool = False) -> list[dict]:
    """The rows with the detector's verdicts added (input fields kept)."""
    out = []
    with tqdm(total=len(rows), desc="checking", unit="answer", disable=not progress) as bar:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            items = [Item(r["question"], r["answer"], context_passages(r.get("context"))) for r in batch]
            for row, verdict in zip(batch, detector.check(items)):
                out.append(
                    row
                    | {
                        "hallucination_score": round(verdict.score, 4),
                        "flagged": verdict.flagged,
                        "claims": [claim.to_dict() for claim in verdict.claims],
                    }
                )
            bar.update(len(batch))
    return out


def check_file(
    input: str | Path,
    output: str | Path,
    name: str | None = None,
    config: Config | None = None,
    home: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Check every row of `input` and write them to `output`; returns `{rows, flagged, detector, seconds}`."""
    config = config or Config()
    rows = read_rows(input, indexed=name is not None, json_depth=config.limits.json_depth)
    from workbench.retrieval.index import Retriever  # after reading: bad input fails before anything heavy loads

    started = time.perf_counter()
    retriever = Retriever.load(name, config, home) if name else None
    checked = check_rows(rows, make_detector(config, retriever), progress)
    write_jsonl_atomic(Path(output), checked)
    return {
        "rows": len(checked),
        "flagged": sum(row["flagged"] for row in checked),
        "detector": config.hallucination.detector,
        "seconds": time.perf_counter() - started,
    }
