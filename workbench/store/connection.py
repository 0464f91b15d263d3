"""Connections and dialects: open a SQLite file or a PostgreSQL URL, run transactions, decode rows.

SQLite (WAL, foreign keys on, `synchronous=FULL`; a new store file and its -wal / -shm readable by their owner only)
and PostgreSQL (through psycopg 3) share the SQL: statements use `?` placeholders and `{serial}` for the
auto-increment integer key, which `_Dialect.sql` rewrites. JSON columns are TEXT holding JSON on both, decoded on
read by column name (`_JSON_COLUMNS`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from workbench.data.loaders import BadInputError
from workbench.workspace import resolve_home

_JSON_COLUMNS = {
    "config",
    "variants",
    "judges",
    "adapter_ids",
    "counts",
    "blind_order",
    "prompt",
    "decoding",
    "chunk_ids",
    "chunk_scores",
    "details",
    "evidence",
}
_BOOL_COLUMNS = {"supported", "hallucinated"}


class StoreUnusable(BadInputError):
    """The store cannot be opened or upgraded; the message names it and what to do."""


@dataclass(frozen=True)
class _Dialect:
    name: str
    serial: str
    placeholder: str
    begin_write: str
    begin_read: str
    lock_row: str
    lock_migrations: str | None

    def sql(self, statement: str) -> str:
        return statement.replace("{serial}", self.serial).replace("?", self.placeholder)


_SQLITE = _Dialect("sqlite", "INTEGER", "?", "BEGIN IMMEDIATE", "BEGIN", "", None)
_POSTGRES = _Dialect(
    "postgresql",
    "BIGSERIAL",
    "%s",
    "BEGIN",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    " FOR UPDATE",
    "SELECT pg_advisory_xact_lock(7263540)",
)


class Connection:
    """One connection shared by the store's methods under a lock; `where` is the SQLite path or the PostgreSQL URL
    without its password, for messages. `Store.open` is the way in."""

    def __init__(self, connection, dialect: _Dialect, where: str):
        self._conn = connection
        self._dialect = dialect
        self.where = where
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, target: str | Path | None = None, home: str | Path | None = None) -> Self:
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
    def _open_sqlite(cls, path: Path) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = None
        try:
            if not path.exists():  # created owner-only; SQLite gives its -wal and -shm files the same permissions
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreUnusable(f"{path}: cannot use as a SQLite store ({exc}); move it away or open another") from None
        conn.row_factory = _dict_row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        return cls(conn, _SQLITE, str(path))

    @classmethod
    def _open_postgres(cls, url: str) -> Self:
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

    def _migrate(self) -> None:
        raise NotImplementedError  # `workbench.store.schema.Schema` provides it

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    def snapshot(self) -> AbstractContextManager[None]:
        """A read transaction around several reads, so that they see one state: `with store.snapshot(): ...`."""
        return self._transaction(write=False)

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

    def _insert(self, table: str, row: dict, returning: str | None = None):
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        tail = f" RETURNING {returning}" if returning else ""
        cursor = self._execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}", tuple(row.values()))
        return cursor.fetchone()[returning] if returning else None

    def _insert_many(self, table: str, rows: list[dict]) -> None:
        """Insert rows that all have the same keys."""
        if rows:
            columns = ", ".join(rows[0])
            marks = ", ".join("?" for _ in rows[0])
            self._conn.cursor().executemany(
                self._dialect.sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})"),
                [tuple(row.values()) for row in rows],
            )


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
