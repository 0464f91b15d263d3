"""The durable store of runs, arena conversations, evals, answers, automatic checks and human ratings.

Everything a later report needs is kept here, so statistics can be computed from the store alone: each answer
with its prompt, timings, decoding parameters, model/adapter/index ids and retrieved chunk ids; each judge's
score (NULL plus the reason when it failed, never a made-up number); each detector's claims; each rating; each
eval's setup (split, variants, judges, config hash, model/adapter/index ids) and its answers by QA pair. Summaries
and exports are computed from these rows by `workbench.report`.

SQLite by default (`HOME/workbench.db`, WAL, foreign keys on, `synchronous=FULL`), PostgreSQL for teams
(`postgresql://...`, through psycopg 3), same schema and API. Each write method is one transaction, so a crash
keeps every committed write and none of a half-done one. The schema is versioned (`schema.MIGRATIONS`); a store
newer than this code is refused.

Threads: a `Store` holds one connection that its methods share under a lock; each method runs its whole
transaction under it. The app's writes are few and short, and SQLite serialises writers anyway. Separate
processes open their own `Store`; a SQLite writer waits up to 30 s for another's lock.

Modules: `connection` (dialects, opening, transactions, row decoding), `schema` (migrations), `writes`, `queries`.
"""

from __future__ import annotations

from workbench.store.connection import StoreUnusable
from workbench.store.queries import Queries
from workbench.store.schema import MIGRATIONS, Schema
from workbench.store.writes import ANSWER_FIELDS, VOTES, Writes

__all__ = ["ANSWER_FIELDS", "MIGRATIONS", "VOTES", "Store", "StoreUnusable"]


class Store(Writes, Queries, Schema):
    """Runs, conversations, turns, evals, answers, judgements, claim flags and ratings; open with `Store.open`.

    `where` is the SQLite path or the PostgreSQL URL without its password, for messages.
    """
