"""The durable store of runs, conversations, answers, automatic checks and human ratings.

Everything a later report needs is kept here, so statistics can be computed from the store alone: each answer
with its prompt, timings, decoding parameters, model/adapter/index ids and retrieved chunk ids; each judge's
score (NULL plus the reason when it failed, never a made-up number); each detector's claims; each rating.

SQLite by default (`HOME/workbench.db`, WAL, foreign keys on, `synchronous=FULL`), PostgreSQL for teams
(`postgresql://...`, through psycopg 3), same schema and API. Each write method is one transaction, so a crash
keeps every committed write and none of a half-done one. The schema is versioned: `MIGRATIONS[i]` takes the
store from version i to i + 1, each in its own transaction; a store newer than this code is refused.

Threads: a `Store` holds one connection that its methods share under a lock; each method runs its whole
transaction under it. The app's writes are few and short, and SQLite serialises writers anyway. Separate
processes open their own `Store`; a SQLite writer waits up to 30 s for another's lock.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from workbench.data.loaders import BadInputError
from workbench.workspace import check_name, resolve_home, write_text_atomic

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
"""The keys of `workbench.engine.Answer.to_dict()`, which `add_answer` takes as is."""

_ANSWER_DEFAULTS = {
    "precision": None,
    "adapter_id": None,
    "index_id": None,
    "chunk_ids": [],
    "chunk_scores": [],
    "error": None,
}
_CLAIM_KEYS = ("claim", "score", "supported", "evidence")
_JSON_COLUMNS = {
    "config",
    "variants",
    "blind_order",
    "prompt",
    "decoding",
    "chunk_ids",
    "chunk_scores",
    "details",
    "evidence",
}
_BOOL_COLUMNS = {"supported", "hallucinated"}
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

# `{serial}` is the dialect's auto-increment integer key; JSON columns are TEXT holding JSON on both.
_SCHEMA_1 = (
    """CREATE TABLE runs (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        config TEXT NOT NULL,
        model_id TEXT,
        adapter_id TEXT,
        index_id TEXT
    )""",
    """CREATE TABLE conversations (
        id {serial} PRIMARY KEY,
        run TEXT NOT NULL REFERENCES runs (name),
        rater TEXT NOT NULL,
        variants TEXT NOT NULL,
        blind_order TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX conversations_run ON conversations (run)",
    """CREATE TABLE turns (
        id TEXT PRIMARY KEY,
        conversation_id BIGINT NOT NULL REFERENCES conversations (id),
        position INTEGER NOT NULL,
        question TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (conversation_id, position)
    )""",
    """CREATE TABLE answers (
        id TEXT PRIMARY KEY,
        turn_id TEXT NOT NULL REFERENCES turns (id),
        variant TEXT NOT NULL,
        question TEXT NOT NULL,
        text TEXT NOT NULL,
        prompt TEXT NOT NULL,
        ttft_s DOUBLE PRECISION,
        total_s DOUBLE PRECISION,
        tokens_in INTEGER,
        tokens_out INTEGER,
        finish_reason TEXT,
        decoding TEXT NOT NULL,
        model_id TEXT,
        precision TEXT,
        adapter_id TEXT,
        index_id TEXT,
        chunk_ids TEXT NOT NULL,
        chunk_scores TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (turn_id, variant)
    )""",
    """CREATE TABLE judgements (
        id {serial} PRIMARY KEY,
        answer_id TEXT NOT NULL REFERENCES answers (id),
        judge TEXT NOT NULL,
        score DOUBLE PRECISION,
        reason TEXT,
        details TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (answer_id, judge),
        CHECK (score IS NOT NULL OR reason IS NOT NULL)
    )""",
    """CREATE TABLE claim_flags (
        id {serial} PRIMARY KEY,
        answer_id TEXT NOT NULL REFERENCES answers (id),
        detector TEXT NOT NULL,
        position INTEGER NOT NULL,
        claim TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score <= 1),
        supported BOOLEAN NOT NULL,
        evidence TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (answer_id, detector, position)
    )""",
    """CREATE TABLE ratings (
        id {serial} PRIMARY KEY,
        turn_id TEXT NOT NULL REFERENCES turns (id),
        answer_id TEXT REFERENCES answers (id),
        rater TEXT NOT NULL,
        stars INTEGER CHECK (stars BETWEEN 1 AND 5),
        vote TEXT CHECK (vote IN ('best', 'tie', 'all_bad')),
        hallucinated BOOLEAN,
        comment TEXT,
        created_at TEXT NOT NULL,
        CHECK (vote IS NULL OR (vote = 'best') = (answer_id IS NOT NULL)),
        CHECK (answer_id IS NOT NULL OR (stars IS NULL AND hallucinated IS NULL))
    )""",
    "CREATE INDEX ratings_turn ON ratings (turn_id)",
    # One rating per rater and answer, one turn-level rating per rater and turn, one vote per rater and turn.
    "CREATE UNIQUE INDEX ratings_answer_rater ON ratings (answer_id, rater) WHERE answer_id IS NOT NULL",
    "CREATE UNIQUE INDEX ratings_turn_rater ON ratings (turn_id, rater) WHERE answer_id IS NULL",
    "CREATE UNIQUE INDEX ratings_vote ON ratings (turn_id, rater) WHERE vote IS NOT NULL",
)

MIGRATIONS: list[tuple[str, ...]] = [_SCHEMA_1]
"""`MIGRATIONS[i]` holds the statements that take a store from schema version i to i + 1."""


class StoreUnusable(BadInputError):
    """The store cannot be opened or upgraded; the message names it and what to do."""


@dataclass(frozen=True)
class _Dialect:
    serial: str
    placeholder: str
    begin_write: str
    begin_read: str
    lock_row: str
    lock_migrations: str | None

    def sql(self, statement: str) -> str:
        return statement.replace("{serial}", self.serial).replace("?", self.placeholder)


_SQLITE = _Dialect("INTEGER", "?", "BEGIN IMMEDIATE", "BEGIN", "", None)
_POSTGRES = _Dialect(
    "BIGSERIAL",
    "%s",
    "BEGIN",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    " FOR UPDATE",
    "SELECT pg_advisory_xact_lock(7263540)",
)


class Store:
    """Runs, conversations, turns, answers, judgements, claim flags and ratings; open with `Store.open`.

    `where` is the SQLite path or the PostgreSQL URL without its password, for messages.
    """

    def __init__(self, connection, dialect: _Dialect, where: str):
        self._conn = connection
        self._dialect = dialect
        self.where = where
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, target: str | Path | None = None, home: str | Path | None = None) -> Store:
        """Open (creating or upgrading) the store: None -> `$WORKBENCH_DB` if set, else `HOME/workbench.db`; a path
        or `sqlite:///path`; or `postgresql://...`."""
        target = target if target is not None else os.environ.get("WORKBENCH_DB") or None
        if target is None:
            store = cls._open_sqlite(resolve_home(home) / "workbench.db")
        elif isinstance(target, str) and re.match(r"postgres(ql)?://", target):
            store = cls._open_postgres(target)
        elif isinstance(target, str) and target.startswith("sqlite:///"):
            store = cls._open_sqlite(Path(target.removeprefix("sqlite:///")))
        elif isinstance(target, str) and "://" in target:
            raise StoreUnusable(f"{_redact(target)}: unknown store URL; use a path, sqlite:///PATH or postgresql://...")
        else:
            store = cls._open_sqlite(Path(target))
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _open_sqlite(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = None
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreUnusable(f"{path}: cannot use as a SQLite store ({exc}); move it away or open another") from None
        conn.row_factory = _dict_row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        return cls(conn, _SQLITE, str(path))

    @classmethod
    def _open_postgres(cls, url: str) -> Store:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise StoreUnusable(
                f"{_redact(url)}: PostgreSQL stores need psycopg; install it with `pip install 'workbench[postgres]'`"
            ) from None
        try:
            conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise StoreUnusable(
                f"{_redact(url)}: cannot connect ({exc}); check the URL and that the server accepts you"
            ) from None
        return cls(conn, _POSTGRES, _redact(url))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions and schema -----------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[None]:
        """One transaction around the block; a nested block joins the enclosing one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute(self._dialect.begin_write if write else self._dialect.begin_read)
            self._depth = 1
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._in_transaction():
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _in_transaction(self) -> bool:
        if isinstance(self._conn, sqlite3.Connection):
            return self._conn.in_transaction
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def _execute(self, statement: str, params: tuple = ()):
        return self._conn.execute(self._dialect.sql(statement), params)

    def _rows(self, statement: str, params: tuple = ()) -> list[dict]:
        return [_decode(row) for row in self._execute(statement, params).fetchall()]

    def _one(self, statement: str, params: tuple = ()) -> dict | None:
        rows = self._rows(statement, params)
        return rows[0] if rows else None

    def schema_version(self) -> int:
        with self._transaction(write=False):
            return self._one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")["v"]

    def _migrate(self) -> None:
        while True:
            with self._transaction(write=True):
                if self._dialect.lock_migrations:
                    self._execute(self._dialect.lock_migrations)
                self._execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                version = self.schema_version()
                if version > len(MIGRATIONS):
                    raise StoreUnusable(
                        f"{self.where}: the store has schema version {version} but this workbench knows versions up "
                        f"to {len(MIGRATIONS)}; upgrade workbench (`pip install -U workbench`) or open another store"
                    )
                if version == len(MIGRATIONS):
                    return
                try:
                    for statement in MIGRATIONS[version]:
                        self._execute(statement)
                except Exception as exc:
                    raise StoreUnusable(
                        f"{self.where}: upgrading the store to schema version {version + 1} failed ({exc}); it is "
                        f"left at version {version}. Is this a workbench store? If not, open another one"
                    ) from exc
                self._execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version + 1, _now())
                )

    # -- writes ----------------------------------------------------------------------------------------------------

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

    def start_conversation(self, run: str, rater: str, variants: list[str], blind_order: list[str]) -> int:
        """Start a conversation of `rater` comparing `variants`, shown in columns `blind_order`; returns its id."""
        _text("conversations.rater", rater)
        if not variants or not all(isinstance(v, str) and v for v in variants) or len(set(variants)) != len(variants):
            raise BadInputError(f"conversations.variants: {variants!r}; give a non-empty list of distinct names")
        if sorted(blind_order) != sorted(variants):
            raise BadInputError(
                f"conversations.blind_order: {blind_order!r} is not an ordering of the variants {variants!r}"
            )
        with self._transaction(write=True):
            if self._one("SELECT name FROM runs WHERE name = ?", (run,)) is None:
                raise BadInputError(
                    f"conversations.run: no run {run!r} in {self.where}; call ensure_run({run!r}) first"
                )
            row = {
                "run": run,
                "rater": rater,
                "variants": _json(variants),
                "blind_order": _json(blind_order),
                "created_at": _now(),
            }
            return self._insert("conversations", row, returning="id")

    def add_turn(self, conversation_id: int, turn_id: str, question: str) -> int:
        """Add the next turn (the engine's `turn_id`) to a conversation; returns its position, from 0."""
        _text("turns.id", turn_id)
        if not isinstance(question, str):
            raise BadInputError(f"turns.question: expected text, got {type(question).__name__}")
        with self._transaction(write=True):
            found = self._one("SELECT id FROM conversations WHERE id = ?" + self._dialect.lock_row, (conversation_id,))
            if found is None:
                raise BadInputError(
                    f"turns.conversation_id: no conversation {conversation_id!r}; start one with start_conversation"
                )
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
            self._insert("turns", row)
            return position

    def add_answer(self, answer: dict) -> None:
        """Store one variant's answer to a turn: `workbench.engine.Answer.to_dict()` as is."""
        missing = sorted(set(ANSWER_FIELDS) - set(_ANSWER_DEFAULTS) - answer.keys())
        unknown = sorted(answer.keys() - set(ANSWER_FIELDS))
        if missing or unknown:
            raise BadInputError(
                f"answers: missing keys {missing}, unknown keys {unknown}; pass `Answer.to_dict()` (workbench.engine)"
            )
        answer = {**_ANSWER_DEFAULTS, **answer}
        for key in ("id", "turn_id", "variant"):
            _text(f"answers.{key}", answer[key])
        with self._transaction(write=True):
            turn = self._one(
                "SELECT c.variants FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE t.id = ?",
                (answer["turn_id"],),
            )
            if turn is None:
                raise BadInputError(f"answers.turn_id: no turn {answer['turn_id']!r}; add it with add_turn first")
            if answer["variant"] not in turn["variants"]:
                raise BadInputError(
                    f"answers.variant: {answer['variant']!r} is not one of this conversation's variants "
                    f"{turn['variants']}"
                )
            if self._one("SELECT id FROM answers WHERE id = ?", (answer["id"],)) is not None:
                raise BadInputError(f"answers.id: answer {answer['id']!r} is already stored")
            if self._one(
                "SELECT id FROM answers WHERE turn_id = ? AND variant = ?", (answer["turn_id"], answer["variant"])
            ):
                raise BadInputError(
                    f"answers.variant: turn {answer['turn_id']!r} already has an answer from {answer['variant']!r}"
                )
            row = {key: _json(value) if key in _JSON_COLUMNS else value for key, value in answer.items()}
            self._insert("answers", {**row, "created_at": _now()})

    def add_judgement(
        self, answer_id: str, judge: str, score: float | None, reason: str | None = None, details: dict | None = None
    ) -> None:
        """Record judge `judge`'s score of an answer, or None plus the reason it failed; judging again replaces it."""
        _text("judgements.judge", judge)
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
        ):
            raise BadInputError(f"judgements.score: {score!r} is not a number; store None plus the reason instead")
        if score is None and not reason:
            raise BadInputError("judgements.reason: a judgement without a score needs the reason the judge failed")
        with self._transaction(write=True):
            self._require_answer(answer_id, "judgements.answer_id")
            self._execute(
                "INSERT INTO judgements (answer_id, judge, score, reason, details, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (answer_id, judge) DO UPDATE SET score = excluded.score, reason = excluded.reason, "
                "details = excluded.details, created_at = excluded.created_at",
                (answer_id, judge, score, reason, _json(details or {}), _now()),
            )

    def add_claims(self, answer_id: str, detector: str, claims: list[dict]) -> None:
        """Record detector `detector`'s claims of an answer, each `{claim, score (0..1, high = likely unsupported),
        supported, evidence: [{chunk_id, text, score}]}`; checking again replaces them."""
        _text("claim_flags.detector", detector)
        rows = []
        for position, claim in enumerate(claims):
            rows.append(_claim_row(f"claims[{position}]", claim, answer_id, detector, position))
        with self._transaction(write=True):
            self._require_answer(answer_id, "claim_flags.answer_id")
            self._execute("DELETE FROM claim_flags WHERE answer_id = ? AND detector = ?", (answer_id, detector))
            if rows:
                columns = ", ".join(rows[0])
                marks = ", ".join("?" for _ in rows[0])
                self._conn.cursor().executemany(
                    self._dialect.sql(f"INSERT INTO claim_flags ({columns}) VALUES ({marks})"),
                    [tuple(row.values()) for row in rows],
                )

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

    def _insert(self, table: str, row: dict, returning: str | None = None):
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        tail = f" RETURNING {returning}" if returning else ""
        cursor = self._execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}", tuple(row.values()))
        return cursor.fetchone()[returning] if returning else None

    def _require_answer(self, answer_id: str, field: str) -> dict:
        found = self._one("SELECT id, turn_id FROM answers WHERE id = ?", (answer_id,))
        if found is None:
            raise BadInputError(f"{field}: no answer {answer_id!r} in {self.where}; store it with add_answer first")
        return found

    # -- reads -----------------------------------------------------------------------------------------------------

    def conversations(self, run: str | None = None) -> list[dict]:
        """Conversation rows (variants and blind order decoded), oldest first."""
        with self._transaction(write=False):
            return self._rows("SELECT * FROM conversations" + _where_run("run", run) + " ORDER BY id", _params(run))

    def answers(self, run: str | None = None) -> list[dict]:
        """Answer rows with `run`, `conversation_id` and `position` (of the turn), in conversation and turn order."""
        with self._transaction(write=False):
            return self._rows(
                "SELECT a.*, c.run, t.conversation_id, t.position FROM answers a JOIN turns t ON t.id = a.turn_id "
                "JOIN conversations c ON c.id = t.conversation_id"
                + _where_run("c.run", run)
                + " ORDER BY c.id, t.position, a.variant",
                _params(run),
            )

    def ratings(self, run: str | None = None) -> list[dict]:
        """Rating rows with `run`, `conversation_id`, `position` and the rated answer's `variant` (None for a
        turn-level rating), in the order first stored."""
        with self._transaction(write=False):
            return self._rows(
                "SELECT r.*, c.run, t.conversation_id, t.position, a.variant FROM ratings r "
                "JOIN turns t ON t.id = r.turn_id JOIN conversations c ON c.id = t.conversation_id "
                "LEFT JOIN answers a ON a.id = r.answer_id" + _where_run("c.run", run) + " ORDER BY r.id",
                _params(run),
            )

    def judgements(self, run: str | None = None) -> list[dict]:
        """Judgement rows with the judged answer's `variant` and `run`."""
        with self._transaction(write=False):
            return self._rows(
                "SELECT j.*, a.variant, c.run FROM judgements j JOIN answers a ON a.id = j.answer_id "
                "JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id"
                + _where_run("c.run", run)
                + " ORDER BY j.id",
                _params(run),
            )

    def claim_flags(self, run: str | None = None) -> list[dict]:
        """Claim rows (evidence decoded) with the answer's `variant` and `run`, by answer, detector and position."""
        with self._transaction(write=False):
            return self._rows(
                "SELECT f.*, a.variant, c.run FROM claim_flags f JOIN answers a ON a.id = f.answer_id "
                "JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id"
                + _where_run("c.run", run)
                + " ORDER BY f.answer_id, f.detector, f.position",
                _params(run),
            )

    def variant_summary(self, run: str) -> dict[str, dict]:
        """Per variant of `run`, by name: see `summarize`."""
        with self._transaction(write=False):
            return summarize(self.answers(run), self.ratings(run), self.judgements(run), self.claim_flags(run))

    def export_ratings_csv(self, path: str | Path, run: str | None = None) -> int:
        """Write the ratings (columns `RATING_CSV_COLUMNS`) to `path` atomically; returns the number of rows."""
        rows = self.ratings(run)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(RATING_CSV_COLUMNS)
        writer.writerows([row[column] for column in RATING_CSV_COLUMNS] for row in rows)
        write_text_atomic(Path(path), buffer.getvalue())
        return len(rows)


def summarize(answers: list[dict], ratings: list[dict], judgements: list[dict], claims: list[dict]) -> dict[str, dict]:
    """Per variant, from the rows of `Store.answers/ratings/judgements/claim_flags` of one run:

    `answers`; `ratings` (answer-level ratings) and `mean_stars` (None without stars); `wins` (`best` votes on
    its answers); `ties` and `all_bad` (such votes on turns it answered); `human_flagged` (answers a rater flagged
    as hallucinated) and `human_flag_rate` (over answers with a True/False flag; None without one);
    `auto_flagged` ({detector: answers with an unsupported claim}); `judges` ({judge: {mean, scored, failed}},
    mean over scored answers, failed = NULL scores).
    """
    variant_of = {a["id"]: a["variant"] for a in answers}
    turn_variants: dict[str, set[str]] = defaultdict(set)
    for a in answers:
        turn_variants[a["turn_id"]].add(a["variant"])
    summary = {
        variant: {"answers": 0, "ratings": 0, "mean_stars": None, "wins": 0, "ties": 0, "all_bad": 0}
        for variant in sorted(set(variant_of.values()))
    }
    for a in answers:
        summary[a["variant"]]["answers"] += 1
    stars, checked, flagged = defaultdict(list), defaultdict(set), defaultdict(set)
    for r in ratings:
        if r["answer_id"] is None:
            if r["vote"] is not None:
                for variant in turn_variants[r["turn_id"]]:
                    summary[variant]["ties" if r["vote"] == "tie" else "all_bad"] += 1
            continue
        variant = variant_of[r["answer_id"]]
        summary[variant]["ratings"] += 1
        if r["vote"] == "best":
            summary[variant]["wins"] += 1
        if r["stars"] is not None:
            stars[variant].append(r["stars"])
        if r["hallucinated"] is not None:
            checked[variant].add(r["answer_id"])
        if r["hallucinated"]:
            flagged[variant].add(r["answer_id"])
    unsupported: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for c in claims:
        if not c["supported"]:
            unsupported[c["variant"]][c["detector"]].add(c["answer_id"])
    scores: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for j in judgements:
        scores[j["variant"]][j["judge"]].append(j["score"])
    for variant, row in summary.items():
        row["mean_stars"] = sum(stars[variant]) / len(stars[variant]) if stars[variant] else None
        row["human_flagged"] = len(flagged[variant])
        row["human_flag_rate"] = len(flagged[variant]) / len(checked[variant]) if checked[variant] else None
        row["auto_flagged"] = {detector: len(ids) for detector, ids in sorted(unsupported[variant].items())}
        row["judges"] = {judge: _judge_stats(values) for judge, values in sorted(scores[variant].items())}
    return summary


def _judge_stats(values: list[float | None]) -> dict:
    scored = [v for v in values if v is not None]
    return {
        "mean": sum(scored) / len(scored) if scored else None,
        "scored": len(scored),
        "failed": len(values) - len(scored),
    }


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


def _text(field: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{field}: {value!r}; give a non-empty text")
    return value


def _where_run(column: str, run: str | None) -> str:
    return f" WHERE {column} = ?" if run is not None else ""


def _params(run: str | None) -> tuple:
    return (run,) if run is not None else ()


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _decode(row: dict) -> dict:
    for key, value in row.items():
        if value is not None and key in _JSON_COLUMNS:
            row[key] = json.loads(value)
        elif value is not None and key in _BOOL_COLUMNS:
            row[key] = bool(value)
    return row


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _redact(url: str) -> str:
    return re.sub(r"(//[^/:@]*):[^/@]*@", r"\1:***@", url)
