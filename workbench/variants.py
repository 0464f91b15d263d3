"""Variants: what differs between the columns of a comparison, and the one prompt template they share.

A variant is a name, whether the fine-tuned adapter is on, whether retrieved sources are shown, whether training
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
    """One column: `adapter` names a loaded LoRA adapter (None: base weights); `examples`: shown training pairs
    (`workbench.fewshot`); `remote` names a configured endpoint."""

    name: str
    adapter: str | None = None
    retrieval: bool = False
    remote: str | None = None
    examples: bool = False


BUILT_IN = {
    "base": Variant("base"),
    "prompt": Variant("prompt", examples=True),
    "ft": Variant("ft", adapter="ft"),
    "rag": Variant("rag", retrieval=True),
    "ft_rag": Variant("ft_rag", adapter="ft_rag", retrieval=True),
}


def variant(name: str, chat: ChatConfig) -> Variant:
    """The variant called `name`; a clear error lists the choices for an unknown one."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name.startswith(REMOTE_PREFIX):
        remote = name.removeprefix(REMOTE_PREFIX)
        if remote not in chat.remotes:
            configured = ", ".join(REMOTE_PREFIX + r for r in chat.remotes) or "none configured"
            raise VariantUnavailable(f"unknown remote variant {name!r}: add it under chat.remotes ({configured})")
        return Variant(name, remote=remote)
    raise VariantUnavailable(f"unknown variant {name!r}; choose from {', '.join(BUILT_IN)} or remote:NAME")


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
