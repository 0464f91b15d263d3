"""Rater queues: a question set an admin loads so that each question is served, blind, to several raters.

Free chat gives every rater their own questions, so no two ratings are of the same answer and nobody can tell a
careful rater from a careless one. A queue fixes the questions and the variants: `next_question` serves each rater
the queued question still short of raters, as the first turn of a new conversation with its own blind order, so
(answers being batch invariant) raters judge the same answers to the same prompt. The report compares them
(`workbench.report.raters`). The app and `workbench queue` call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.config import ChatConfig
from workbench.data.loaders import BadInputError
from workbench.eval.runner import load_questions
from workbench.variants import VariantUnavailable, variant

MIN_RATERS = 2


class QueueError(BadInputError):
    """A queue that cannot be loaded or served as asked; the message says what to do."""


@dataclass(frozen=True)
class QueuedQuestion:
    """The question a rater is served next, with the variants to compare and how far the question is rated."""

    id: int
    queue: str
    question: str
    variants: tuple[str, ...]
    voted: int
    raters_wanted: int


def load_queue(
    store,
    name: str,
    queue: str,
    split: str = "test",
    variants: list[str] | None = None,
    raters: int = MIN_RATERS,
    limit: int | None = None,
    home: str | Path | None = None,
    chat: ChatConfig | None = None,
) -> int:
    """Queue the questions of `split` (test, val or a QA file) of run `name` under `queue`, compared across `variants`
    (default: the configured chat variants), each for at least `raters` raters; returns the number queued."""
    chat = chat or ChatConfig()
    variants = list(dict.fromkeys(variants or chat.variants))
    if not 2 <= len(variants) <= 4:
        raise QueueError(f"a queue compares 2 to 4 variants side by side, got {len(variants)}: {', '.join(variants)}")
    for name_ in variants:
        try:
            variant(name_, chat)
        except VariantUnavailable as exc:
            raise QueueError(str(exc)) from None
    if isinstance(raters, bool) or not isinstance(raters, int) or raters < MIN_RATERS:
        raise QueueError(f"--raters {raters}: each question needs at least {MIN_RATERS} raters to compare them")
    questions = load_questions(name, split, home, limit)
    store.ensure_run(name)
    return store.add_queue(name, queue, [{"question": q.question, "qa_id": q.id} for q in questions], variants, raters)


def queue_progress(store, name: str) -> list[dict]:
    """Per queue of run `name`, in load order: its variants, questions, and how many are fully rated (voted on by
    as many raters as wanted), rated by one rater or more, or not served yet."""
    queues: dict[str, dict] = {}
    for row in store.queue_questions(name):
        entry = queues.setdefault(
            row["queue"],
            {
                "queue": row["queue"],
                "variants": row["variants"],
                "raters_wanted": row["raters_wanted"],
                "questions": 0,
                "complete": 0,
                "started": 0,
                "votes": 0,
            },
        )
        entry["questions"] += 1
        entry["complete"] += row["voted"] >= row["raters_wanted"]
        entry["started"] += row["voted"] > 0
        entry["votes"] += row["voted"]
    return list(queues.values())


def next_question(store, name: str, queue: str, rater: str) -> QueuedQuestion:
    """The queued question `rater` should rate next; a clear error when the queue is unknown or they rated it all."""
    row = store.next_queue_question(name, queue, rater)
    if row is None:
        known = [q["queue"] for q in queue_progress(store, name)]
        if queue not in known:
            listed = ", ".join(known) or "none loaded yet"
            raise QueueError(f"run {name} has no queue {queue!r} (its queues: {listed})")
        raise QueueError(f"you have been shown every question of queue {queue!r}; thank you")
    return QueuedQuestion(
        row["id"], row["queue"], row["question"], tuple(row["variants"]), row["voted"], row["raters_wanted"]
    )
