"""The schema, as migrations: `MIGRATIONS[i]` takes a store from schema version i to i + 1.

Each migration runs in its own transaction, so a failed one leaves the store at the version before it; a store newer
than this code is refused. A migration holds its statements per dialect (most are the same on both). On SQLite every
migration runs with foreign keys switched off (outside its transaction: the pragma is a no-op inside one), as the
documented table rebuild needs (https://www.sqlite.org/lang_altertable.html#otheralter), and must leave
`PRAGMA foreign_key_check` empty before it commits; foreign keys are switched back on after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.store.connection import _SQLITE, Connection, StoreUnusable, _now


@dataclass(frozen=True)
class Migration:
    """The statements of one schema version per dialect; `{serial}` and `?` as `_Dialect.sql` rewrites them."""

    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    @classmethod
    def same(cls, *statements: str) -> Migration:
        """A migration whose statements are the same on both dialects."""
        return cls(statements, statements)


# Version 1: runs, arena conversations and turns, answers, judgements, claim flags and ratings.
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

# Version 2: evals, and answers that belong to an arena turn or to an eval (QA pair `qa_id`).
_EVALS = (
    """CREATE TABLE evals (
        id TEXT PRIMARY KEY,
        run TEXT NOT NULL REFERENCES runs (name),
        split TEXT NOT NULL,
        variants TEXT NOT NULL,
        judges TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        config TEXT NOT NULL,
        model_id TEXT,
        adapter_ids TEXT NOT NULL,
        index_id TEXT,
        questions INTEGER NOT NULL CHECK (questions >= 0),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        counts TEXT NOT NULL
    )""",
    "CREATE INDEX evals_run ON evals (run)",
)
# The answer columns of version 1, copied as they are when SQLite rebuilds the table.
_ANSWER_COLUMNS_1 = (
    "id, turn_id, variant, question, text, prompt, ttft_s, total_s, tokens_in, tokens_out, finish_reason, decoding, "
    "model_id, precision, adapter_id, index_id, chunk_ids, chunk_scores, error, created_at"
)
# SQLite cannot drop NOT NULL or add a constraint: build the new table, copy, drop the old one, rename. Renaming
# answers_new (which nothing references) keeps judgements, claim_flags and ratings referencing `answers` by name.
_SCHEMA_2_SQLITE = (
    *_EVALS,
    """CREATE TABLE answers_new (
        id TEXT PRIMARY KEY,
        turn_id TEXT REFERENCES turns (id),
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
        eval_id TEXT REFERENCES evals (id),
        qa_id TEXT,
        gold_rank INTEGER CHECK (gold_rank >= 0),
        UNIQUE (turn_id, variant),
        CONSTRAINT answers_eval_qa_variant UNIQUE (eval_id, qa_id, variant),
        CONSTRAINT answers_turn_or_eval CHECK ((turn_id IS NULL) <> (eval_id IS NULL)),
        CONSTRAINT answers_eval_qa CHECK (eval_id IS NULL OR qa_id IS NOT NULL)
    )""",
    f"INSERT INTO answers_new ({_ANSWER_COLUMNS_1}) SELECT {_ANSWER_COLUMNS_1} FROM answers",
    "DROP TABLE answers",
    "ALTER TABLE answers_new RENAME TO answers",
)
_SCHEMA_2_POSTGRES = (
    *_EVALS,
    "ALTER TABLE answers ADD COLUMN eval_id TEXT REFERENCES evals (id)",
    "ALTER TABLE answers ADD COLUMN qa_id TEXT",
    "ALTER TABLE answers ADD COLUMN gold_rank INTEGER CHECK (gold_rank >= 0)",
    "ALTER TABLE answers ALTER COLUMN turn_id DROP NOT NULL",
    "ALTER TABLE answers ADD CONSTRAINT answers_eval_qa_variant UNIQUE (eval_id, qa_id, variant)",
    "ALTER TABLE answers ADD CONSTRAINT answers_turn_or_eval CHECK ((turn_id IS NULL) <> (eval_id IS NULL))",
    "ALTER TABLE answers ADD CONSTRAINT answers_eval_qa CHECK (eval_id IS NULL OR qa_id IS NOT NULL)",
)

# Version 3: rater queues, question sets an admin loads so that each question is served blind to several raters
# (their ratings of the same answers can then be compared), and the queued question a turn answers. SQLite may add
# a column with a REFERENCES clause when its default is NULL.
_SCHEMA_3 = (
    """CREATE TABLE queue_questions (
        id {serial} PRIMARY KEY,
        run TEXT NOT NULL REFERENCES runs (name),
        queue TEXT NOT NULL,
        position INTEGER NOT NULL CHECK (position >= 0),
        question TEXT NOT NULL,
        qa_id TEXT,
        variants TEXT NOT NULL,
        raters_wanted INTEGER NOT NULL CHECK (raters_wanted >= 2),
        created_at TEXT NOT NULL,
        UNIQUE (run, queue, position)
    )""",
    "ALTER TABLE turns ADD COLUMN queue_question_id BIGINT REFERENCES queue_questions (id)",
    "CREATE INDEX turns_queue_question ON turns (queue_question_id)",
)

MIGRATIONS: list[Migration] = [
    Migration.same(*_SCHEMA_1),
    Migration(_SCHEMA_2_SQLITE, _SCHEMA_2_POSTGRES),
    Migration.same(*_SCHEMA_3),
]
"""`MIGRATIONS[i]` takes a store from schema version i to i + 1."""


class Schema(Connection):
    """The schema version and the migrations that bring a store up to this code's."""

    def schema_version(self) -> int:
        with self._transaction(write=False):
            return self._one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")["v"]

    def _migrate(self) -> None:
        while self._migrate_one():
            pass

    def _migrate_one(self) -> bool:
        """Apply the next missing migration in one transaction; False when the store is up to date."""
        sqlite = self._dialect is _SQLITE
        if sqlite:
            self._conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._transaction(write=True):
                if self._dialect.lock_migrations:
                    self._execute(self._dialect.lock_migrations)
                self._execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                version = self.schema_version()
                if version > len(MIGRATIONS):
                    raise StoreUnusable(
                        f"{self.where}: the store has schema version {version} but this workbench knows versions up "
                        f"to {len(MIGRATIONS)}; upgrade workbench (`pip install -U workbench`) or open another store"
                    )
                if version == len(MIGRATIONS):
                    return False
                try:
                    for statement in getattr(MIGRATIONS[version], self._dialect.name):
                        self._execute(statement)
                    if sqlite and (broken := self._rows("PRAGMA foreign_key_check")):
                        raise StoreUnusable(f"it breaks {len(broken)} foreign keys, the first: {broken[0]}")
                except Exception as exc:
                    raise StoreUnusable(
                        f"{self.where}: upgrading the store to schema version {version + 1} failed ({exc}); it is "
                        f"left at version {version}. Is this a workbench store? If not, open another one"
                    ) from exc
                self._execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version + 1, _now())
                )
                return True
        finally:
            if sqlite:
                self._conn.execute("PRAGMA foreign_keys=ON")
