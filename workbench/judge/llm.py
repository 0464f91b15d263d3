"""LLM judges: rubric prompts kept as YAML data (`configs/judges/`), run by a local or remote model, parsed strictly.

A rubric fills its prompt template from an answer item and asks for a score on its scale; `parse_score` reads the
reply and says why when it cannot (no score, two different scores, off the scale), and the judge then records
score None with that reason and the raw reply, never a guessed number. Scores are stored normalised to 0..1 with
the raw score in `details`.

Judge models share one small interface, `JudgeModel`: `replies(conversations)` for a batch of chat messages.
`LocalJudgeModel` decodes greedily in batches with a local model; `RemoteJudgeModel` asks an OpenAI-compatible
endpoint one conversation at a time, so one failed request fails only its own answer.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from workbench.config import RemoteConfig
from workbench.data.loaders import BadInputError
from workbench.judge.registry import Judgement

RUBRIC_DIR = Path(__file__).resolve().parents[2] / "configs" / "judges"
"""The shipped rubrics; `load_rubric(NAME)` reads `RUBRIC_DIR/NAME.yaml`."""

ITEM_FIELDS = ("question", "answer", "reference", "context")
PAIR_FIELDS = ("question", "answer_a", "answer_b", "reference", "context")


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int
    """Lowest score the judge may give."""
    max: int
    """Highest score the judge may give."""

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Rubric(BaseModel):
    """One judging instruction, as written in a `configs/judges/*.yaml` file."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    name: str
    """Short name, equal to the file name; judgements are stored as `llm:NAME`."""
    description: str
    """What the rubric measures, for people reading reports."""
    kind: Literal["score", "pairwise"] = "score"
    """`score` rates one answer on `scale`; `pairwise` asks which of two answers is better (see `pairwise.py`)."""
    system: str | None = None
    """Optional system message sent before the prompt."""
    prompt: str
    """Template: {question} {answer} {reference} {context} (pairwise: {answer_a} {answer_b}), {min} {max}."""
    scale: Scale | None = None
    """Score range of a `score` rubric, e.g. {min: 1, max: 5}."""
    output: str
    """What to reply, appended after the prompt; it may use {min} and {max}. Literal braces are written {{ }}."""

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        fields = (ITEM_FIELDS if self.kind == "score" else PAIR_FIELDS) + ("min", "max")
        for key, template in (("prompt", self.prompt), ("output", self.output)):
            unknown = sorted(_placeholders(template, key) - set(fields))
            if unknown:
                raise ValueError(
                    f"{key}: unknown placeholder(s) {', '.join(unknown)}; use {', '.join(fields)} "
                    "(write literal braces as {{ and }})"
                )
        required = ("answer",) if self.kind == "score" else ("answer_a", "answer_b")
        missing = [f"{{{f}}}" for f in required if f not in self.placeholders]
        if missing:
            raise ValueError(f"prompt: must contain {' and '.join(missing)}")
        if self.kind == "score" and self.scale is None:
            raise ValueError("scale: a score rubric needs a scale, e.g. {min: 1, max: 5}")
        if self.kind == "pairwise" and self.scale is not None:
            raise ValueError("scale: a pairwise rubric has no scale; remove it")
        return self

    @property
    def placeholders(self) -> set[str]:
        return _placeholders(self.prompt, "prompt")

    def messages(self, values: dict[str, str]) -> list[dict]:
        """The chat messages for one item; `values` holds every placeholder the prompt uses."""
        scale = {"min": self.scale.min, "max": self.scale.max} if self.scale else {}
        text = self.prompt.format(**values, **scale).strip() + "\n\n" + self.output.format(**scale).strip()
        system = [{"role": "system", "content": self.system.strip()}] if self.system else []
        return [*system, {"role": "user", "content": text}]


def _placeholders(template: str, key: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}; write literal braces as {{{{ and }}}}") from None


def rubric_names() -> list[str]:
    return sorted(p.stem for p in RUBRIC_DIR.glob("*.yaml"))


def load_rubric(name_or_path: str | Path) -> Rubric:
    """A shipped rubric by name (`correctness`) or any rubric file by path; every problem is reported at once."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = RUBRIC_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise BadInputError(f"no rubric {name_or_path!r}; shipped rubrics: {', '.join(rubric_names())}")
    if not path.is_file():
        raise BadInputError(f"{path}: rubric file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a mapping with name, description, prompt, scale and output")
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as exc:
        problems = [f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise BadInputError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems)) from None
    if rubric.name != path.stem:
        raise BadInputError(f"{path}: name: {rubric.name!r} differs from the file name; make them equal")
    return rubric


# -- parsing ---------------------------------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (  # strongest evidence first; the first pattern that matches decides
    ("[[n]]", re.compile(rf"\[\[\s*{_NUM}\s*\]\]")),
    ("label", re.compile(rf"\b(?:score|rating|grade)\b[^\w-]{{0,4}}(?:is|of|=|:)?\s*\**\s*{_NUM}", re.IGNORECASE)),
    ("n/max", re.compile(rf"(?<![\d.]){_NUM}\s*(?:/|out of)\s*(\d+)\b", re.IGNORECASE)),
    ("lone", re.compile(rf"^[^\w-]*{_NUM}\W*$")),
)


def json_values(output: str, keys: tuple[str, ...]):
    """Values under one of `keys` (any case) in the flat JSON objects of a judge's reply, in order."""
    for blob in re.findall(r"\{[^{}]*\}", output):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            value = next((v for k, v in data.items() if k.lower() in keys), None)
            if value is not None:
                yield value


def parse_score(output: str, low: int, high: int) -> tuple[float | None, str | None]:
    """(score, None) from a judge's reply, or (None, why not).

    Read in order of strength: a JSON object with `score`, `[[4]]`, "Score: 4", "4/5" or "4 out of 5", a reply that
    is only the number. Two different scores of the same strength, a score off the `low`..`high` scale, or an
    "n/max" whose max is not `high` are failures.
    """
    if not output.strip():
        return None, "the judge returned an empty reply"
    for value in json_values(output, ("score",)):
        return _on_scale(value, low, high, "JSON score")
    for form, pattern in _SCORE_PATTERNS:
        matches = pattern.findall(output)
        if not matches:
            continue
        values = {m[0] if isinstance(m, tuple) else m for m in matches}
        if len(values) > 1:
            return None, f"ambiguous: the reply gives several scores ({', '.join(sorted(values))})"
        if form == "n/max":
            outs = {m[1] for m in matches}
            if outs != {str(high)}:
                return None, f"the reply scores out of {', '.join(sorted(outs))}, but the scale is {low}-{high}"
        return _on_scale(values.pop(), low, high, form)
    return None, "no score found in the judge's reply"


def _on_scale(value, low: int, high: int, form: str) -> tuple[float | None, str | None]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"the {form} {value!r} is not a number"
    if isinstance(value, bool) or not low <= number <= high:
        return None, f"score {value} is outside the {low}-{high} scale"
    return number, None


# -- judge models ----------------------------------------------------------------------------------------------------


class JudgeModel(Protocol):
    name: str
    """Recorded with every judgement, e.g. `local:smollm2-135m-instruct`."""
    batch_size: int
    """Conversations per `replies` call; a call that raises OSError fails only its own items."""

    def replies(self, conversations: list[list[dict]]) -> list[str]: ...


@dataclass
class LocalJudgeModel:
    """A local chat model (any `load_causal_lm` spec), loaded once, decoding greedily in batches."""

    spec: str = "smollm2-135m-instruct"
    max_new_tokens: int = 64
    device: str = "auto"
    batch_size: int = 8

    @property
    def name(self) -> str:
        return f"local:{self.spec}"

    def replies(self, conversations: list[list[dict]]) -> list[str]:
        from workbench.generate import greedy_replies
        from workbench.models import load_causal_lm

        model, tokenizer = load_causal_lm(self.spec, self.device)
        return greedy_replies(model, tokenizer, conversations, None, self.max_new_tokens, self.batch_size)


@dataclass
class RemoteJudgeModel:
    """An OpenAI-compatible endpoint, asked at temperature 0, one conversation per request."""

    settings: RemoteConfig
    max_new_tokens: int = 256
    batch_size: int = 1

    @property
    def name(self) -> str:
        return f"remote:{self.settings.model}"

    def replies(self, conversations: list[list[dict]]) -> list[str]:
        from workbench.remote import RemoteChat
        from workbench.variants import Decoding

        chat, decoding = RemoteChat(self.settings), Decoding(max_new_tokens=self.max_new_tokens, temperature=0.0)
        texts = []
        for messages in conversations:
            text = ""
            for text, _usage in chat.stream(messages, decoding):
                pass
            texts.append(text)
        return texts


def ask(model: JudgeModel, conversations: list[list[dict]]) -> list[str | OSError]:
    """Each conversation's reply, or the OSError of the batch it was in (an endpoint that failed)."""
    results: list[str | OSError] = []
    for start in range(0, len(conversations), max(1, model.batch_size)):
        batch = conversations[start : start + max(1, model.batch_size)]
        try:
            results.extend(model.replies(batch))
        except OSError as exc:
            results.extend([exc] * len(batch))
    return results


def item_values(item: dict, fields: tuple[str, ...]) -> dict[str, str]:
    """Template values of an item: `text` fills {answer}; a list of context passages is numbered."""
    values = {key: item.get(key) for key in fields}
    values["answer"] = item.get("answer", item.get("text"))
    context = item.get("context")
    if isinstance(context, list):
        values["context"] = "\n\n".join(f"[{i}] {passage}" for i, passage in enumerate(context, 1))
    return {key: value.strip() if isinstance(value, str) else "" for key, value in values.items() if key in fields}


def missing_inputs(rubric: Rubric, values: dict[str, str]) -> str | None:
    absent = sorted(f for f in rubric.placeholders & set(values) if not values[f])
    return f"rubric {rubric.name} needs {', '.join(absent)}, which this item lacks" if absent else None


# -- the judge -------------------------------------------------------------------------------------------------------


@dataclass
class LLMJudge:
    """A `score` rubric run by a judge model over many answer items (`question`, `text`, `reference`, `context`)."""

    rubric: Rubric
    model: JudgeModel

    def __post_init__(self):
        if self.rubric.kind != "score":
            raise BadInputError(f"rubric {self.rubric.name} is a {self.rubric.kind} rubric; LLMJudge needs a score one")

    @property
    def name(self) -> str:
        return f"llm:{self.rubric.name}"

    def judge(self, item: dict) -> Judgement:
        return self.judge_many([item])[0]

    def judge_many(self, items: list[dict]) -> list[Judgement]:
        """One judgement per item, in order; the model sees every judgeable item in as few batches as it allows."""
        results: list[Judgement | None] = [None] * len(items)
        pending: list[tuple[int, list[dict]]] = []
        for i, item in enumerate(items):
            values = item_values(item, ITEM_FIELDS)
            missing = missing_inputs(self.rubric, values)
            if missing:
                results[i] = Judgement(self.name, None, missing, {"rubric": self.rubric.name})
            else:
                pending.append((i, self.rubric.messages(values)))
        replies = ask(self.model, [messages for _, messages in pending])
        for (i, _), reply in zip(pending, replies):
            results[i] = self._judgement(reply)
        return results

    def _judgement(self, reply: str | OSError) -> Judgement:
        details = {"rubric": self.rubric.name, "model": self.model.name}
        if isinstance(reply, OSError):
            return Judgement(self.name, None, f"judge model failed: {reply}", details)
        low, high = self.rubric.scale.min, self.rubric.scale.max
        raw, reason = parse_score(reply, low, high)
        details |= {"output": reply, "scale": [low, high]}
        if raw is None:
            return Judgement(self.name, None, f"unparsable judge reply: {reason}", details)
        return Judgement(self.name, (raw - low) / (high - low), None, details | {"raw_score": raw})
