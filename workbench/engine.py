"""The side-by-side engine: every local variant of a turn decodes in one batch over one copy of the base weights.

Per turn: the RAG variants' sources are retrieved once; each local row is prefilled on its own (so a short prompt
is never padded to a long one), in order of prompt length so the short columns start first; the rows' caches are
then left-padded into one batch and decoded together, each row with its own adapter (`AdapterBank`), position
ids, sampling generator and stop at end of sequence. A row that finishes leaves the batch. Remote variants run on
threads beside the local batch. `stream` yields `Event(variant, text_so_far, done)` as tokens arrive, and the
final event of each variant carries its `Answer` record.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from workbench.config import Config
from workbench.models import fresh_causal_lm, resolve
from workbench.multi_lora import AdapterBank
from workbench.packed_linear import pack_linears, packing_dtype
from workbench.remote import RemoteChat
from workbench.variants import BUILT_IN, Decoding, Variant, VariantUnavailable, conversation, variant
from workbench.workspace import cached_file_sha256, index_paths, run_paths


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
    finish_reason: str  # "stop", "length" or "error"
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
        self.config, self.name = config, name
        self.system_prompt = config.finetune.system_prompt
        self.model, self.tokenizer = fresh_causal_lm(config.model.base, config.model.device)
        self.model_id = f"{config.model.base}@{_short_hash(resolve(config.model.base).weights_file)}"
        self.missing: dict[str, str] = {}  # variant -> why it cannot answer here
        adapters = {}
        if name is not None:
            folders = {"ft": run_paths(name, home).adapter, "ft_rag": run_paths(name, home, "ft_rag").adapter}
            adapters = {key: folder for key, folder in folders.items() if (folder / "adapter_config.json").is_file()}
        if "ft" not in adapters:
            self.missing["ft"] = f"no adapter: run `workbench finetune --name {name or 'NAME'}`"
        self.bank = AdapterBank(self.model, adapters)
        self.adapter_ids = {key: _short_hash(folder / "adapter_model.safetensors") for key, folder in adapters.items()}
        packed = packing_dtype(self.model)
        self.precision = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        if packed is not None:
            pack_linears(self.model, packed)
            self.precision = f"{str(packed).removeprefix('torch.')} weights, oneDNN packed"
        # Without its own RAFT-trained adapter (recipe `raft`), ft_rag is the ft adapter shown the sources.
        self.adapter_for = {"ft": "ft", "ft_rag": "ft_rag" if "ft_rag" in adapters else "ft"}
        self.retriever, self.index_id = None, None
        if name is not None and index_paths(name, home).manifest.is_file():
            from workbench.retrieval.index import Retriever

            self.retriever = Retriever.load(name, config, home)
            self.index_id = _short_hash(index_paths(name, home).faiss)
        else:
            self.missing["rag"] = f"no index: run `workbench index --name {name or 'NAME'}`"
        if "ft" in self.missing or "rag" in self.missing:
            self.missing["ft_rag"] = " and ".join(self.missing[v] for v in ("ft", "rag") if v in self.missing)
        self.stop_ids = _stop_ids(self.model, self.tokenizer)
        self.lock = threading.Lock()  # one turn at a time on the shared weights

    def available(self) -> list[str]:
        """The configured variants (`chat.variants`) that can answer here, in their configured order."""
        return [name for name in self.config.chat.variants if name not in self.missing]

    def local_variants(self) -> list[str]:
        """Every built-in variant this engine can serve, configured or not."""
        return [name for name in BUILT_IN if name not in self.missing]

    def stream(
        self,
        question: str,
        variants: list[str] | None = None,
        histories: dict[str, list[dict]] | None = None,
        decoding: Decoding | None = None,
    ) -> Iterator[Event]:
        """Answer `question` with every variant at once; `histories` holds each variant's earlier turns."""
        names = list(variants or self.available())
        chosen = [variant(n, self.config.chat) for n in names]
        for v in chosen:
            if v.name in self.missing:
                raise VariantUnavailable(f"variant {v.name} is not available: {self.missing[v.name]}")
        decoding = decoding or Decoding.from_config(self.config.chat)
        histories = histories or {}
        turn_id = uuid.uuid4().hex
        started = time.perf_counter()
        hits = []
        if any(v.retrieval for v in chosen):
            hits = self.retriever.search(question, self.config.chat.rag_chunks)
        with self.lock:
            remote_events: queue.Queue = queue.Queue()
            remotes = [v for v in chosen if v.remote]
            for v in remotes:
                threading.Thread(
                    target=self._remote_answer,
                    args=(v, question, histories.get(v.name, []), decoding, turn_id, started, remote_events),
                    daemon=True,
                ).start()
            local = [v for v in chosen if not v.remote]
            yield from self._local_answers(local, question, histories, hits, decoding, turn_id, started, remote_events)
            finished = 0
            while finished < len(remotes):
                event = remote_events.get()
                finished += event.done
                yield event

    def answer(self, question: str, variants: list[str] | None = None, **kwargs) -> dict[str, Answer]:
        """Every variant's final answer to `question` (the stream, consumed)."""
        return {e.variant: e.answer for e in self.stream(question, variants, **kwargs) if e.done}

    # -- local rows: prefill one by one, decode together ------------------------------------------------------------

    def _local_answers(self, local, question, histories, hits, decoding, turn_id, started, remote_events):
        if not local:
            return
        rows = []
        for v in local:
            messages = conversation(
                self.system_prompt,
                histories.get(v.name, []),
                question,
                [h.chunk for h in hits] if v.retrieval else None,
            )
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
            rows.append(_Row(v, messages, ids, self.adapter_for.get(v.adapter) if v.adapter else None, decoding))
        rows.sort(key=lambda r: len(r.prompt_ids))
        caches = []
        for row in rows:
            self.bank.set_rows([row.adapter])
            out = self._forward(torch.tensor([row.prompt_ids]), None, None, DynamicCache())
            caches.append(out.past_key_values)
            yield from self._take(row, out.logits[0, -1], started, question, hits, turn_id)
            yield from _drain(remote_events)
        active = [i for i, row in enumerate(rows) if not row.done]
        if not active:
            return
        cache, mask = _left_padded([caches[i] for i in active], [len(rows[i].prompt_ids) for i in active])
        del caches
        while active:
            self.bank.set_rows([rows[i].adapter for i in active])
            last = torch.tensor([[rows[i].generated[-1]] for i in active])
            positions = torch.tensor([[len(rows[i].prompt_ids) + len(rows[i].generated) - 1] for i in active])
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], dim=1)
            out = self._forward(last, mask, positions, cache)
            for b, i in enumerate(active):
                yield from self._take(rows[i], out.logits[b, -1], started, question, hits, turn_id)
            keep = [b for b, i in enumerate(active) if not rows[i].done]
            if len(keep) < len(active):
                if keep:
                    cache.batch_select_indices(torch.tensor(keep))
                    mask = mask[keep]
                active = [active[b] for b in keep]
            yield from _drain(remote_events)

    def _forward(self, ids, mask, positions, cache):
        device = self.model.device
        with torch.inference_mode():
            return self.model(
                input_ids=ids.to(device),
                attention_mask=None if mask is None else mask.to(device),
                position_ids=None if positions is None else positions.to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )

    def _take(self, row: _Row, logits: torch.Tensor, started: float, question: str, hits, turn_id: str):
        """Choose the row's next token, and yield its text when it grew (and its answer when it is done)."""
        if len(row.generated) < row.decoding.min_new_tokens:
            logits = logits.clone()
            logits[list(self.stop_ids)] = float("-inf")
        token = row.next_token(logits)
        now = time.perf_counter()
        if row.ttft is None:
            row.ttft = now - started
        if token in self.stop_ids:
            row.done, row.finish = True, "stop"
        else:
            row.generated.append(token)
            if len(row.generated) >= row.decoding.max_new_tokens:
                row.done, row.finish = True, "length"
        text = _visible(self.tokenizer.decode(row.generated, skip_special_tokens=True))
        if row.done:
            text = text.rstrip("\ufffd").strip()
            yield Event(row.variant.name, text, True, self._record(row, text, now - started, question, hits, turn_id))
        elif text != row.shown:
            row.shown = text
            yield Event(row.variant.name, text)

    def _record(self, row: _Row, text: str, total: float, question: str, hits, turn_id: str) -> Answer:
        shown = hits if row.variant.retrieval else []
        return Answer(
            id=uuid.uuid4().hex,
            turn_id=turn_id,
            variant=row.variant.name,
            question=question,
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
    """One local variant's state during a turn."""

    def __init__(
        self, v: Variant, messages: list[dict], prompt_ids: list[int], adapter: str | None, decoding: Decoding
    ):
        self.variant, self.messages, self.prompt_ids, self.adapter, self.decoding = (
            v,
            messages,
            prompt_ids,
            adapter,
            decoding,
        )
        self.generated: list[int] = []
        self.done, self.finish, self.ttft, self.shown = False, "", None, ""
        self.generator = torch.Generator().manual_seed(decoding.seed)  # the same draws alone or in a batch

    def next_token(self, logits: torch.Tensor) -> int:
        logits = logits.float().cpu()
        if self.decoding.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.decoding.temperature, dim=-1)
        if self.decoding.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(0) - sorted_probs > self.decoding.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=self.generator))


def _left_padded(caches: list[DynamicCache], lengths: list[int]) -> tuple[Cache, torch.Tensor]:
    """One batch cache from single-row caches of different lengths, padded on the left, and its attention mask."""
    width = max(lengths)
    layers = []
    for entries in zip(*(cache.layers for cache in caches)):
        layer = _GrowingLayer()
        layer.update(
            torch.cat([_pad_left(entry.keys, width) for entry in entries]),
            torch.cat([_pad_left(entry.values, width) for entry in entries]),
        )
        layers.append(layer)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = 1
    return Cache(layers=layers), mask


class _GrowingLayer(DynamicLayer):
    """A KV cache layer that appends in place, inside buffers with room to spare.

    The stock layer concatenates the whole cache with each new token, so every decoding step copies all of it:
    for four rows of 600 tokens that is about 110 MB per step on SmolLM2-135M.
    """

    SPARE = 256

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.length, self.key_buffer, self.value_buffer = 0, None, None
        end = self.length + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2]:
            capacity = end + max(self.SPARE, end // 2)
            self.key_buffer = _grown(self.key_buffer, key_states, self.length, capacity)
            self.value_buffer = _grown(self.value_buffer, value_states, self.length, capacity)
        self.key_buffer[..., self.length : end, :] = key_states
        self.value_buffer[..., self.length : end, :] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[..., :end, :], self.value_buffer[..., :end, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self.keys, self.values = self.key_buffer[..., : self.length, :], self.value_buffer[..., : self.length, :]


def _grown(buffer: torch.Tensor | None, like: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    grown = like.new_empty(*like.shape[:-2], capacity, like.shape[-1])
    if buffer is not None:
        grown[..., :length, :] = buffer[..., :length, :]
    return grown


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - tensor.shape[-2]
    if missing == 0:
        return tensor
    pad = tensor.new_zeros(*tensor.shape[:-2], missing, tensor.shape[-1])
    return torch.cat([pad, tensor], dim=-2)


def _drain(events: queue.Queue) -> Iterator[Event]:
    while True:
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


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
