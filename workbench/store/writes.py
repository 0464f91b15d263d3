"""Writes: runs, arena conversations, turns and answers, judgements, claim flags, ratings, and evals with their
answers. Each write method validates its input (errors name the field) and is one transaction."""

from __future__ import annotations

import math

from workbench.data.loaders import BadInputError
from workbench.store.connection import _JSON_COLUMNS, Connection, _json, _now
from workbench.workspace import check_name

VOTES = ("best", "tie", "all_bad")
"""`best` names the winning answer; `tie` and `all_bad` are about the whole turn."""

ANSWER_FIELDS = (
    "id",
    "turn_id",
    "variant",
    "question",
    "text",
    "prompt",
    "ttft_s",
    "total_s",
    "tokens_in",
    "tokens_out",
    "finish_reason",
    "decoding",
    "model_id",
    "precision",
    "adapter_id",
    "index_id",
    "chunk_ids",
    "chunk_scores",
    "error",
)
"""The keys of `workbench.engine.Answer.to_dict()`, which `add_answer` and `add_eval_answer` take as is."""

_ANSWER_DEFAULTS = {
    "precision": None,
    "adapter_id": None,
    "index_id": None,
    "chunk_ids": [],
    "chunk_scores": [],
    "error": None,
}
_CLAIM_KEYS = ("claim", "score", "supported", "evidence")
_JUDGEMENT_KEYS = ("judge", "score", "reason", "details")


class Writes(Connection):
    def ensure_run(
        self,
        name: str,
        config: dict | None = None,
        model_id: str | None = None,
        adapter_id: str | None = None,
        index_id: str | None = None,
    ) -> dict:
        """Create run `name`, or update the fields given; returns its row. (Each answer keeps the ids it used.)"""
        check_name(name)
        given = {"config": config, "model_id": model_id, "adapter_id": adapter_id, "index_id": index_id}
        given = {key: _json(value) if key == "config" else value for key, value in given.items() if value is not None}
        with self._transaction(write=True):
            if self._one("SELECT name FROM runs WHERE name = ?", (name,)) is None:
                row = {"name": name, "created_at": _now(), "config": "{}", **given}
                self._insert("runs", row)
            elif given:
                assignments = ", ".join(f"{key} = ?" for key in given)
                self._execute(f"UPDATE runs SET {assignments} WHERE name = ?", (*given.values(), name))
            return self._one("SELECT * FROM runs WHERE name = ?", (name,))

    # -- the arena -------------------------------------------------------------------------------------------------

    def start_conversation(self, run: str, rater: str, variants: list[str], blind_order: list[str]) -> int:
        """Start a conversation of `rater` comparing `variants`, shown in columns `blind_order`; returns its id."""
        _text("conversations.rater", rater)
        _variants("conversations.variants", variants)
        if sorted(blind_order) != sorted(variants):
            raise BadInputError(
                f"conversations.blind_order: {blind_order!r} is not an ordering of the variants {variants!r}"
            )
        with self._transaction(write=True):
            self._require_run(run, "conversations.run")
            row = {
                "run": run,
                "rater": rater,
                "variants": _json(variants),
                "blind_order": _json(blind_order),
                "created_at": _now(),
            }
            return self._insert("conversations", row, returning="id")

    def add_turn(self, conversation_id: int, turn_id: str, question: str, queue_question_id: int | None = None) -> int:
        """Add the next turn (the engine's `turn_id`) to a conversation; returns its position, from 0. A turn that
        answers a queued question names it (`queue_question_id`): it must be the question's text, asked first in a
        conversation of the queue's variants, so that every rater judges the same answers to the same prompt."""
        _text("turns.id", turn_id)
        if not isinstance(question, str):
            raise BadInputError(f"turns.question: expected text, got {type(question).__name__}")
        with self._transaction(write=True):
            found = self._one(
                "SELECT id, run, variants FROM conversations WHERE id = ?" + self._dialect.lock_row, (conversation_id,)
            )
            if found is None:
                raise BadInputError(
                    f"turns.conversation_id: no conversation {conversation_id!r}; start one with start_conversation"
                )
            if queue_question_id is not None:
                self._check_queued_turn(found, queue_question_id, question)
            if self._one("SELECT id FROM turns WHERE id = ?", (turn_id,)) is not None:
                raise BadInputError(f"turns.id: turn {turn_id!r} is already stored; each turn needs a fresh id")
            position = self._one("SELECT COUNT(*) AS n FROM turns WHERE conversation_id = ?", (conversation_id,))["n"]
            row = {
                "id": turn_id,
                "conversation_id": conversation_id,
                "position": position,
                "question": question,
                "created_at": _now(),
            }
            if queue_question_id is not None:
                if position:
                    raise BadInputError(
                        "turns.queue_question_id: a queued question must be a conversation's first turn"
                    )
                row["queue_question_id"] = queue_question_id
            self._insert("turns", row)
            return position

    def _check_queued_turn(self, conversation: dict, queue_question_id: int, question: str) -> None:
        queued = self._one("SELECT * FROM queue_questions WHERE id = ?", (queue_question_id,))
        if queued is None:
            raise BadInputError(f"turns.queue_question_id: no queued question {queue_question_id!r}")
        if queued["run"] != conversation["run"] or sorted(queued["variants"]) != sorted(conversation["variants"]):
            raise BadInputError(
                f"turns.queue_question_id: queue {queued['queue']!r} compares {queued['variants']} on run "
                f"{queued['run']}; this conversation compares {conversation['variants']} on run {conversation['run']}"
            )
        if question != queued["question"]:
            raise BadInputError("turns.question: a queued turn asks the queued question as it was loaded")

    def add_queue(
        self, run: str, queue: str, questions: list[dict], variants: list[str], raters_wanted: int = 2
    ) -> int:
        """Load question set `queue` of run `run`: `questions` ({question, qa_id}) served in this order, each to at
        least `raters_wanted` raters, with `variants` side by side; returns the number loaded. A queue is loaded
        once (its questions are what ratings refer to); load changed questions under a new name."""
        check_name(queue)
        _variants("queue_questions.variants", variants)
        if isinstance(raters_wanted, bool) or not isinstance(raters_wanted, int) or raters_wanted < 2:
            raise BadInputError(
                f"queue_questions.raters_wanted: {raters_wanted!r}; give 2 or more (agreement needs two raters)"
            )
        if not questions:
            raise BadInputError(f"queue {queue}: no questions to load")
        rows = []
        for position, item in enumerate(questions):
            _text(f"queue_questions[{position}].question", item.get("question"))
            rows.append(
                {
                    "run": run,
                    "queue": queue,
                    "position": position,
                    "question": item["question"],
                    "qa_id": item.get("qa_id"),
                    "variants": _json(list(variants)),
                    "raters_wanted": raters_wanted,
                    "created_at": _now(),
                }
            )
        with self._transaction(write=True):
            self._require_run(run, "queue_questions.run")
            if self._one("SELECT id FROM queue_questions WHERE run = ? AND queue = ?", (run, queue)):
                raise BadInputError(
                    f"queue {queue!r} of run {run} is already loaded; its ratings refer to its questions, so load a "
                    "changed question set under another name"
                )
            self._insert_many("queue_questions", rows)
        return len(rows)

    def add_answer(self, answer: dict) -> None:
        """Store one variant's answer to a turn: `workbench.engine.Answer.to_dict()` as is."""
        row = _answer_row(answer)
        _text("answers.turn_id", row["turn_id"])
        with self._transaction(write=True):
            turn = self._one(
                "SELECT c.variants FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE t.id = ?",
                (row["turn_id"],),
            )
            if turn is None:
                raise BadInputError(f"answers.turn_id: no turn {row['turn_id']!r}; add it with add_turn first")
            if row["variant"] not in turn["variants"]:
                raise BadInputError(
                    f"answers.variant: {row['variant']!r} is not one of this conversation's variants {turn['variants']}"
                )
            self._require_new_answer(row["id"])
            if self._one("SELECT id FROM answers WHERE turn_id = ? AND variant = ?", (row["turn_id"], row["variant"])):
                raise BadInputError(
                    f"answers.variant: turn {row['turn_id']!r} already has an answer from {row['variant']!r}"
                )
            self._insert("answers", row)

    def add_judgement(
        self, answer_id: str, judge: str, score: float | None, reason: str | None = None, details: dict | None = None
    ) -> None:
        """Record judge `judge`'s score of an answer, or None plus the reason it failed; judging again replaces it."""
        row = _judgement_row("judgements", answer_id, judge, score, reason, details)
        with self._transaction(write=True):
            self._require_answer(answer_id, "judgements.answer_id")
            self._execute(
                "INSERT INTO judgements (answer_id, judge, score, reason, details, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, judge) DO UPDATE SET score = excluded.score, "
                "reason = excluded.reason, details = excluded.details, created_at = excluded.created_at",
                tuple(row.values()),
            )

    def add_claims(self, answer_id: str, detector: str, claims: list[dict]) -> None:
        """Record detector `detector`'s claims of an answer, each `{claim, score (0..1, high = likely unsupported),
        supported, evidence: [{chunk_id, text, score}]}`; checking again replaces them."""
        rows = _claim_rows("claims", answer_id, detector, claims)
        with self._transaction(write=True):
            self._require_answer(answer_id, "claim_flags.answer_id")
            self._execute("DELETE FROM claim_flags WHERE answer_id = ? AND detector = ?", (answer_id, detector))
            self._insert_many("claim_flags", rows)

    def add_rating(
        self,
        turn_id: str,
        rater: str,
        answer_id: str | None = None,
        stars: int | None = None,
        vote: str | None = None,
        hallucinated: bool | None = None,
        comment: str | None = None,
    ) -> int:
        """Record a rater's rating of an answer (stars, hallucination flag, `best` vote, comment) or of the whole
        turn (answer_id None: a `tie` or `all_bad` vote, comment); returns its id.

        It replaces the rater's earlier rating of the same answer (or turn), so send the whole rating; a vote
        replaces the rater's earlier vote on the turn.
        """
        _text("ratings.rater", rater)
        if stars is not None and (isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5):
            raise BadInputError(f"ratings.stars: {stars!r} is not a star rating; give an integer from 1 to 5, or None")
        if vote is not None and vote not in VOTES:
            raise BadInputError(f"ratings.vote: {vote!r} is not a vote; use one of {', '.join(VOTES)}, or None")
        if hallucinated is not None and not isinstance(hallucinated, bool):
            raise BadInputError(f"ratings.hallucinated: {hallucinated!r}; give True, False or None")
        if comment is not None and not isinstance(comment, str):
            raise BadInputError(f"ratings.comment: expected text, got {type(comment).__name__}")
        if stars is None and vote is None and hallucinated is None and not comment:
            raise BadInputError("ratings: nothing to store; give stars, vote, hallucinated or comment")
        if answer_id is None and (stars is not None or hallucinated is not None):
            raise BadInputError("ratings.answer_id: stars and the hallucination flag rate one answer; pass answer_id")
        if vote == "best" and answer_id is None:
            raise BadInputError("ratings.answer_id: a 'best' vote names the winning answer; pass its answer_id")
        if vote in ("tie", "all_bad") and answer_id is not None:
            raise BadInputError(f"ratings.vote: {vote!r} is about the whole turn; pass answer_id=None")
        with self._transaction(write=True):
            if self._one("SELECT id FROM turns WHERE id = ?", (turn_id,)) is None:
                raise BadInputError(f"ratings.turn_id: no turn {turn_id!r} in {self.where}")
            if answer_id is not None:
                owner = self._require_answer(answer_id, "ratings.answer_id")["turn_id"]
                if owner is None:
                    raise BadInputError(
                        f"ratings.answer_id: answer {answer_id!r} is an eval's; raters rate arena answers"
                    )
                if owner != turn_id:
                    raise BadInputError(
                        f"ratings.answer_id: answer {answer_id!r} belongs to turn {owner!r}, not {turn_id!r}"
                    )
            if vote is not None:
                self._execute(
                    "UPDATE ratings SET vote = NULL WHERE turn_id = ? AND rater = ? AND vote IS NOT NULL",
                    (turn_id, rater),
                )
                self._execute(
                    "DELETE FROM ratings WHERE turn_id = ? AND rater = ? AND stars IS NULL AND vote IS NULL "
                    "AND hallucinated IS NULL AND comment IS NULL",
                    (turn_id, rater),
                )
            target = (
                "(answer_id, rater) WHERE answer_id IS NOT NULL"
                if answer_id
                else "(turn_id, rater) WHERE answer_id IS NULL"
            )
            return self._execute(
                "INSERT INTO ratings (turn_id, answer_id, rater, stars, vote, hallucinated, comment, created_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT {target} DO UPDATE SET stars = excluded.stars, "
                "vote = excluded.vote, hallucinated = excluded.hallucinated, comment = excluded.comment, "
                "created_at = excluded.created_at RETURNING id",
                (turn_id, answer_id, rater, stars, vote, hallucinated, comment, _now()),
            ).fetchone()["id"]

    # -- evals -----------------------------------------------------------------------------------------------------

    def start_eval(
        self,
        eval_id: str,
        run: str,
        split: str,
        variants: list[str],
        judges: list[str],
        config_hash: str,
        config: dict,
        model_id: str | None,
        adapter_ids: dict[str, str | None],
        index_id: str | None,
        questions: int,
    ) -> dict:
        """Start eval `eval_id` of run `run` over `split` ("test", "val" or a file path) with `questions` QA pairs,
        answered by `variants` (`adapter_ids`: variant -> adapter id) and scored by `judges`; returns its row.

        If `eval_id` is already stored, its row is returned unchanged: compare `config_hash` (and the rest) to decide
        whether resuming it is right.
        """
        _text("evals.id", eval_id)
        _text("evals.split", split)
        _variants("evals.variants", variants)
        if not isinstance(judges, list) or not all(isinstance(j, str) and j for j in judges):
            raise BadInputError(f"evals.judges: {judges!r}; give a list of judge names (may be empty)")
        if len(set(judges)) != len(judges):
            raise BadInputError(f"evals.judges: {judges!r} names a judge twice")
        _text("evals.config_hash", config_hash)
        if not isinstance(config, dict):
            raise BadInputError(f"evals.config: expected a dict, got {type(config).__name__}")
        for field, value in (("evals.model_id", model_id), ("evals.index_id", index_id)):
            if value is not None:
                _text(field, value)
        if not isinstance(adapter_ids, dict) or not all(isinstance(a, str) or a is None for a in adapter_ids.values()):
            raise BadInputError(f"evals.adapter_ids: {adapter_ids!r}; give a dict of variant -> adapter id or None")
        if unknown := sorted(adapter_ids.keys() - set(variants)):
            raise BadInputError(f"evals.adapter_ids: {unknown} are not among the variants {variants}")
        if isinstance(questions, bool) or not isinstance(questions, int) or questions < 0:
            raise BadInputError(f"evals.questions: {questions!r}; give the number of QA pairs, an integer >= 0")
        with self._transaction(write=True):
            found = self._one("SELECT * FROM evals WHERE id = ?", (eval_id,))
            if found is not None:
                return found
            self._require_run(run, "evals.run")
            row = {
                "id": eval_id,
                "run": run,
                "split": split,
                "variants": _json(variants),
                "judges": _json(judges),
                "config_hash": config_hash,
                "config": _json(config),
                "model_id": model_id,
                "adapter_ids": _json(adapter_ids),
                "index_id": index_id,
                "questions": questions,
                "started_at": _now(),
                "finished_at": None,
                "counts": "{}",
            }
            self._insert("evals", row)
            return self._one("SELECT * FROM evals WHERE id = ?", (eval_id,))

    def add_eval_answer(
        self,
        eval_id: str,
        qa_id: str,
        answer: dict,
        gold_rank: int | None = None,
        judgements: list[dict] | tuple = (),
        claims: tuple[str, list[dict]] | None = None,
    ) -> None:
        """Store one variant's answer to QA pair `qa_id` of an eval, with its judgements and claims, all or nothing.

        `answer` is `workbench.engine.Answer.to_dict()` (its `turn_id` is ignored); `gold_rank` the 1-based rank of
        the first chunk of a gold document among the sources shown, 0 if none is, None without sources or gold
        documents; `judgements` `Judgement.to_dict()`s (`{judge, score, reason, details}`); `claims` None or
        `(detector, claims)` as `add_claims` takes them. One answer per (eval, QA pair, variant).
        """
        _text("answers.eval_id", eval_id)
        _text("answers.qa_id", qa_id)
        row = {**_answer_row(answer), "turn_id": None, "eval_id": eval_id, "qa_id": qa_id, "gold_rank": gold_rank}
        if gold_rank is not None and (isinstance(gold_rank, bool) or not isinstance(gold_rank, int) or gold_rank < 0):
            raise BadInputError(f"answers.gold_rank: {gold_rank!r}; give a rank from 1, 0 for no gold source, or None")
        judgement_rows = []
        for i, judgement in enumerate(judgements):
            field = f"judgements[{i}]"
            if not isinstance(judgement, dict) or not {"judge", "score"} <= judgement.keys() <= set(_JUDGEMENT_KEYS):
                keys = sorted(judgement) if isinstance(judgement, dict) else type(judgement).__name__
                raise BadInputError(f"{field}: got {keys}; give judge, score, reason and details (Judgement.to_dict())")
            judgement_row = _judgement_row(field, row["id"], **{"reason": None, "details": None, **judgement})
            if judgement_row["judge"] in {j["judge"] for j in judgement_rows}:
                raise BadInputError(f"{field}.judge: {judgement_row['judge']!r} judges this answer twice")
            judgement_rows.append(judgement_row)
        claim_rows = []
        if claims is not None:
            if not isinstance(claims, tuple | list) or len(claims) != 2:
                raise BadInputError(f"claims: {claims!r}; give None or (detector, [claim, ...])")
            claim_rows = _claim_rows("claims", row["id"], *claims)
        with self._transaction(write=True):
            found = self._one("SELECT variants FROM evals WHERE id = ?", (eval_id,))
            if found is None:
                raise BadInputError(f"answers.eval_id: no eval {eval_id!r} in {self.where}; start it with start_eval")
            if row["variant"] not in found["variants"]:
                raise BadInputError(
                    f"answers.variant: {row['variant']!r} is not one of eval {eval_id!r}'s variants {found['variants']}"
                )
            self._require_new_answer(row["id"])
            if self._one(
                "SELECT id FROM answers WHERE eval_id = ? AND qa_id = ? AND variant = ?",
                (eval_id, qa_id, row["variant"]),
            ):
                raise BadInputError(
                    f"answers.qa_id: eval {eval_id!r} already has an answer to {qa_id!r} from {row['variant']!r}"
                )
            self._insert("answers", row)
            self._insert_many("judgements", judgement_rows)
            self._insert_many("claim_flags", claim_rows)

    def finish_eval(self, eval_id: str, counts: dict) -> None:
        """Mark an eval finished now, with its `counts` (say `{"answers": 168, "errors": 0}`)."""
        if not isinstance(counts, dict) or not all(isinstance(key, str) for key in counts):
            raise BadInputError(f"evals.counts: {counts!r}; give a dict of name -> count")
        with self._transaction(write=True):
            done = self._execute(
                "UPDATE evals SET finished_at = ?, counts = ? WHERE id = ?", (_now(), _json(counts), eval_id)
            )
            if done.rowcount != 1:
                raise BadInputError(f"evals.id: no eval {eval_id!r} in {self.where}; start it with start_eval")

    # -- checks inside a transaction -------------------------------------------------------------------------------

    def _require_run(self, run: str, field: str) -> None:
        if self._one("SELECT name FROM runs WHERE name = ?", (run,)) is None:
            raise BadInputError(f"{field}: no run {run!r} in {self.where}; call ensure_run({run!r}) first")

    def _require_answer(self, answer_id: str, field: str) -> dict:
        found = self._one("SELECT id, turn_id FROM answers WHERE id = ?", (answer_id,))
        if found is None:
            raise BadInputError(f"{field}: no answer {answer_id!r} in {self.where}; store it with add_answer first")
        return found

    def _require_new_answer(self, answer_id: str) -> None:
        if self._one("SELECT id FROM answers WHERE id = ?", (answer_id,)) is not None:
            raise BadInputError(f"answers.id: answer {answer_id!r} is already stored")


def _answer_row(answer: dict) -> dict:
    """The answers row of `Answer.to_dict()` (JSON columns encoded), without its turn or eval checked."""
    if not isinstance(answer, dict):
        raise BadInputError(f"answers: expected `Answer.to_dict()` (workbench.engine), got {type(answer).__name__}")
    missing = sorted(set(ANSWER_FIELDS) - set(_ANSWER_DEFAULTS) - answer.keys())
    unknown = sorted(answer.keys() - set(ANSWER_FIELDS))
    if missing or unknown:
        raise BadInputError(
            f"answers: missing keys {missing}, unknown keys {unknown}; pass `Answer.to_dict()` (workbench.engine)"
        )
    answer = {**_ANSWER_DEFAULTS, **answer}
    for key in ("id", "variant"):
        _text(f"answers.{key}", answer[key])
    row = {key: _json(value) if key in _JSON_COLUMNS else value for key, value in answer.items()}
    return {**row, "created_at": _now()}


def _judgement_row(
    field: str, answer_id: str, judge: str, score: float | None, reason: str | None, details: dict | None
) -> dict:
    _text(f"{field}.judge", judge)
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        raise BadInputError(f"{field}.score: {score!r} is not a number; store None plus the reason instead")
    if score is None and not reason:
        raise BadInputError(f"{field}.reason: a judgement without a score needs the reason the judge failed")
    if reason is not None and not isinstance(reason, str):
        raise BadInputError(f"{field}.reason: expected text, got {type(reason).__name__}")
    if details is not None and not isinstance(details, dict):
        raise BadInputError(f"{field}.details: expected a dict, got {type(details).__name__}")
    return {
        "answer_id": answer_id,
        "judge": judge,
        "score": score,
        "reason": reason,
        "details": _json(details or {}),
        "created_at": _now(),
    }


def _claim_rows(field: str, answer_id: str, detector: str, claims: list[dict]) -> list[dict]:
    _text("claim_flags.detector", detector)
    if not isinstance(claims, list):
        raise BadInputError(f"{field}: expected a list of claims, got {type(claims).__name__}")
    return [
        _claim_row(f"{field}[{position}]", claim, answer_id, detector, position)
        for position, claim in enumerate(claims)
    ]


def _claim_row(field: str, claim: dict, answer_id: str, detector: str, position: int) -> dict:
    if (
        not isinstance(claim, dict)
        or not {"claim", "score", "supported"} <= claim.keys()
        or claim.keys() - set(_CLAIM_KEYS)
    ):
        keys = sorted(claim) if isinstance(claim, dict) else type(claim).__name__
        raise BadInputError(f"{field}: got {keys}; give claim, score, supported and optionally evidence")
    score, evidence = claim["score"], claim.get("evidence", [])
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise BadInputError(f"{field}.score: {score!r}; give a number from 0 to 1 (high = likely unsupported)")
    if not isinstance(claim["supported"], bool):
        raise BadInputError(f"{field}.supported: {claim['supported']!r}; give True or False")
    if not isinstance(evidence, list) or not all(isinstance(e, dict) for e in evidence):
        raise BadInputError(f"{field}.evidence: give a list of {{chunk_id, text, score}} objects")
    _text(f"{field}.claim", claim["claim"])
    return {
        "answer_id": answer_id,
        "detector": detector,
        "position": position,
        "claim": claim["claim"],
        "score": score,
        "supported": claim["supported"],
        "evidence": _json(evidence),
        "created_at": _now(),
    }


def _variants(field: str, variants: list[str]) -> None:
    if (
        not isinstance(variants, list | tuple)
        or not variants
        or not all(isinstance(v, str) and v for v in variants)
        or len(set(variants)) != len(variants)
    ):
        raise BadInputError(f"{field}: {variants!r}; give a non-empty list of distinct names")


def _text(field: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{field}: {value!r}; give a non-empty text")
    return value
