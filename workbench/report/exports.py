"""Exports of stored rows to files others open: ratings, arena answers, eval answers, DPO pairs and SFT examples.

`export_rows(store, what, run)` builds the rows; `write_rows(rows, out)` writes them by the output's form: `.jsonl`
(one JSON object a line, what `datasets.load_dataset("json", ...)` reads), `.csv` (nested values as JSON text), or
a folder (a `datasets` dataset, `save_to_disk`, read back with `load_from_disk`); a file is switched in whole, a
folder through a staging sibling. `workbench export` and the Report tab call both.

Blind until the vote (`workbench.report.blind`): an arena row of a turn its rater has not voted on names its column
letter, never its variant, and carries nothing that would point at one (its prompt, which holds the sources or the
examples a variant was shown, its length, the adapter, the index, the chunks). DPO pairs and SFT examples come from voted turns
only.
- `ratings`: every rating with its turn's question and the rated answer's text.
- `answers`: every arena answer with its judges' scores and reasons, its claims and, once revealed, its sources.
- `evals`: every eval answer with its eval, split, QA id, reference, judges, claims and sources.
- `dpo`: `{prompt, chosen, rejected}` in the conversational form TRL's `DPOTrainer` reads: per vote for a best
  answer, that answer against each other answer of the turn (ties and "all bad" give none), the prompt being the
  conversation up to the question (the chosen variant's earlier turns), with the voter's stars of both when given.
- `sft`: `{messages}` chat examples of the answers raters liked: voted best or given 4-5 stars, and never 1-2 stars
  nor marked hallucinated by anyone.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from workbench.data.loaders import BadInputError
from workbench.records import COLUMN_LABELS
from workbench.report.blind import blinded, voted_turns
from workbench.store import Store
from workbench.workspace import replace_folder, write_text_atomic

WHAT = ("ratings", "answers", "evals", "dpo", "sft")
RATING_CSV_COLUMNS = (
    "id",
    "run",
    "conversation_id",
    "turn_id",
    "position",
    "queue_question_id",
    "rater",
    "answer_id",
    "variant",
    "stars",
    "vote",
    "hallucinated",
    "comment",
    "created_at",
    "question",
    "answer",
)
"""The columns of a ratings export: the rating row of `Store.ratings`, with its run, turn and variant (its column
letter before the vote), the queued question it answers (`workbench.rater_queue`; empty in free chat), the turn's
question and the rated answer's text."""
UNREVEALED = ("prompt", "tokens_in", "adapter_id", "index_id", "chunk_ids", "chunk_scores", "decoding")
"""What an unvoted arena answer's export leaves out: each would point at its variant (a prompt with sources or
examples is longer). What the arena itself shows before the vote (text, timings, tokens out, judges, claims) stays."""
LIKED_STARS, DISLIKED_STARS = 4, 2


class ExportError(BadInputError):
    """An export that cannot be made as asked; the message says what to change."""


def export_rows(store: Store, what: str, run: str | None = None) -> list[dict]:
    """The rows of export `what` (one of `WHAT`) for `run` (or every run), read in one consistent view."""
    if what not in WHAT:
        raise ExportError(f"--what {what!r}: choose one of {', '.join(WHAT)}")
    with store.snapshot():
        ratings = store.ratings(run)
        answers = store.answers(run)
        if what == "ratings":
            return _ratings(ratings, answers)
        judged = _judged(store, run)
        if what == "answers":
            orders = {c["id"]: c["blind_order"] for c in store.conversations(run)}
            return _answers([a for a in answers if a["eval_id"] is None], voted_turns(ratings), judged, orders)
        if what == "evals":
            return _eval_answers(store, [a for a in answers if a["eval_id"] is not None], judged)
        arena = [a for a in answers if a["eval_id"] is None and a["turn_id"] in voted_turns(ratings)]
        return _dpo(ratings, arena) if what == "dpo" else _sft(ratings, arena)


def write_rows(rows: list[dict], out: str | Path, columns: tuple[str, ...] | None = None) -> int:
    """Write `rows` to `out` (`.jsonl`, `.csv`, or a folder for a `datasets` dataset); returns how many."""
    out = Path(out)
    if out.suffix == ".jsonl":
        write_text_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    elif out.suffix == ".csv":
        columns = columns or tuple(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row.get(column)) for column in columns] for row in rows)
        write_text_atomic(out, buffer.getvalue())
    elif out.suffix:
        raise ExportError(f"--out {out}: write a .jsonl or .csv file, or name a folder (a `datasets` dataset)")
    else:
        _save_dataset(rows, out)
    return len(rows)


def export_ratings_csv(store: Store, path: str | Path, run: str | None = None, rater: str | None = None) -> int:
    """The ratings (of `run`, or all; of one `rater`, or everyone's) as CSV, columns `RATING_CSV_COLUMNS`."""
    rows = [r for r in export_rows(store, "ratings", run) if rater is None or r["rater"] == rater]
    return write_rows(rows, Path(path), RATING_CSV_COLUMNS)


# -- rows --------------------------------------------------------------------------------------------------------


def _ratings(ratings: list[dict], answers: list[dict]) -> list[dict]:
    by_id = {a["id"]: a for a in answers}
    questions = {a["turn_id"]: a["question"] for a in answers if a["turn_id"]}
    return [
        {column: r.get(column) for column in RATING_CSV_COLUMNS[:-2]}
        | {"question": questions.get(r["turn_id"]), "answer": by_id[r["answer_id"]]["text"] if r["answer_id"] else None}
        for r in blinded(ratings)
    ]


def _judged(store: Store, run: str | None) -> dict[str, dict]:
    """Per answer id: its judges (`{judge: {score, reason}}`) and claims (text, score, supported)."""
    found: dict[str, dict] = defaultdict(lambda: {"judges": {}, "claims": []})
    for j in store.judgements(run):
        found[j["answer_id"]]["judges"][j["judge"]] = {"score": j["score"], "reason": j["reason"]}
    for c in store.claim_flags(run):
        found[c["answer_id"]]["claims"].append({"claim": c["claim"], "score": c["score"], "supported": c["supported"]})
    return found


def _answers(arena: list[dict], voted: set[str], judged: dict, orders: dict[int, list[str]]) -> list[dict]:
    """Arena answers with `column` (the letter its rater saw), judges and claims; unvoted ones without a variant."""
    rows = []
    for a in arena:
        row = a | judged[a["id"]] | {"column": COLUMN_LABELS[orders[a["conversation_id"]].index(a["variant"])]}
        if a["turn_id"] not in voted:
            row = {k: v for k, v in row.items() if k not in UNREVEALED} | {"variant": None}
        rows.append(row)
    return rows


def _eval_answers(store: Store, answers: list[dict], judged: dict) -> list[dict]:
    evals = {}
    rows = []
    for a in answers:
        if a["eval_id"] not in evals:
            evals[a["eval_id"]] = store.eval(a["eval_id"]) or {}
        rows.append(a | {"split": evals[a["eval_id"]].get("split")} | judged[a["id"]])
    return rows


def _dpo(ratings: list[dict], arena: list[dict]) -> list[dict]:
    by_turn: dict[str, list[dict]] = defaultdict(list)
    for a in arena:
        by_turn[a["turn_id"]].append(a)
    stars = {(r["rater"], r["answer_id"]): r["stars"] for r in ratings if r["answer_id"] and r["stars"]}
    rows = []
    for vote in (r for r in ratings if r["vote"] == "best"):
        turn = by_turn.get(vote["turn_id"], [])
        chosen = next((a for a in turn if a["id"] == vote["answer_id"]), None)
        if chosen is None:
            continue
        prompt = _prompt(chosen, arena)
        for other in (a for a in turn if a["id"] != chosen["id"] and not a["error"]):
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": chosen["text"]}],
                    "rejected": [{"role": "assistant", "content": other["text"]}],
                    "turn_id": vote["turn_id"],
                    "rater": vote["rater"],
                    "chosen_variant": chosen["variant"],
                    "rejected_variant": other["variant"],
                    "chosen_stars": stars.get((vote["rater"], chosen["id"])),
                    "rejected_stars": stars.get((vote["rater"], other["id"])),
                }
            )
    return rows


def _prompt(answer: dict, arena: list[dict]) -> list[dict]:
    """The conversation up to `answer`'s question: its variant's earlier turns in that conversation, then the
    question alone (without the sources or examples a variant was shown)."""
    earlier = sorted(
        (
            a
            for a in arena
            if a["conversation_id"] == answer["conversation_id"]
            and a["variant"] == answer["variant"]
            and a["position"] < answer["position"]
        ),
        key=lambda a: a["position"],
    )
    turns = [m for a in earlier for m in ({"role": "user", "content": a["question"]}, _assistant(a["text"]))]
    return [*turns, {"role": "user", "content": answer["question"]}]


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _sft(ratings: list[dict], arena: list[dict]) -> list[dict]:
    liked = {r["answer_id"] for r in ratings if r["vote"] == "best" or (r["stars"] or 0) >= LIKED_STARS}
    disliked = {
        r["answer_id"]
        for r in ratings
        if r["hallucinated"] or (r["stars"] is not None and r["stars"] <= DISLIKED_STARS)
    }
    return [
        {
            "messages": [*_prompt(a, arena), _assistant(a["text"])],
            "answer_id": a["id"],
            "variant": a["variant"],
        }
        for a in arena
        if a["id"] in liked - disliked and not a["error"]
    ]


# -- writing -----------------------------------------------------------------------------------------------------


def _cell(value):
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def _save_dataset(rows: list[dict], out: Path) -> None:
    from datasets import Dataset

    if not rows:
        raise ExportError(f"--out {out}: nothing to export, and a dataset folder cannot be empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # a dict's keys differ between rows (judges, decoding), which Arrow cannot type: they go as JSON text
        flat = [
            {k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in row.items()} for row in rows
        ]
        Dataset.from_list(flat).save_to_disk(str(staging))
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
