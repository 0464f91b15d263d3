"""Exports of stored rows to files others open: the ratings as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from workbench.report.blind import blinded
from workbench.store import Store
from workbench.workspace import write_text_atomic

RATING_CSV_COLUMNS = (
    "id",
    "run",
    "conversation_id",
    "turn_id",
    "position",
    "rater",
    "answer_id",
    "variant",
    "stars",
    "vote",
    "hallucinated",
    "comment",
    "created_at",
)
"""The columns of `export_ratings_csv`: the rating row of `Store.ratings`, with its run, turn and variant."""


def export_ratings_csv(store: Store, path: str | Path, run: str | None = None, rater: str | None = None) -> int:
    """Write the ratings (of `run`, or all; of one `rater`, or everyone's) to `path` atomically, columns
    `RATING_CSV_COLUMNS`, a turn not voted on yet naming its column letter instead of the variant; returns the
    rows."""
    rows = blinded([r for r in store.ratings(run) if rater is None or r["rater"] == rater])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RATING_CSV_COLUMNS)
    writer.writerows([row[column] for column in RATING_CSV_COLUMNS] for row in rows)
    write_text_atomic(Path(path), buffer.getvalue())
    return len(rows)
