"""Judges that compare an answer with its QA pair's reference answer, abstention-aware.

Token overlap (F1, exact match, containment), ROUGE-L through the local `evaluate` module, embedding cosine, and
key-fact recall: the share of the reference's checkable facts (numbers with units, dates, money, percentages,
product codes, names) that the answer states, after number formats are made comparable (`1,200` = `1200`,
`30-day` = `30 days`, `€85,000` = `85000 euros`, `two` = `2`). Facts the question already states are not counted:
repeating them proves nothing.

Unanswerable questions (QA type `unanswerable`, or a reference that is itself an abstention) have no facts to
match: there every judge scores 1 when the answer abstains and 0 when it asserts an answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from workbench.judge.registry import Judgement, register_reference_judge
from workbench.text_metrics import exact_match, normalize, token_f1

DEFAULT_EMBEDDER = "all-minilm-l6-v2"


# -- text clean-up shared by fact extraction and abstention detection ------------------------------------------------

_CLEAN = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "‑": "-", "−": "-", "\u00a0": " "})
# "one" is left out: it is as often a pronoun ("the one that ...") as a count.
_NUMBER_WORDS = dict(
    zip(
        (
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ),
        map(str, range(2, 21)),
    )
) | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


_LIST_MARKER = re.compile(r"(?:^|(?<=[;.\n]))(\s*)\d{1,2}\)(?=\s)")


def _clean(text: str) -> str:
    """Comparable text: plain quotes and dashes, number words as digits, list markers ("1) ") blanked."""
    text = _NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], text.translate(_CLEAN))
    return _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)


# -- key facts -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """A checkable fact: `text` as written, `kind` (number, date, time, code, version, name) and the `key` that
    equal facts share however they are written (e.g. `num:85000 eur` for `€85,000` and `85000 euros`)."""

    text: str
    kind: str
    key: str


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("January", "Jan"),
            ("February", "Feb"),
            ("March", "Mar"),
            ("April", "Apr"),
            ("May",),
            ("June", "Jun"),
            ("July", "Jul"),
            ("August", "Aug"),
            ("September", "Sep", "Sept"),
            ("October", "Oct"),
            ("November", "Nov"),
            ("December", "Dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_DATES = (
    re.compile(rf"\b(?P<day>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?{_MONTH}\s*,?\s+(?P<year>\d{{4}})\b"),
    re.compile(rf"\b{_MONTH}\s+(?P<day>\d{{1,2}}){_ORDINAL},?\s+(?P<year>\d{{4}})\b"),
    re.compile(r"\b(?P<year>\d{4})-(?P<mnum>\d{2})-(?P<day>\d{2})\b"),
    re.compile(rf"\b{_MONTH}\s+(?P<year>\d{{4}})\b"),
)
_TIME = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?:\s*(?P<ampm>[ap])\.?m\.?\b)?", re.IGNORECASE)
_VERSION = re.compile(r"\bv?\d+\.\d+\.\d+\b")
_CODE = re.compile(
    r"\b[A-Z]{1,5}(?:-[A-Z]{1,5})*-?\d+[A-Za-z0-9]*(?:-[A-Z0-9]+)*(?:\s(?:Pro|Plus|Max|Mini|Lite|Ultra))?\b"
)

# Units after a number, as written -> canonical. Symbols match case-sensitively (`A` amperes, not the article).
_UNIT_SYMBOLS = {
    "mm": "mm", "cm": "cm", "m": "m", "km": "km", "g": "g", "kg": "kg", "t": "t", "V": "v", "mV": "mv", "kV": "kv",
    "W": "w", "kW": "kw", "kWh": "kwh", "Wh": "wh", "VA": "va", "mAh": "mah", "A": "a", "mA": "ma", "Hz": "hz",
    "kHz": "khz", "MHz": "mhz", "GHz": "ghz", "ppm": "ppm", "dB": "db", "dBm": "dbm", "Pa": "pa", "kPa": "kpa",
    "bar": "bar", "°C": "°c", "°F": "°f", "mS/cm": "ms/cm", "l": "l", "L": "l", "ml": "ml", "mL": "ml", "s": "second",
    "ms": "ms", "min": "minute", "h": "hour", "GB": "gb", "MB": "mb", "TB": "tb", "%": "%", "EUR": "eur", "USD": "usd",
    "GBP": "gbp",
}  # fmt: skip
_UNIT_WORDS = {
    "second": "second", "sec": "second", "minute": "minute", "mins": "minute", "hour": "hour", "hr": "hour",
    "hrs": "hour", "day": "day", "week": "week", "month": "month", "year": "year", "yr": "year", "yrs": "year",
    "millimetre": "mm", "millimeter": "mm", "centimetre": "cm", "centimeter": "cm", "metre": "m", "meter": "m",
    "kilometre": "km", "kilometer": "km", "gram": "g", "kilogram": "kg", "tonne": "t", "volt": "v", "watt": "w",
    "amp": "a", "ampere": "a", "litre": "l", "liter": "l", "millilitre": "ml", "milliliter": "ml", "degree": "°",
    "percent": "%", "per cent": "%", "euro": "eur", "dollar": "usd", "pound": "gbp",
}  # fmt: skip
_CURRENCY_SIGNS = {"€": "eur", "$": "usd", "£": "gbp"}
_MULTIPLIERS = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_UNIT = (
    r"(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(_UNIT_SYMBOLS, key=len, reverse=True))
    + r"|(?i:"
    + "|".join(re.escape(u) + "s?" for u in sorted(_UNIT_WORDS, key=len, reverse=True))
    + r"))(?![\w/])"
)
_NUMBER = re.compile(
    r"(?<![\w.,])(?P<sign>[€$£])?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d,]\d)"
    r"(?:\s?(?P<mult>thousand|million|billion)\b)?"
    rf"(?:\s?-?\s?{_UNIT})?"
)
_RANGE_JOIN = re.compile(r"\s*(?:-|to|and|or|x|×|/)\s*", re.IGNORECASE)

_NAME = re.compile(r"(?<![\w'])[A-Z][a-zA-Z]*(?:['-][A-Za-z]+)*(?:\s+[A-Z][a-zA-Z]*(?:['-][A-Za-z]+)*)*")
_SENTENCE_START = re.compile(r"(?:^\s*|[.!?:;\n]\s*|\d\)\s*|^\s*[-*]\s*|[\"(]\s*)$")
_STOPWORDS = {
    "ac",
    "dc",
    "a",
    "an",
    "the",
    "i",
    "i'm",
    "i've",
    "i'd",
    "you",
    "we",
    "they",
    "he",
    "she",
    "it",
    "it's",
    "its",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "yes",
    "no",
    "not",
    "in",
    "on",
    "at",
    "of",
    "for",
    "to",
    "from",
    "by",
    "with",
    "about",
    "after",
    "before",
    "during",
    "between",
    "into",
    "over",
    "under",
    "since",
    "until",
    "while",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "what",
    "why",
    "how",
    "if",
    "then",
    "than",
    "so",
    "but",
    "and",
    "or",
    "nor",
    "as",
    "also",
    "only",
    "just",
    "each",
    "every",
    "all",
    "any",
    "both",
    "either",
    "neither",
    "some",
    "many",
    "most",
    "more",
    "much",
    "few",
    "several",
    "other",
    "another",
    "such",
    "our",
    "your",
    "their",
    "his",
    "her",
    "my",
    "me",
    "us",
    "them",
    "please",
    "note",
    "first",
    "second",
    "next",
    "finally",
    "however",
    "therefore",
    "thus",
    "unfortunately",
    "sorry",
    "according",
    "based",
    "per",
    "via",
}


def key_facts(text: str, question: str | None = None) -> list[Fact]:
    """The checkable facts of `text`, in order, without duplicates; those `question` already states are left out."""
    text = _clean(text)
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, Fact]] = []

    def add(match: re.Match, fact: Fact) -> None:
        taken.append(match.span())
        found.append((match.start(), fact))

    def free(match: re.Match) -> bool:
        return all(match.end() <= start or match.start() >= end for start, end in taken)

    for pattern in _DATES:
        for m in pattern.finditer(text):
            if free(m):
                add(m, Fact(m.group(0), "date", "date:" + _date_key(m)))
    for m in _TIME.finditer(text):
        if free(m):
            hour, half = int(m.group("h")), (m.group("ampm") or "").lower()
            hour = hour % 12 + 12 * (half == "p") if half else hour
            add(m, Fact(m.group(0), "time", f"time:{hour}:{m.group('m')}"))
    for m in _VERSION.finditer(text):
        if free(m):
            add(m, Fact(m.group(0), "version", "version:" + m.group(0).lstrip("v")))
    for m in _CODE.finditer(text):
        if free(m):
            add(m, Fact(m.group(0), "code", "code:" + re.sub(r"[-\s]", "", m.group(0).upper())))
    numbers = [m for m in _NUMBER.finditer(text) if free(m)]
    units = [_unit_of(m) for m in numbers]
    for i in range(len(numbers) - 2, -1, -1):  # "100-240 V", "2 to 40 litres": the range shares its unit
        between = text[numbers[i].end() : numbers[i + 1].start()]
        if units[i] is None and units[i + 1] is not None and _RANGE_JOIN.fullmatch(between):
            units[i] = units[i + 1]
    for m, unit in zip(numbers, units):
        value = _number(m.group("num"), m.group("mult"))
        add(m, Fact(m.group(0).strip(), "number", f"num:{value} {unit}" if unit else f"num:{value}"))
    masked = text
    for start, end in taken:  # names never run into a code, date or number
        masked = masked[:start] + "\0" * (end - start) + masked[end:]
    for m in _NAME.finditer(masked):
        name = _name(masked, m, question)
        if name:
            found.append((m.start(), Fact(name, "name", "name:" + _words(name))))
    facts = list({fact.key: fact for _, fact in sorted(found, key=lambda pair: pair[0])}.values())
    if question is None:
        return facts
    in_question = _Coverage.of(question)
    return [f for f in facts if not in_question.states(f)]


def _date_key(m: re.Match) -> str:
    month = int(m.group("mnum")) if "mnum" in m.re.groupindex else _MONTHS[m.group("month")]
    day = m.groupdict().get("day")
    return f"{m.group('year')}-{month:02d}" + (f"-{int(day):02d}" if day else "")


def _unit_of(m: re.Match) -> str | None:
    if m.group("sign"):
        return _CURRENCY_SIGNS[m.group("sign")]
    unit = m.group("unit")
    if unit is None:
        return None
    if unit in _UNIT_SYMBOLS:
        return _UNIT_SYMBOLS[unit]
    unit = unit.lower()
    return _UNIT_WORDS.get(unit) or _UNIT_WORDS[unit.removesuffix("s")]


def _number(digits: str, multiplier: str | None) -> str:
    value = Decimal(digits.replace(",", "")) * _MULTIPLIERS.get(multiplier or "", 1)
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def _name(text: str, m: re.Match, question: str | None) -> str | None:
    """A capitalised run minus leading common words; a lone word that opens a sentence counts only when it is also
    capitalised mid-sentence in the text or the question, since "Customer support ..." is no name."""
    words = m.group(0).split()
    at_start = bool(_SENTENCE_START.search(text[: m.start()]))
    while words and words[0].lower().removesuffix("'s") in _STOPWORDS:
        words, at_start = words[1:], False
    words = [w.removesuffix("'s") for w in words]
    if not words or (len(words) == 1 and (len(words[0]) < 2 or words[0].lower() in _STOPWORDS)):
        return None
    if at_start and len(words) == 1:
        mid_sentence = rf"(?<![.!?:;\n]\s)(?<!^)\b{re.escape(words[0])}\b"
        if not any(re.search(mid_sentence, t.strip()) for t in (text[m.end() :], question or "")):
            return None
    return " ".join(words)


def _words(text: str) -> str:
    """Lower-case words only, possessives dropped: the form names are compared in."""
    return " ".join(re.findall(r"[^\W_]+", re.sub(r"'s\b", "", _clean(text).lower())))


@dataclass(frozen=True)
class _Coverage:
    """What a text states: fact keys, bare number values (a date gives its year), units, and its words."""

    keys: set[str]
    values: set[str]
    units: set[str]
    words: str

    @classmethod
    def of(cls, text: str) -> _Coverage:
        facts = key_facts(text)
        numbers = [f.key.removeprefix("num:").split(" ") for f in facts if f.kind == "number"]
        years = {f.key[5:9] for f in facts if f.kind == "date"}
        return cls(
            {f.key for f in facts},
            {n[0] for n in numbers} | years,
            {n[1] for n in numbers if len(n) > 1},
            f" {_words(text)} ",
        )

    def states(self, fact: Fact) -> bool:
        """A number counts in any unit when the fact has none, and without its unit when the text gives that unit
        to another number ("30 and 60 cm"); a month counts inside any full date of that month."""
        if fact.kind == "name":
            return f" {fact.key.removeprefix('name:')} " in self.words
        if fact.key in self.keys:
            return True
        if fact.kind == "date" and fact.key.count("-") == 1:
            return any(k.startswith(fact.key + "-") for k in self.keys)
        if fact.kind != "number":
            return False
        value, _, unit = fact.key.removeprefix("num:").partition(" ")
        return value in self.values and (not unit or (f"num:{value}" in self.keys and unit in self.units))


@dataclass(frozen=True)
class FactRecall:
    """Which of the reference's facts the answer states; `recall` is None when the reference has none."""

    recall: float | None
    found: list[str]
    missing: list[str]


def key_fact_recall(answer: str, reference: str, question: str | None = None) -> FactRecall:
    facts = key_facts(reference, question)
    stated = _Coverage.of(answer)
    found = [f.text for f in facts if stated.states(f)]
    missing = [f.text for f in facts if not stated.states(f)]
    return FactRecall(len(found) / len(facts) if facts else None, found, missing)


# -- abstention ------------------------------------------------------------------------------------------------------

_SOURCES = (
    r"(?:sources?|documentation|documents?|docs|context|text|passages?|excerpts?|information|manuals?|materials?|"
    r"data|records?|knowledge base|corpus|snippets?)"
)
_ABSTAIN = re.compile(
    "|".join(
        (
            (
                rf"\b{_SOURCES}\s+(?:\w+\s+){{0,3}}?(?:does|do|did)(?:\s+not|n't)\s+(?:\w+\s+)?"
                r"(?:say|mention|specify|state|contain|include|provide|cover|give|list|describe|discuss|have|tell|"
                r"indicate|answer|address)"
            ),
            r"\bnot\s+(?:\w+\s+)?(?:mentioned|specified|stated|documented|described|addressed)\b",
            rf"\bnot\s+(?:in|within|part of|covered by|found in)\s+(?:the\s+)?(?:provided\s+|given\s+)?{_SOURCES}",
            r"\bno\s+(?:information|mention|details?|data|record|indication)\b",
            (
                r"\b(?:i|we)\s+(?:do\s+not|don't|cannot|can't|could\s+not|couldn't|am\s+unable\s+to|'m\s+unable\s+to)"
                r"\s+(?:\w+\s+)?(?:know|find|say|tell|answer|determine|confirm|verify)\b"
            ),
            r"\bi\s*(?:'m|am)\s+(?:not\s+(?:sure|certain|aware)|unable\s+to|afraid)\b",
            (
                r"\b(?:i|we)\s+(?:do\s+not|don't)\s+have\s+(?:any\s+|enough\s+|the\s+)?(?:information|data|details|"
                r"access|knowledge|that)\b"
            ),
            r"\b(?:i|we)\s+have\s+no\s+(?:information|data|details|knowledge)\b",
            r"\bunable\s+to\s+(?:find|determine|answer|say|confirm|locate)\b",
            r"\b(?:cannot|can't|could\s+not|couldn't)\s+be\s+(?:determined|found|answered|confirmed)\b",
            r"\b(?:is|are)\s+not\s+known\b",
        )
    ),
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"(?<=[.!?;])\s+|\n+|,?\s+\b(?:but|however|although|though|yet)\b,?\s+", re.IGNORECASE)


def is_abstention(text: str, question: str | None = None) -> bool:
    """Whether `text` declines to answer and asserts nothing checkable.

    An abstention phrase ("I don't know", "the sources do not say", "not mentioned", ...) must be present, and no
    other clause may state a fact the question does not already give: "I don't know the exact date, but it was
    2011" asserts a year and is no abstention; "The documentation does not say what the S3 Pro bracket costs" is.
    """
    clauses = [c for c in _CLAUSES.split(_clean(text)) if c and c.strip()]
    abstaining = [bool(_ABSTAIN.search(c)) for c in clauses]
    if not any(abstaining):
        return False
    return not any(key_facts(c, question) for c, abstains in zip(clauses, abstaining) if not abstains)


def is_unanswerable(item: dict) -> bool:
    """A question the sources cannot answer: QA type `unanswerable`, or a reference that is an abstention."""
    reference = item.get("reference") or ""
    return item.get("type") == "unanswerable" or bool(reference.strip() and is_abstention(reference))


# -- the other measures ---------------------------------------------------------------------------------------------


def contains(answer: str, reference: str) -> bool:
    """Whether the normalised reference occurs, as whole tokens, inside the normalised answer."""
    expected = " ".join(normalize(reference))
    return bool(expected) and f" {expected} " in f" {' '.join(normalize(answer))} "


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure, through the repository's offline `evaluate` module."""
    from workbench.metrics import load_metric

    scores = load_metric("rouge").compute(predictions=[answer], references=[reference], rouge_types=["rougeL"])
    return float(scores["rougeL"])


def embedding_cosine(answer: str, reference: str, embedder: str = DEFAULT_EMBEDDER) -> float:
    """Cosine of the two texts' sentence embeddings (-1..1)."""
    from workbench.models import load_embedder
    from workbench.retrieval.embedding import embed

    vectors = embed(load_embedder(embedder), [answer, reference])
    return float(vectors[0] @ vectors[1])


# -- the judges ------------------------------------------------------------------------------------------------------

Measure = Callable[[str, str, dict], tuple[float | None, str | None, dict]]
"""(answer, reference, item) -> (score, reason when None, details)."""


def reference_judge(name: str, measure: Measure) -> Callable[[dict], Judgement]:
    """Wrap a measure as a judge: unanswerable questions score the abstention; a missing reference fails."""

    def judge(item: dict) -> Judgement:
        if is_unanswerable(item):
            abstained = is_abstention(item["text"], item.get("question"))
            reason = "unanswerable question: the answer " + ("abstains" if abstained else "asserts an answer")
            return Judgement(name, float(abstained), reason, {"unanswerable": True, "abstained": abstained})
        reference = (item.get("reference") or "").strip()
        if not reference:
            return Judgement(name, None, "no reference answer for this question")
        score, reason, details = measure(item["text"], reference, item)
        return Judgement(name, score, reason, details)

    judge.__name__ = name
    return judge


def _facts(answer: str, reference: str, item: dict) -> tuple[float | None, str | None, dict]:
    result = key_fact_recall(answer, reference, item.get("question"))
    reason = None if result.recall is not None else "the reference states no checkable facts beyond the question"
    return result.recall, reason, {"found": result.found, "missing": result.missing}


def embedding_judge(embedder: str = DEFAULT_EMBEDDER) -> Callable[[dict], Judgement]:
    """The embedding-similarity judge for an embedder spec; the score is the cosine floored at 0."""

    def measure(answer: str, reference: str, item: dict) -> tuple[float, None, dict]:
        cosine = embedding_cosine(answer, reference, embedder)
        return min(max(cosine, 0.0), 1.0), None, {"cosine": cosine, "embedder": embedder}

    return reference_judge("embedding", measure)


def _register(name: str, measure: Measure) -> None:
    register_reference_judge(name, reference_judge(name, measure))


_register("token_f1", lambda answer, reference, _: (token_f1(answer, reference), None, {}))
_register("exact_match", lambda answer, reference, _: (float(exact_match(answer, reference)), None, {}))
_register("contains", lambda answer, reference, _: (float(contains(answer, reference)), None, {}))
_register("rouge_l", lambda answer, reference, _: (rouge_l(answer, reference), None, {}))
_register("key_facts", _facts)
register_reference_judge("embedding", embedding_judge())
