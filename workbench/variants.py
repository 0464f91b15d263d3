"""Variants: what differs between the columns of a comparison, and the one prompt template they share.

A variant is a name, which fine-tuned adapter is on (if any), whether retrieved sources are shown, whether training
examples are shown (`prompt`), and the decoding settings. Everything else (base weights, chat template, system
prompt, decoding, seed) is shared, so a difference between two columns can only come from the adapter, the sources
or the examples. The RAG prompt adds a numbered sources block in front of the question and nothing else; without
sources the user message is the question alone, exactly as in the fine-tuning data. The `prompt` variant's
examples are earlier turns of the conversation (question, reference answer), after the system prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench.config import ChatConfig
from workbench.data.loaders import BadInputError
from workbench.workspace import check_adapter_name

REMOTE_PREFIX = "remote:"


class VariantUnavailable(BadInputError):
    """A variant that is unknown or cannot answer here; the message says what to configure or build."""


@dataclass(frozen=True)
class Decoding:
    """Decoding settings shared by every variant of a turn."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    min_new_tokens: int = 0  # end of sequence is suppressed until this many tokens (benchmarks use it)
    repetition_penalty: float = 1.0
    stop_on_repeat: bool = False

    @classmethod
    def from_config(cls, chat: ChatConfig) -> Decoding:
        return cls(
            chat.max_new_tokens,
            chat.temperature,
            chat.top_p,
            chat.seed,
            repetition_penalty=chat.repetition_penalty,
            stop_on_repeat=chat.stop_on_repeat,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Variant:
    """One column: `tuned` runs a fine-tuned adapter, the one named `adapter` (`ft:A`, `ft_rag:A`) or, for the
    `ft` / `ft_rag` aliases (`adapter` None), the run's default (`Engine.adapter_of`); `retrieval` shows retrieved
    sources; `examples` shows training pairs (`workbench.fewshot`); `remote` names a configured endpoint."""

    name: str
    tuned: bool = False
    adapter: str | None = None
    retrieval: bool = False
    remote: str | None = None
    examples: bool = False


BUILT_IN = {
    "base": Variant("base"),
    "prompt": Variant("prompt", examples=True),
    "ft": Variant("ft", tuned=True),
    "rag": Variant("rag", retrieval=True),
    "ft_rag": Variant("ft_rag", tuned=True, retrieval=True),
}
CHOICES = "base, prompt, ft, ft:ADAPTER, rag, ft_rag, ft_rag:ADAPTER or remote:NAME"


def variant(name: str, chat: ChatConfig) -> Variant:
    """The variant called `name`; a clear error lists the choices for an unknown one."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    kind, _, adapter = name.partition(":")
    if kind in ("ft", "ft_rag") and adapter:
        try:
            check_adapter_name(adapter)
        except ValueError as exc:
            raise VariantUnavailable(f"variant {name!r}: {exc}") from None
        return Variant(name, tuned=True, adapter=adapter, retrieval=kind == "ft_rag")
    if name.startswith(REMOTE_PREFIX):
        remote = name.removeprefix(REMOTE_PREFIX)
        if remote not in chat.remotes:
            configured = ", ".join(REMOTE_PREFIX + r for r in chat.remotes) or "none configured"
            raise VariantUnavailable(f"unknown remote variant {name!r}: add it under chat.remotes ({configured})")
        return Variant(name, remote=remote)
    raise VariantUnavailable(f"unknown variant {name!r}; choose from {CHOICES}")


def is_tuned(name: str) -> bool:
    """Whether variant `name` answers with a fine-tuned adapter (`ft`, `ft_rag`, `ft:A`, `ft_rag:A`)."""
    return name.partition(":")[0] in ("ft", "ft_rag")


def uses_retrieval(name: str) -> bool:
    """Whether variant `name` is shown retrieved sources (`rag`, `ft_rag`, `ft_rag:A`)."""
    return name.partition(":")[0] in ("rag", "ft_rag")


SOURCES_INSTRUCTION = (
    "Answer the question in one or two sentences, using only the sources above, and cite the source you use "
    "like [1]. Do not list the sources. If they do not contain the answer, say so."
)
"""Measured against the earlier instruction (which lacked the length and the "do not list"), on the demo's test
questions: see `bench/answers.py`."""


def sources_block(chunks: list) -> str:
    """The numbered sources a RAG variant is shown: title and section path, then the chunk's text."""
    parts = []
    for number, chunk in enumerate(chunks, 1):
        sections = chunk.headings[1:] if chunk.headings[:1] == [chunk.title] else chunk.headings
        where = " > ".join([chunk.title, *sections])
        parts.append(f"[{number}] {where}\n{chunk.text.strip()}")
    return "Sources:\n\n" + "\n\n".join(parts) + "\n\n" + SOURCES_INSTRUCTION


def user_message(question: str, chunks: list | None) -> str:
    """The user turn: the question alone, or the sources block followed by the question."""
    return question if chunks is None else f"{sources_block(chunks)}\n\nQuestion: {question}"


def conversation(
    system_prompt: str | None, history: list[dict], question: str, chunks: list | None, examples: list = ()
) -> list[dict]:
    """Chat messages for one turn: system prompt, the examples shown (`Example`s, as question and answer turns),
    earlier turns (questions without their sources), this turn."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    shown = [
        {"role": role, "content": text}
        for e in examples
        for role, text in (("user", e.question), ("assistant", e.answer))
    ]
    return system + shown + history + [{"role": "user", "content": user_message(question, chunks)}]
