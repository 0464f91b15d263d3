"""Reads: conversations, answers, ratings, judgements and claim flags of a run or of an eval; evals.

Arena rows come first, in their conversation order; eval rows after them, by eval (oldest first), QA pair and
variant. Each read is one transaction, so a report sees one consistent state.
"""

from __future__ import annotations

from workbench.store.connection import Connection

# An answer with the run it belongs to: through its turn's conversation (arena) or its eval.
_ANSWER_RUN = (
    "LEFT JOIN turns t ON t.id = a.turn_id LEFT JOIN conversations c ON c.id = t.conversation_id "
    "LEFT JOIN evals e ON e.id = a.eval_id"
)
# Arena rows first; eval rows by eval (oldest first), QA pair and variant. After the first, each key is NULL for an
# arena row, so the keys after these order arena rows as before evals existed.
_EVAL_ORDER = "a.eval_id IS NOT NULL, e.started_at, e.id, a.qa_id, CASE WHEN a.eval_id IS NOT NULL THEN a.variant END"


# Per queued question q: the raters shown it, and the raters who voted on it.
_SERVED = (
    "(SELECT COUNT(DISTINCT c.rater) FROM turns t JOIN conversations c ON c.id = t.conversation_id "
    "WHERE t.queue_question_id = q.id) AS served"
)
_VOTED = (
    "(SELECT COUNT(DISTINCT r.rater) FROM ratings r JOIN turns t ON t.id = r.turn_id "
    "WHERE t.queue_question_id = q.id AND r.vote IS NOT NULL) AS voted"
)


class Queries(Connection):
    def conversations(self, run: str | None = None) -> list[dict]:
        """Conversation rows (variants and blind order decoded), oldest first."""
        where, params = _where(("run", run))
        with self._transaction(write=False):
            return self._rows(f"SELECT * FROM conversations{where} ORDER BY id", params)

    def answers(self, run: str | None = None, eval_id: str | None = None) -> list[dict]:
        """Answer rows with `run`, and `conversation_id` and `position` (of the turn; None for an eval's answers):
        arena answers in conversation, turn and variant order, then eval answers by eval, QA pair and variant."""
        where, params = _where(("COALESCE(c.run, e.run)", run), ("a.eval_id", eval_id))
        with self._transaction(write=False):
            return self._rows(
                "SELECT a.*, COALESCE(c.run, e.run) AS run, t.conversation_id, t.position FROM answers a "
                f"{_ANSWER_RUN}{where} ORDER BY {_EVAL_ORDER}, c.id, t.position, a.variant",
                params,
            )

    def ratings(self, run: str | None = None) -> list[dict]:
        """Rating rows (of arena answers and turns) with `run`, `conversation_id`, the conversation's `blind_order`,
        `position` and the rated answer's `variant` (None for a turn-level rating), in the order first stored."""
        where, params = _where(("c.run", run))
        with self._transaction(write=False):
            return self._rows(
                "SELECT r.*, c.run, c.blind_order, t.conversation_id, t.position, t.queue_question_id, a.variant "
                "FROM ratings r "
                "JOIN turns t ON t.id = r.turn_id JOIN conversations c ON c.id = t.conversation_id "
                f"LEFT JOIN answers a ON a.id = r.answer_id{where} ORDER BY r.id",
                params,
            )

    def judgements(self, run: str | None = None, eval_id: str | None = None) -> list[dict]:
        """Judgement rows with the judged answer's `variant`, `run`, `eval_id` and `qa_id` (None for the arena's):
        arena judgements in the order stored, then eval judgements by eval, QA pair, variant and order stored."""
        where, params = _where(("COALESCE(c.run, e.run)", run), ("a.eval_id", eval_id))
        with self._transaction(write=False):
            return self._rows(
                "SELECT j.*, a.variant, COALESCE(c.run, e.run) AS run, a.eval_id, a.qa_id FROM judgements j "
                f"JOIN answers a ON a.id = j.answer_id {_ANSWER_RUN}{where} ORDER BY {_EVAL_ORDER}, j.id",
                params,
            )

    def claim_flags(self, run: str | None = None, eval_id: str | None = None) -> list[dict]:
        """Claim rows (evidence decoded) with the answer's `variant`, `run`, `eval_id` and `qa_id` (None for the
        arena's): arena claims by answer, detector and position, then eval claims by eval, QA pair, variant,
        detector and position."""
        where, params = _where(("COALESCE(c.run, e.run)", run), ("a.eval_id", eval_id))
        with self._transaction(write=False):
            return self._rows(
                "SELECT f.*, a.variant, COALESCE(c.run, e.run) AS run, a.eval_id, a.qa_id FROM claim_flags f "
                f"JOIN answers a ON a.id = f.answer_id {_ANSWER_RUN}{where} "
                f"ORDER BY {_EVAL_ORDER}, f.answer_id, f.detector, f.position",
                params,
            )

    def queue_questions(self, run: str, queue: str | None = None) -> list[dict]:
        """Queued questions of `run` (of one `queue` when given) in load order, each with `served` (raters who were
        shown it) and `voted` (raters who voted on it)."""
        where, params = _where(("q.run", run), ("q.queue", queue))
        with self._transaction(write=False):
            return self._rows(f"SELECT q.*, {_SERVED}, {_VOTED} FROM queue_questions q{where} ORDER BY q.id", params)

    def next_queue_question(self, run: str, queue: str, rater: str) -> dict | None:
        """The question of `queue` that `rater` should rate next, or None when they were shown every one: one never
        shown to them, those still short of their raters first, then the most voted (so that overlapping ratings,
        what agreement needs, build up from the first questions rather than one rater per question), earliest."""
        with self._transaction(write=False):
            return self._one(
                f"SELECT * FROM (SELECT q.*, {_SERVED}, {_VOTED} FROM queue_questions q "
                "WHERE q.run = ? AND q.queue = ? AND NOT EXISTS (SELECT 1 FROM turns t JOIN conversations c ON "
                "c.id = t.conversation_id WHERE t.queue_question_id = q.id AND c.rater = ?)) s "
                "ORDER BY CASE WHEN s.voted >= s.raters_wanted THEN 1 ELSE 0 END, s.voted DESC, s.position "
                "LIMIT 1",
                (run, queue, rater),
            )

    def eval(self, eval_id: str) -> dict | None:
        """The eval's row (variants, judges, config, adapter ids and counts decoded), or None."""
        with self._transaction(write=False):
            return self._one("SELECT * FROM evals WHERE id = ?", (eval_id,))

    def evals(self, run: str | None = None) -> list[dict]:
        """Eval rows, oldest first, each with `stored`: the number of its answers stored so far."""
        where, params = _where(("e.run", run))
        with self._transaction(write=False):
            return self._rows(
                "SELECT e.*, (SELECT COUNT(*) FROM answers a WHERE a.eval_id = e.id) AS stored FROM evals e"
                f"{where} ORDER BY e.started_at, e.id",
                params,
            )

    def eval_keys(self, eval_id: str) -> set[tuple[str, str]]:
        """The (qa_id, variant) pairs of the answers stored for the eval so far."""
        with self._transaction(write=False):
            rows = self._rows("SELECT qa_id, variant FROM answers WHERE eval_id = ?", (eval_id,))
        return {(row["qa_id"], row["variant"]) for row in rows}


def _where(*conditions: tuple[str, str | None]) -> tuple[str, tuple]:
    """` WHERE column = ? AND ...` over the conditions whose value is not None, and the values."""
    given = [(column, value) for column, value in conditions if value is not None]
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{column} = ?" for column, _ in given), tuple(value for _, value in given)
