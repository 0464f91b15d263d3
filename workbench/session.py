"""One rater's blind side-by-side conversation: columns A-D over shuffled variants, stored answers, ratings.

An `ArenaSession` owns a conversation of one rater with 2-4 variants. The variants are shown in columns labelled
A, B, C, D in a blind order (a seeded shuffle, drawn afresh for each conversation and stored with it), so
nothing the rater sees names a column's variant until they vote. Each `ask` streams every column at once from
`Engine.stream` and yields `Column` snapshots as their text grows. Each answer is stored the moment it ends
(`Store.add_turn` once per turn, `Store.add_answer`); when the whole turn is done, the reference judges score the
answers (only when the question is one of the run's QA pairs with a reference) and the hallucination detector
checks their claims, both batched after the stream so that no column waits for another's checks. `rate` stores
stars, the human hallucination flag and the vote; `reveal` names the columns, and only after a vote; after that
the conversation is no longer blind, so further questions need `reset` (a new conversation, a new order).

Nothing here imports Gradio: the UI (`workbench.ui.arena`) only renders `Column`s and forwards clicks.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbench.config import Config, LimitsConfig
from workbench.data.loaders import BadInputError
from workbench.data.split import SPLITS
from workbench.rater_queue import QueuedQuestion, load_queue, next_question, queue_progress
from workbench.records import COLUMN_LABELS, read_split
from workbench.scoring import ScoreItem, Scorer, configured_detector
from workbench.variants import REMOTE_PREFIX, Decoding
from workbench.workspace import resolve_home, run_paths

LABELS = COLUMN_LABELS
MIN_VARIANTS, MAX_VARIANTS = 2, 4
ASK_EXPIRY_S = 120.0
"""A rater's accepted question stops counting against their limit after this long, answered or not: a browser that
left while its question waited (Gradio then drops the question) must not lock its rater out for long."""
TURN_VOTES = ("tie", "all_bad")
"""Votes about the whole turn; a column label as the vote means that column's answer is the best."""


class ArenaError(BadInputError):
    """A request the session cannot honour now (reveal before a vote, a question after the reveal, ...)."""


@dataclass
class Source:
    """A chunk the column's variant was shown, in prompt order."""

    chunk_id: str
    title: str
    text: str
    score: float


@dataclass
class Column:
    """What one column shows: its label, the text so far and, once done, the answer's metadata.

    It never holds the variant's name: it is what the UI may send to the browser before the reveal.
    """

    label: str
    text: str = ""
    done: bool = False
    answer_id: str | None = None
    ttft_s: float | None = None
    total_s: float | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    sources: list[Source] = field(default_factory=list)
    judges: dict[str, float | None] = field(default_factory=dict)  # judge -> score (None: could not score)
    claims: list[dict] | None = None  # [{text, score, supported, evidence}]; None: not checked
    checked: bool = False  # judges and detector have run (or were skipped) for this turn


def normalise_question(text: str) -> str:
    """A question as looked up among the QA pairs: case, spacing and trailing punctuation ignored."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


def load_references(name: str, home: str | Path | None = None) -> dict[str, dict]:
    """The run's QA pairs with a reference answer, by normalised question: {reference, type}."""
    found: dict[str, dict] = {}
    paths = run_paths(name, home)
    for split in SPLITS:
        for row in read_split(paths.split(split)) if paths.split(split).is_file() else []:
            if row.is_question and row.question and row.answer:
                found.setdefault(normalise_question(row.question), {"reference": row.answer, "type": row.type})
    return found


def blind_order(variants: list[str], seed: int) -> list[str]:
    """The variants in column order for a conversation: a shuffle determined by `seed`."""
    order = list(variants)
    random.Random(seed).shuffle(order)
    return order


class ArenaSession:
    """One rater's blind conversation with 2-4 variants; safe to share between threads (one call at a time).

    `engine` is a `workbench.engine.Engine` (it serialises generation itself), `store` a `workbench.store.Store`
    holding run `run`. `scorer` judges each turn's answers (`workbench.scoring.Scorer`; None: no checks).
    `references` maps normalised questions to `{reference, type}` (see `load_references`).
    """

    def __init__(
        self,
        engine,
        store,
        run: str,
        rater: str,
        variants: list[str],
        *,
        scorer: Scorer | None = None,
        references: dict[str, dict] | None = None,
        decoding: Decoding | None = None,
        seed: int | None = None,
        limits: LimitsConfig | None = None,
    ):
        variants = list(dict.fromkeys(variants))
        if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
            raise ArenaError(f"choose {MIN_VARIANTS} to {MAX_VARIANTS} variants to compare, got {len(variants)}")
        unavailable = [v for v in variants if not v.startswith(REMOTE_PREFIX) and engine.why_unavailable(v)]
        if unavailable:
            have = ", ".join(engine.local_variants())
            why = "; ".join(f"{v}: {engine.why_unavailable(v)}" for v in unavailable)
            raise ArenaError(f"variant(s) {', '.join(unavailable)} cannot answer here ({why}); available: {have}")
        self.engine, self.store, self.run, self.rater = engine, store, run, rater
        self.variants = variants
        self.scorer, self.references, self.decoding = scorer or Scorer(), references or {}, decoding
        self.limits = limits or LimitsConfig()
        self._seeds = random.Random(seed if seed is not None else secrets.randbits(64))
        self._lock = threading.Lock()
        self._chunks: dict | None = None
        self._new_conversation()

    # -- state -----------------------------------------------------------------------------------------------------

    def _new_conversation(self) -> None:
        self.order = blind_order(self.variants, self._seeds.getrandbits(64))
        self.labels = list(LABELS[: len(self.order)])
        self._variant_of = dict(zip(self.labels, self.order))
        self.conversation_id: int | None = None  # stored on the first question
        self.histories: dict[str, list[dict]] = {v: [] for v in self.order}
        self.columns = [Column(label) for label in self.labels]
        self.turn_id: str | None = None
        self.question: str | None = None  # the current turn's question
        self.past: list[tuple[str, dict[str, str]]] = []  # earlier turns: (question, {label: answer text})
        self._answers: dict[str, object] = {}  # label -> engine Answer of the current turn
        self.voted = False
        self.turns = 0

    def reset(self) -> None:
        """Start a new conversation: empty histories and a new blind order."""
        with self._locked():
            self._new_conversation()

    def _locked(self):
        if not self._lock.acquire(blocking=False):
            raise ArenaError("this session is busy answering; wait for the answers to finish")
        return _Release(self._lock)

    def _recent(self, items: list, per_turn: int) -> list:
        """The last `limits.history_turns` turns of `items` (`per_turn` items each): what a question is sent with
        and what a column shows, so a long conversation's state stays bounded."""
        keep = self.limits.history_turns * per_turn
        return items[-keep:] if keep else []

    # -- asking ----------------------------------------------------------------------------------------------------

    def ask(self, question: str, queue_question_id: int | None = None) -> Iterator[Column]:
        """Answer `question` in every column at once, yielding a snapshot of each column as its text grows.

        Every column ends with a `done` snapshot; after all are done, each column is yielded once more with its
        judge scores and claims (`checked`). The last turn's answers are then what `rate` rates. A queued question
        (`queue_question_id`, see `workbench.rater_queue`) opens a conversation: with no history before it, every
        rater it is served to judges the same answers.
        """
        question = (question or "").strip()
        if not question:
            raise ArenaError("type a question first")
        if len(question) > self.limits.question_chars:
            raise ArenaError(
                f"the question has {len(question)} characters; at most {self.limits.question_chars} are accepted "
                "(limits.question_chars)"
            )
        with self._locked():
            if self.voted:
                raise ArenaError("the names are revealed: start a new conversation to keep comparing blind")
            if queue_question_id is not None and self.turns:
                raise ArenaError("a queued question opens a conversation: start a new one first")
            if self.conversation_id is None:
                self.conversation_id = self.store.start_conversation(self.run, self.rater, self.variants, self.order)
            label_of = {v: label for label, v in self._variant_of.items()}
            if self.question is not None:
                self.past = self._recent([*self.past, (self.question, {c.label: c.text for c in self.columns})], 1)
            self.question = question
            self.columns = [Column(label) for label in self.labels]
            self._answers, self.turn_id = {}, None
            by_label = {c.label: c for c in self.columns}
            events = self.engine.stream(question, self.order, self.histories, self.decoding)
            try:
                for event in events:
                    column = by_label[label_of[event.variant]]
                    column.text = event.text
                    if event.done:
                        self._finish(column, event.answer, queue_question_id)
                    yield replace(column)
            finally:
                events.close()
            for variant in self.order:
                answer = self._answers[label_of[variant]]
                turn = [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
                self.histories[variant] = self._recent(self.histories[variant] + turn, 2)
            self.turns += 1
            self._check(question)
            for column in self.columns:
                yield replace(column)

    def _finish(self, column: Column, answer, queue_question_id: int | None = None) -> None:
        """Store a finished answer (and its turn, with the first answer) and keep what the column shows."""
        if self.turn_id is None:
            self.turn_id = answer.turn_id
            self.store.add_turn(self.conversation_id, answer.turn_id, answer.question, queue_question_id)
        self.store.add_answer(answer.to_dict())
        self._answers[column.label] = answer
        column.done, column.answer_id, column.text = True, answer.id, answer.text
        column.ttft_s, column.total_s = answer.ttft_s, answer.total_s
        column.tokens_out, column.finish_reason, column.error = answer.tokens_out, answer.finish_reason, answer.error
        chunks = self._chunk_map()
        column.sources = [
            Source(cid, chunks[cid].title if cid in chunks else "", chunks[cid].text if cid in chunks else "", score)
            for cid, score in zip(answer.chunk_ids, answer.chunk_scores)
        ]

    def _chunk_map(self) -> dict:
        if self._chunks is None:
            retriever = getattr(self.engine, "retriever", None)
            self._chunks = {c.id: c for c in retriever.chunks} if retriever is not None else {}
        return self._chunks

    def _check(self, question: str) -> None:
        """The turn's answers scored (`workbench.scoring`, as eval scores them) and the scores stored."""
        from workbench.judge.hallucination import Passage

        reference = self.references.get(normalise_question(question), {})
        items = []
        for column in self.columns:
            answer = self._answers[column.label]
            sources = [Passage(s.chunk_id, s.text, s.title) for s in column.sources] or None
            items.append(ScoreItem(question, answer.text, sources=sources, error=answer.error, **reference))
        for column, scores in zip(self.columns, self.scorer.score(items)):
            for judgement in scores.judgements:
                self.store.add_judgement(
                    column.answer_id, judgement.judge, judgement.score, judgement.reason, judgement.details
                )
                column.judges[judgement.judge] = judgement.score
            if scores.claims is not None:
                self.store.add_claims(column.answer_id, self.scorer.detector.name, scores.claim_rows())
                column.claims = scores.claims
            column.checked = True

    def history(self, label: str) -> list[tuple[str, str]]:
        """Column `label`'s earlier turns of this conversation: (question, answer text), oldest first."""
        return [(question, texts[label]) for question, texts in self.past]

    # -- rating ----------------------------------------------------------------------------------------------------

    def rate(
        self,
        stars: dict[str, int | None] | None = None,
        vote: str | None = None,
        hallucinated: dict[str, bool | None] | None = None,
        comment: str | None = None,
    ) -> list[int]:
        """Rate the last turn: stars 1-5 and the hallucination flag per column label, a vote (a column label for
        the best answer, `tie` or `all_bad`) and a comment; returns the stored rating ids.

        The comment goes with the winning answer's rating, or with the turn-level rating of a tie / all-bad
        vote or of no vote. Rating again replaces the rater's earlier ratings of the turn.
        """
        stars, hallucinated = stars or {}, hallucinated or {}
        comment = (comment or "").strip() or None
        with self._locked():
            if self.turn_id is None or len(self._answers) < len(self.labels):
                raise ArenaError("nothing to rate yet: ask a question and wait for every answer")
            unknown = sorted((set(stars) | set(hallucinated)) - set(self.labels))
            if unknown:
                raise ArenaError(
                    f"unknown column(s) {', '.join(unknown)}; this conversation has {', '.join(self.labels)}"
                )
            if vote is not None and vote not in self.labels and vote not in TURN_VOTES:
                raise ArenaError(f"vote {vote!r}: give a column ({', '.join(self.labels)}), 'tie' or 'all_bad'")
            ids = []
            for label in self.labels:
                best = vote == label
                given = {"stars": stars.get(label), "hallucinated": hallucinated.get(label)}
                note = comment if best else None
                if any(v is not None for v in given.values()) or best:
                    ids.append(
                        self.store.add_rating(
                            self.turn_id,
                            self.rater,
                            answer_id=self._answers[label].id,
                            vote="best" if best else None,
                            comment=note,
                            **given,
                        )
                    )
            if vote in TURN_VOTES or (vote is None and comment):
                ids.append(self.store.add_rating(self.turn_id, self.rater, vote=vote, comment=comment))
            if vote is not None:
                self.voted = True
            return ids

    def reveal(self) -> dict[str, str]:
        """Column label -> variant name; only after this conversation's vote."""
        if not self.voted:
            raise ArenaError("vote first (best answer, tie or all bad): the names are shown only after a vote")
        return dict(self._variant_of)


class Arena:
    """What all sessions of one app share: the engine (built on first use), the store, the run's reference
    answers and the hallucination detector. `session(rater, variants)` starts a rater's conversation."""

    def __init__(
        self, config: Config | None = None, name: str | None = None, home: str | Path | None = None, store=None
    ):
        from workbench.store import Store

        self.config, self.name, self.home = config or Config(), name, resolve_home(home)
        self.store = store or Store.open(home=self.home)
        self.references = load_references(name, self.home) if name else {}
        self.detector, self.detector_problem = None, None
        self.version = 0
        """Counts switches, reloads and queues loaded: a browser that showed an older version refreshes its variant
        and queue choices."""
        self._engine = None
        self._lock = threading.Lock()
        self._asks: dict[str, list[float]] = {}  # rater -> when each of their asks in flight was accepted

    @property
    def engine(self):
        """The engine, built on first use (loading the model takes seconds); the run is recorded in the store."""
        with self._lock:
            if self._engine is None:
                from workbench.engine import Engine

                engine = Engine(self.config, self.name, self.home)
                if self.name:
                    self.store.ensure_run(
                        self.name,
                        config=self.config.model_dump(mode="json"),
                        model_id=engine.model_id,
                        adapter_id=engine.adapter_ids.get(engine.aliases["ft"]),
                        index_id=engine.index_id,
                    )
                self.detector, self.detector_problem = configured_detector(self.config, engine.retriever)
                self._engine = engine
            return self._engine

    def reload(self, name: str | None = None) -> None:
        """Build the engine again on next use: a new adapter or index was written (new sessions get it). With
        `name`, only if that is the run served (a run trained or indexed in the background may not be)."""
        with self._lock:
            if name is None or name == self.name:
                self._engine = None
                self.version += 1

    def switch(self, name: str | None) -> None:
        """Serve run `name` from now on: new conversations use it, with an engine built for it on next use (its
        adapters and index) and its reference answers; a conversation already started keeps its run until its
        vote, so its answers and ratings stay with the run they were asked on."""
        references = load_references(name, self.home) if name else {}
        with self._lock:
            self.name, self.references, self._engine = name, references, None
            self.version += 1

    def choices(self) -> list[str]:
        """Every variant that can answer here: the local ones, then the configured remote endpoints."""
        return self.engine.local_variants() + [REMOTE_PREFIX + r for r in self.config.chat.remotes]

    def adapter_aliases(self) -> dict[str, str]:
        """The adapters `ft` and `ft_rag` answer with; empty while the run has no adapter."""
        return dict(self.engine.aliases) if self.name and self.engine.adapters else {}

    def unavailable(self) -> dict[str, str]:
        """The configured variants that cannot answer here, each with why (an adapter or index missing or broken)."""
        if not self.name:
            return {}
        found = {
            v: self.engine.why_unavailable(v) for v in self.config.chat.variants if not v.startswith(REMOTE_PREFIX)
        }
        return {v: why for v, why in found.items() if why}

    def defaults(self) -> list[str]:
        """The configured variants that can answer here (at most four)."""
        return self.engine.available()[:MAX_VARIANTS]

    def begin_ask(self, rater: str) -> None:
        """Accept one more question from `rater`, or refuse it while `limits.asks_per_rater` of theirs are queued
        or answering, so that one rater cannot fill the queue everyone shares. `end_ask` releases it; an ask that
        never ends (its browser left while queued) stops counting after ASK_EXPIRY_S."""
        now = time.monotonic()
        with self._lock:
            live = [t for t in self._asks.get(rater, []) if now - t < ASK_EXPIRY_S]
            if len(live) >= self.config.limits.asks_per_rater:
                raise ArenaError("your previous question is still being answered; ask again when it is done")
            self._asks[rater] = [*live, now]

    def end_ask(self, rater: str) -> None:
        with self._lock:
            started = self._asks.get(rater, [])[1:]
            if started:
                self._asks[rater] = started
            else:
                self._asks.pop(rater, None)

    def queued_session(self, rater: str, queue: str, seed: int | None = None) -> tuple[ArenaSession, QueuedQuestion]:
        """A new conversation of `rater` with queue `queue`'s variants, and the queued question to ask in it first
        (`session.ask(item.question, item.id)`)."""
        if not self.name:
            raise ArenaError("no prepared run: add your data in the Data tab, or run `workbench prepare`")
        item = next_question(self.store, self.name, queue, rater)
        return self.session(rater, list(item.variants), seed), item

    def load_queue(self, queue: str, split: str, variants: list[str], raters: int, limit: int | None = None) -> int:
        """Queue questions of the served run for raters (`workbench.rater_queue.load_queue`); open arenas offer the
        queue at their next refresh."""
        if not self.name:
            raise ArenaError("no prepared run: add your data in the Data tab, or run `workbench prepare`")
        count = load_queue(self.store, self.name, queue, split, variants, raters, limit, self.home, self.config.chat)
        with self._lock:
            self.version += 1
        return count

    def queues(self) -> list[dict]:
        """The served run's rater queues with their progress (`workbench.rater_queue.queue_progress`)."""
        return queue_progress(self.store, self.name) if self.name else []

    def session(self, rater: str, variants: list[str], seed: int | None = None) -> ArenaSession:
        if not self.name:
            raise ArenaError("no prepared run: add your data in the Data tab, or run `workbench prepare`")
        while True:  # the engine, run, references and detector of one version, even if a switch comes between
            engine = self.engine
            with self._lock:
                if engine is self._engine:
                    name, references, detector = self.name, self.references, self.detector
                    break
        if not name:
            raise ArenaError("no prepared run: add your data in the Data tab, or run `workbench prepare`")
        return ArenaSession(
            engine,
            self.store,
            name,
            rater,
            variants,
            scorer=Scorer(detector),
            references=references,
            seed=seed,
            limits=self.config.limits,
        )


class _Release:
    def __init__(self, lock: threading.Lock):
        self.lock = lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.lock.release()
