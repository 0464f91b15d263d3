"""The side-by-side engine: every local variant of a turn decodes in one batch over one copy of the base weights.

Per turn: the RAG variants' sources are retrieved once; each local row is prefilled on its own (so a short prompt is
never padded to a long one), in order of prompt length so the short columns start first, and takes a slot in a
group of exactly `DECODE_ROWS` rows that decode together, each row with its own adapter (`AdapterBank`), position,
sampling generator and stop at end of sequence. A finished row's slot becomes padding, or, when many questions are
answered at once (`answers`, for eval), the next waiting row; several groups then decode side by side on their own
threads. Fixed step shapes, per-row attention (`row_attention`) and a fixed thread count (`ENGINE_THREADS`) make a
variant's answer bit-identical alone or in any batch, on a quiet or a busy machine. Remote variants run on threads
beside the local batch. `stream` yields `Event(variant, text_so_far, done)` as tokens arrive, and the final event
of each variant carries its `Answer` record.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from workbench.config import Config
from workbench.fewshot import ExamplePicker, training_pairs
from workbench.models import fresh_causal_lm, resolve
from workbench.multi_lora import AdapterBank
from workbench.packed_linear import pack_linears, packing_dtype
from workbench.remote import RemoteChat
from workbench.row_attention import ROW_ATTENTION
from workbench.runs import tuned_variants
from workbench.variants import BUILT_IN, REMOTE_PREFIX, Decoding, Variant, VariantUnavailable, conversation, variant
from workbench.workspace import (
    DEFAULT_ADAPTER,
    RAFT_ADAPTER,
    adapter_aliases,
    adapter_names,
    cached_file_sha256,
    index_paths,
    run_paths,
)

ENGINE_THREADS = 1
"""Torch threads of every prefill and decoding step, whatever the machine's load. Two reasons, both measured on 2
cores: a different thread count changed a greedy answer (a RAG answer ended "45 days." with 1 thread and "45 days.
[1] Returns and Refund" with 2), so a fixed count is part of batch invariance; and 1 thread never waits for a
descheduled partner, while 2 threads collapsed beside another decoding job (a 4-way turn 36x slower than idle).
The price on an idle machine: a 64-token 4-way turn took 7.8-8.4 s against 6.5-7.1 s with 2 threads."""

BATCH_WORKERS_MAX = 8


def batch_workers() -> int:
    """Decoding groups that run side by side (one thread each) when many questions are answered at once: one per
    core this process may use, at most `BATCH_WORKERS_MAX`. Measured on 2 cores, 12 demo questions x 4 variants:
    one group 1.31x faster than one question at a time, two groups 2.18x, three 2.14x. Groups never wait for one
    another (no barrier between threads), so on a busy machine they slow down in proportion, never collapse."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, BATCH_WORKERS_MAX))


DECODE_ROWS = 8
"""Rows in every decoding step (padding rows fill the gaps). One fixed shape keeps answers batch-invariant. A step
reads every weight once whatever its rows, and padding rows skip attention, so 8 rows cost the arena nothing
measurable: on 2 cores a 4-way 100-token turn took 12.0-12.1 s with 8 rows and 12.4-12.6 s with 4, in one process.
A batch of many questions (demo, 12 questions x 4 variants) answered 1.61x faster than one question at a time on
one thread (4 rows: 1.29x) and 2.59x on two (4 rows: 2.03x)."""


@dataclass
class Answer:
    """One variant's answer to one turn, with everything the report and the judges need later."""

    id: str
    turn_id: str
    variant: str
    question: str
    text: str
    prompt: list[dict]
    ttft_s: float | None
    total_s: float
    tokens_in: int
    tokens_out: int
    finish_reason: str  # "stop", "length", "repeat" (ended at a repeated sentence, see `_without_repeat`) or "error"
    decoding: dict
    model_id: str
    precision: str | None = None  # the weights' dtype and kernels, e.g. "bfloat16, oneDNN packed"
    adapter_id: str | None = None
    index_id: str | None = None
    chunk_ids: list[str] = field(default_factory=list)
    chunk_scores: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Event:
    """A streamed update: the variant's whole text so far; `answer` is set on its final event (`done`)."""

    variant: str
    text: str
    done: bool = False
    answer: Answer | None = None


class Engine:
    """The base model with its adapters attached, the run's index, and the configured remote endpoints."""

    def __init__(self, config: Config | None = None, name: str | None = None, home: str | Path | None = None):
        config = config or Config()
        self.config, self.name, self.home = config, name, home
        self.system_prompt = config.finetune.system_prompt
        self.model, self.tokenizer = fresh_causal_lm(config.model.base, config.model.device)
        self.model_id = f"{config.model.base}@{_short_hash(resolve(config.model.base).weights_file)}"
        run = name or "NAME"
        # Every adapter of the run is attached, so any of them can take a column (`ft:A`); `ft` means the run's
        # default adapter, `ft_rag` its raft-trained one when there is one, else the default shown the sources.
        names = adapter_names(name, home) if name else []
        self.bank = AdapterBank(  # a broken adapter costs only its variants
            self.model, {a: run_paths(name, home, a).adapter for a in names}, strict=False
        )
        self.aliases = adapter_aliases(name, home) if name else {"ft": DEFAULT_ADAPTER, "ft_rag": DEFAULT_ADAPTER}
        self.adapter_ids = {
            a: _short_hash(run_paths(name, home, a).adapter / "adapter_model.safetensors") for a in self.bank.names
        }

        self._adapter_problems = {a: self._adapter_problem(a) for a in {*names, *self.aliases.values()}}
        packed = packing_dtype(self.model, config.model.cpu_precision)
        self.precision = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        if packed is not None:
            pack_linears(self.model, packed)
            self.precision = f"{str(packed).removeprefix('torch.')} weights, oneDNN packed"
        self.precision += f", {DECODE_ROWS}-row decoding steps"  # the step shape is part of what fixes the answer
        self.retriever, self.index_id, index_problem = None, None, None
        if name is None or not index_paths(name, home).manifest.is_file():
            index_problem = f"no index: run `workbench index --name {run}`"
        else:
            from workbench.retrieval.index import IndexUnusable, Retriever

            try:
                self.retriever = Retriever.load(name, config, home)
                self.index_id = _short_hash(index_paths(name, home).faiss)
            except IndexUnusable as exc:  # a corrupt index costs only the RAG variants
                index_problem = str(exc)
        self.examples = ExamplePicker(
            training_pairs(name, home) if name else [],
            config.model.embedder,
            config.model.device,
            config.chat.prompt_examples,
            config.model.embedder_runtime,
        )
        no_examples = (
            None
            if self.examples.examples
            else f"no training questions: prepare {run} with a QA set, or apply synthetic QA pairs"
        )
        needs = {
            "prompt": [no_examples],
            "ft": [self._adapter_problems[self.aliases["ft"]]],
            "rag": [index_problem],
            "ft_rag": [self._adapter_problems[self.aliases["ft_rag"]], index_problem],
        }
        self.adapters, self._index_problem = names, index_problem
        # variant -> why it cannot answer here: its adapter or index was never built, or cannot be read
        self.missing: dict[str, str] = {
            v: " and ".join(filter(None, problems)) for v, problems in needs.items() if any(problems)
        }
        self.model.set_attn_implementation(ROW_ATTENTION)
        self.stop_ids = _stop_ids(self.model, self.tokenizer)
        self.lock = threading.Lock()  # one turn at a time on the shared weights

    def available(self) -> list[str]:
        """The configured variants (`chat.variants`) that can answer here, in their configured order."""
        return [n for n in self.config.chat.variants if n.startswith(REMOTE_PREFIX) or not self.why_unavailable(n)]

    def local_variants(self) -> list[str]:
        """Every local variant this engine can serve, configured or not: the built-in ones, then each of the run's
        adapters by name (`ft:A`, `ft_rag:A`) where an alias does not already mean it."""
        named = [v for v in tuned_variants(self.name, self.home) if ":" in v] if self.name else []
        return [name for name in [*BUILT_IN, *named] if not self.why_unavailable(name)]

    def adapter_of(self, name: str) -> str | None:
        """The adapter variant `name` runs (None: none), with the aliases `ft` / `ft_rag` resolved."""
        v = variant(name, self.config.chat)
        return (v.adapter or self.aliases[v.name]) if v.tuned else None

    def stream(
        self,
        question: str,
        variants: list[str] | None = None,
        histories: dict[str, list[dict]] | None = None,
        decoding: Decoding | None = None,
    ) -> Iterator[Event]:
        """Answer `question` with every variant at once; `histories` holds each variant's earlier turns."""
        chosen = self._chosen(variants)
        decoding = decoding or Decoding.from_config(self.config.chat)
        histories = histories or {}
        turn_id = uuid.uuid4().hex
        started = time.perf_counter()
        hits = self._sources(question, chosen)
        with self.lock:
            remote_events: queue.Queue = queue.Queue()
            remotes = [v for v in chosen if v.remote]
            for v in remotes:
                threading.Thread(
                    target=self._remote_answer,
                    args=(v, question, histories.get(v.name, []), decoding, turn_id, started, remote_events),
                    daemon=True,
                ).start()
            rows = [
                self._row(v, question, histories.get(v.name, []), hits, decoding, turn_id)
                for v in chosen
                if not v.remote
            ]
            rows.sort(key=lambda row: len(row.prompt_ids))  # the short prompts' columns start first
            yield from self._local_answers(rows, started, remote_events)
            finished = 0
            while finished < len(remotes):
                event = remote_events.get()
                finished += event.done
                yield event

    def answer(self, question: str, variants: list[str] | None = None, **kwargs) -> dict[str, Answer]:
        """Every variant's final answer to `question` (the stream, consumed)."""
        return {e.variant: e.answer for e in self.stream(question, variants, **kwargs) if e.done}

    def answer_batch(
        self,
        questions: list[str],
        variants: list[str] | None = None,
        decoding: Decoding | None = None,
        workers: int = 1,
    ) -> list[dict[str, Answer]]:
        """Every local variant's answer to each of `questions` (see `answers`), by question."""
        names = [v.name for v in self._chosen(variants)]
        pairs = [(question, name) for question in questions for name in names]
        found: list[dict[str, Answer]] = [{} for _ in questions]
        for position, answer in self.answers(pairs, decoding, workers):
            found[position // len(names)][answer.variant] = answer
        return found

    def answers(
        self, pairs: list[tuple[str, str]], decoding: Decoding | None = None, workers: int = 1
    ) -> Iterator[tuple[int, Answer]]:
        """(position in `pairs`, answer) for every (question, local variant) pair, as each answer ends.

        All rows share the decoding steps: `workers` threads each decode one group of `DECODE_ROWS` rows, and a
        row that ends hands its slot to the next waiting row, in the order of `pairs`. Each answer is the one
        `answer` gives for that question and variant alone; its `ttft_s` and `total_s` count from the moment its
        row started. Closing the iterator stops the workers after their current step.
        """
        names = list(dict.fromkeys(name for _, name in pairs))
        chosen = {v.name: v for v in self._chosen(names)} if names else {}
        if any(v.remote for v in chosen.values()):
            raise VariantUnavailable("batched answers come from local variants only; ask remote ones with `answer`")
        decoding = decoding or Decoding.from_config(self.config.chat)
        hits = {}  # each question's sources, retrieved as it is alone: a batched query embeds differently
        rows, position = [], {}
        for i, (question, name) in enumerate(pairs):
            if question not in hits:
                hits[question] = self._sources(question, list(chosen.values()))
            turn = uuid.uuid4().hex  # one per pair: a question may repeat
            rows.append(self._row(chosen[name], question, [], hits[question], decoding, turn))
            position[turn] = i
        with self.lock:
            for event in self._local_answers(rows, None, queue.Queue(), workers):
                if event.done:
                    yield position[event.answer.turn_id], event.answer

    def remote_answer(self, question: str, variant_name: str, decoding: Decoding | None = None) -> Answer:
        """A `remote:NAME` variant's answer; it needs no lock, so it can run beside a local batch."""
        v = variant(variant_name, self.config.chat)
        if not v.remote:
            raise VariantUnavailable(f"{variant_name} is a local variant; ask it with `answers`")
        events: queue.Queue = queue.Queue()
        decoding = decoding or Decoding.from_config(self.config.chat)
        self._remote_answer(v, question, [], decoding, uuid.uuid4().hex, time.perf_counter(), events)
        return next(event.answer for event in _drain(events) if event.done)

    def why_unavailable(self, name: str) -> str | None:
        """Why local variant `name` cannot answer here (unknown, an adapter the run lacks, something unbuilt), or
        None when it can."""
        try:
            v = variant(name, self.config.chat)
        except VariantUnavailable as exc:
            return str(exc)
        if not v.adapter:
            return self.missing.get(name)
        if v.adapter not in self.adapters:
            have = ", ".join(self.adapters) or "none yet"
            return (
                f"run {self.name} has no adapter {v.adapter!r} (its adapters: {have}); train it with "
                f"`workbench finetune --name {self.name} --adapter {v.adapter}`"
            )
        problems = [self._adapter_problems[v.adapter], self._index_problem if v.retrieval else None]
        return " and ".join(filter(None, problems)) or None

    def _adapter_problem(self, adapter: str) -> str | None:
        """Why adapter `adapter` cannot answer (never trained, or unreadable), with the command that trains it."""
        run = self.name or "NAME"
        train = {
            DEFAULT_ADAPTER: f"`workbench finetune --name {run}`",
            RAFT_ADAPTER: f"`workbench finetune --name {run}` with `finetune.recipe: raft`",
        }.get(adapter, f"`workbench finetune --name {run} --adapter {adapter}`")
        if adapter in self.bank.unusable:
            return f"{self.bank.unusable[adapter]}; run {train} to train it again"
        return None if adapter in self.bank.names else f"no adapter {adapter!r}: run {train}"

    def _chosen(self, variants: list[str] | None) -> list[Variant]:
        names = variants or self.available()
        for name in names:
            why = None if name.startswith(REMOTE_PREFIX) else self.why_unavailable(name)
            if why:
                raise VariantUnavailable(f"variant {name} is not available: {why}")
        return [variant(n, self.config.chat) for n in names]

    def _sources(self, question: str, chosen: list[Variant]) -> list:
        """The chunks retrieved for `question`, once for every RAG variant of the turn."""
        return self.retriever.search(question, self.config.chat.rag_chunks) if any(v.retrieval for v in chosen) else []

    # -- local rows: prefill one by one, decode together ------------------------------------------------------------

    def _row(self, v: Variant, question: str, history: list[dict], hits, decoding: Decoding, turn_id: str) -> _Row:
        shown = hits if v.retrieval else []
        examples = self.examples.pick(question) if v.examples else []
        messages = conversation(
            self.system_prompt, history, question, [h.chunk for h in shown] if v.retrieval else None, examples
        )
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        adapter = (v.adapter or self.aliases[v.name]) if v.tuned else None
        return _Row(v, question, messages, ids, adapter, decoding, shown, turn_id)

    def _local_answers(
        self, rows: list[_Row], started: float | None, remote_events: queue.Queue, workers: int = 1
    ) -> Iterator[Event]:
        """Decode `rows` (in their order) on `workers` threads; `started` None times each row from its own start."""
        waiting = collections.deque(rows)
        if workers <= 1 or len(rows) <= DECODE_ROWS:
            yield from self._decode(waiting, started, remote_events, threading.Event())
            return
        events: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                for event in self._decode(waiting, started, queue.Queue(), stop):
                    events.put(event)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                events.put(exc)
            finally:
                events.put(None)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = events.get(timeout=0.1)  # a timeout keeps Ctrl-C deliverable
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def _decode(
        self, waiting: collections.deque, started: float | None, remote_events: queue.Queue, stop: threading.Event
    ) -> Iterator[Event]:
        """One group of `DECODE_ROWS` slots: each free slot takes the next waiting row (prefilled on its own), and
        every step decodes the whole group; the rows' steps have the same shape whatever else is in the group."""
        group = _Group()
        while not stop.is_set():
            while group.free() and not stop.is_set():
                try:
                    row = waiting.popleft()
                except IndexError:
                    break
                _one_thread()
                row.started = started if started is not None else time.perf_counter()
                self.bank.set_rows([row.adapter])
                out = self._forward(torch.tensor([row.prompt_ids]), None, DynamicCache())
                yield from self._take(row, out.logits[0, -1])
                if not row.done:
                    group.place(row, out.cache)
                yield from _drain(remote_events)
            if not group.live():
                return
            _one_thread()
            self.bank.set_rows(group.adapters())
            last, positions, lengths = group.step_inputs()
            out = self._forward(last, positions, group.cache, row_lengths=lengths)
            for b, row in enumerate(group.rows):
                if row is not None:
                    yield from self._take(row, out.logits[b, -1])
            group.drop_finished()
            yield from _drain(remote_events)

    def _forward(self, ids, positions, cache, **kwargs):
        device = self.model.device
        with torch.inference_mode():
            return self.model(
                input_ids=ids.to(device),
                position_ids=None if positions is None else positions.to(device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )

    def _take(self, row: _Row, logits: torch.Tensor):
        """Choose the row's next token, and yield its text when it grew (and its answer when it is done)."""
        if len(row.generated) < row.decoding.min_new_tokens:
            logits = logits.clone()
            logits[list(self.stop_ids)] = float("-inf")
        token = row.next_token(logits)
        now = time.perf_counter()
        if row.ttft is None:
            row.ttft = now - row.started
        if token in self.stop_ids:
            row.done, row.finish = True, "stop"
        else:
            row.generated.append(token)
            if len(row.generated) >= row.decoding.max_new_tokens:
                row.done, row.finish = True, "length"
        text = _visible(self.tokenizer.decode(row.generated, skip_special_tokens=True))
        if row.decoding.stop_on_repeat and (kept := _without_repeat(text)) is not None:
            text, row.done, row.finish = kept, True, "repeat"
        if row.done:
            text = text.rstrip("\ufffd").strip()
            yield Event(row.variant.name, text, True, self._record(row, text, now - row.started))
        elif text != row.shown:
            row.shown = text
            yield Event(row.variant.name, text)

    def _record(self, row: _Row, text: str, total: float) -> Answer:
        shown = row.sources
        return Answer(
            id=uuid.uuid4().hex,
            turn_id=row.turn_id,
            variant=row.variant.name,
            question=row.question,
            text=text,
            prompt=row.messages,
            ttft_s=row.ttft,
            total_s=total,
            tokens_in=len(row.prompt_ids),
            tokens_out=len(row.generated),
            finish_reason=row.finish,
            decoding=row.decoding.to_dict(),
            model_id=self.model_id,
            precision=self.precision,
            adapter_id=self.adapter_ids.get(row.adapter) if row.adapter else None,
            index_id=self.index_id if row.variant.retrieval else None,
            chunk_ids=[h.chunk.id for h in shown],
            chunk_scores=[h.score for h in shown],
        )

    # -- remote rows ------------------------------------------------------------------------------------------------

    def _remote_answer(self, v: Variant, question, history, decoding, turn_id, started, events: queue.Queue) -> None:
        settings = self.config.chat.remotes[v.remote]
        messages = conversation(self.system_prompt, history, question, None)
        ttft, text, usage, error = None, "", {}, None
        try:
            for text, usage in RemoteChat(settings).stream(messages, decoding):
                ttft = ttft if ttft is not None else time.perf_counter() - started
                events.put(Event(v.name, text))
        except OSError as exc:  # connection refused, timeout, HTTP error: recorded, never raised into the turn
            error = f"{settings.base_url}: {exc}"
        answer = Answer(
            id=uuid.uuid4().hex,
            turn_id=turn_id,
            variant=v.name,
            question=question,
            text=text.strip(),
            prompt=messages,
            ttft_s=ttft,
            total_s=time.perf_counter() - started,
            tokens_in=usage.get("prompt_tokens", 0),
            tokens_out=usage.get("completion_tokens", 0),
            finish_reason="error" if error else usage.get("finish_reason", "stop"),
            decoding=decoding.to_dict(),
            model_id=f"{settings.base_url}#{settings.model}",
            error=error,
        )
        events.put(Event(v.name, answer.text, True, answer))


class _Row:
    """One local variant's state while it answers one question."""

    def __init__(
        self,
        v: Variant,
        question: str,
        messages: list[dict],
        prompt_ids: list[int],
        adapter: str | None,
        decoding: Decoding,
        sources: list,
        turn_id: str,
    ):
        self.variant, self.question, self.messages, self.prompt_ids = v, question, messages, prompt_ids
        self.adapter, self.decoding, self.sources, self.turn_id = adapter, decoding, sources, turn_id
        self.generated: list[int] = []
        self.done, self.finish, self.ttft, self.shown = False, "", None, ""
        self.started = 0.0  # what its ttft and total time count from (the turn's start, or the row's own)
        self.generator = torch.Generator().manual_seed(decoding.seed)  # the same draws alone or in a batch

    def next_token(self, logits: torch.Tensor) -> int:
        logits = logits.float().cpu()
        if self.decoding.repetition_penalty != 1 and self.generated:
            used = torch.tensor(sorted(set(self.generated)))
            logits, scores = logits.clone(), logits[used]
            penalty = self.decoding.repetition_penalty
            logits[used] = torch.where(scores > 0, scores / penalty, scores * penalty)
        scaled = logits / self.decoding.temperature if self.decoding.temperature else logits
        if self.decoding.temperature == 0 or not torch.isfinite(scaled).all():  # a temperature so small it overflows
            return int(logits.argmax())  # is greedy decoding
        probs = torch.softmax(scaled, dim=-1)
        if self.decoding.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(0) - sorted_probs > self.decoding.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=self.generator))


class _Group:
    """`DECODE_ROWS` slots that decode together; an empty slot is a padding row.

    Every decoding step therefore has the same shape whatever the number of real rows, so the matrix products run
    the same kernels and sum in the same order for a row alone or in a full batch; with `row_attention`, which
    gives each row exactly its own keys, a variant's answer does not depend on what shares its batch. A row's
    cache is right-aligned in the group's cache, so its own keys are always the last `length` positions.
    """

    def __init__(self):
        self.rows: list[_Row | None] = [None] * DECODE_ROWS
        self.cache: Cache | None = None

    def free(self) -> bool:
        return None in self.rows

    def place(self, row: _Row, cache: DynamicCache) -> None:
        """Put a prefilled row in a free slot."""
        slot = self.rows.index(None)
        if self.cache is None:
            self.cache = Cache(layers=[_GrowingLayer() for _ in cache.layers])
        with torch.inference_mode():  # the buffers are inference tensors, grown during decoding steps
            for layer, entry in zip(self.cache.layers, cache.layers):
                layer.place(slot, entry.keys, entry.values)
        self.rows[slot] = row

    def adapters(self) -> list[str | None]:
        return [row.adapter if row is not None else None for row in self.rows]

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Each row's last token and its position, and its cache length once that token is added (0: padding)."""
        lengths = [0 if row is None else len(row.prompt_ids) + len(row.generated) for row in self.rows]
        last = torch.tensor([[0 if row is None else row.generated[-1]] for row in self.rows])
        positions = torch.tensor([[max(length - 1, 0)] for length in lengths])
        return last, positions, lengths

    def drop_finished(self) -> None:
        """A finished row's slot becomes padding (and free); the shape of the step stays the same."""
        self.rows = [None if row is None or row.done else row for row in self.rows]

    def live(self) -> bool:
        return any(row is not None for row in self.rows)


class _GrowingLayer(DynamicLayer):
    """A KV cache layer of `DECODE_ROWS` rows that appends in place, inside buffers with room to spare.

    The stock layer concatenates the whole cache with each new token, so every decoding step copies all of it:
    for four rows of 600 tokens that is about 110 MB per step on SmolLM2-135M.
    """

    SPARE = 256

    def place(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Row `slot`'s prefilled cache, ending at the layer's current end (which moves out if the row is longer)."""
        if not self.is_initialized:
            shape = (DECODE_ROWS, *keys.shape[1:-2], 0, keys.shape[-1])
            self.lazy_initialization(keys.new_zeros(shape), values.new_zeros(shape))
            self.length, self.key_buffer, self.value_buffer = 0, keys.new_zeros(shape), values.new_zeros(shape)
        length = keys.shape[-2]
        if length > self.length:  # every row moves right, so that all rows still end together
            capacity = length + max(self.SPARE, length // 2)
            self.key_buffer = _grown(self.key_buffer, self.length, length, capacity)
            self.value_buffer = _grown(self.value_buffer, self.length, length, capacity)
            self.length = length
        self.key_buffer[slot, ..., self.length - length : self.length, :] = keys[0]
        self.value_buffer[slot, ..., self.length - length : self.length, :] = values[0]
        self.keys, self.values = self.key_buffer[..., : self.length, :], self.value_buffer[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            capacity = end + max(self.SPARE, end // 2)
            self.key_buffer = _grown(self.key_buffer, self.length, self.length, capacity)
            self.value_buffer = _grown(self.value_buffer, self.length, self.length, capacity)
        self.key_buffer[..., self.length : end, :] = key_states
        self.value_buffer[..., self.length : end, :] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[..., :end, :], self.value_buffer[..., :end, :]
        return self.keys, self.values


def _grown(buffer: torch.Tensor, length: int, end: int, capacity: int) -> torch.Tensor:
    """A copy of `buffer` with room for `capacity` positions, its first `length` positions moved to end at `end`."""
    grown = buffer.new_zeros(*buffer.shape[:-2], capacity, buffer.shape[-1])
    grown[..., end - length : end, :] = buffer[..., :length, :]
    return grown


def _one_thread() -> None:
    """The calling thread's torch threads set to `ENGINE_THREADS` (a per-thread setting: each turn's thread sets it)."""
    if torch.get_num_threads() != ENGINE_THREADS:
        torch.set_num_threads(ENGINE_THREADS)


def _drain(events: queue.Queue) -> Iterator[Event]:
    while True:
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


_SEGMENT_END = re.compile(r"(?<=[^\d\s][.!?])\s+|\n+")  # not after a list number ("1. ")
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")


def _without_repeat(text: str) -> str | None:
    """`text` up to a just-completed sentence or line that repeats an earlier one (of 3+ words, list markers
    aside: "2. Canopy OS 4.7.2" repeats "1. Canopy OS 4.7.2"), else None."""
    parts = _SEGMENT_END.split(text)
    if len(parts) < 3:  # the last complete segment needs one before it; the last part is still growing
        return None
    seen = {_segment_key(part) for part in parts[:-2]}
    last = _segment_key(parts[-2])
    if len(last.split()) < 3 or last not in seen:
        return None
    end = text.rfind(parts[-2], 0, len(text) - len(parts[-1]))
    return text[:end].strip()


def _segment_key(segment: str) -> str:
    return " ".join(_LIST_MARKER.sub("", segment).split()).lower()


def _visible(text: str) -> str:
    """Text safe to show mid-stream: without a trailing partial character, and without leading spaces."""
    return text.rstrip("\ufffd").lstrip()


def _stop_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    stops = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops


def _short_hash(path: Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return cached_file_sha256(Path(path))[:16]
