"""Checkable facts: the numbers, dates, times, versions, product codes and names a text states.

One extractor serves both judges that look at facts: key-fact recall (does the answer state the reference's facts?)
and the hallucination detector (does the evidence state the answer's facts, or another value for them?). Facts are
normalised so that equal facts share a `key` however they are written (`1,200` = `1200`, `30-day` = `30 days`,
`€85,000` = `85000 euros`, `two` = `2`, `14 March 2011` = `2011-03-14`), and a number keeps the word it counts
("30 days" vs "45 days", "16 zones"), so the same quantity with another value can be told from a missing fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

_CLEAN = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "‑": "-", "−": "-", "\u00a0": " "})
_LIST_MARKER = re.compile(r"(?:^|(?<=[;.\n]))(\s*)\d{1,2}\)(?=\s)")


def clean(text: str) -> str:
    """Comparable text of the same length (spans stay valid): plain quotes and dashes, list markers ("1) ") blanked."""
    text = text.translate(_CLEAN)
    return _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)


@dataclass(frozen=True)
class Fact:
    """A checkable fact: `text` as written, `kind` (number, date, time, version, code or name) and the `key` that
    equal facts share (`num:85000 eur` for `€85,000` and `85000 euros`). `span` locates it in the text it was found
    in (for a number, its own digits); `counted` is the word a number without a unit counts ("16 zones" -> zone)."""

    text: str
    kind: str
    key: str
    span: tuple[int, int] = field(default=(0, 0), compare=False)
    counted: str | None = field(default=None, compare=False)

    @property
    def value(self) -> str:
        """The normal form without kind or unit: `1200`, `2011-03-14`, `ilse varnhold`."""
        return self.key.partition(":")[2].partition(" ")[0] if self.kind == "number" else self.key.partition(":")[2]

    @property
    def unit(self) -> str | None:
        """A number's unit (`eur`, `%`, `day`, `v`), else the word it counts, else None."""
        return self.key.partition(" ")[2] or self.counted if self.kind == "number" else None


# -- patterns --------------------------------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [("January", "Jan"), ("February", "Feb"), ("March", "Mar"), ("April", "Apr"), ("May",), ("June", "Jun")]
        + [("July", "Jul"), ("August", "Aug"), ("September", "Sep", "Sept"), ("October", "Oct")]
        + [("November", "Nov"), ("December", "Dec")],
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
_LINK = re.compile(
    r"(?<![\w@.])(?:https?://\S+?|www\.\S+?|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|"
    r"de|uk|eu|fr|nl|info|dev|app|cloud|ai|co)(?:/\S*?)?)(?=[.,;:!?)\]]*(?:\s|$))",
    re.IGNORECASE,
)
"""A web address or an email: a model invents them readily, and one is right only when the evidence has it."""
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
# "one" is left out: it is as often a pronoun ("the one that ...") as a count.
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "  # noqa: SIM905
        "seventeen eighteen nineteen twenty".split(),
        start=2,
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90"}
_UNIT = (
    r"(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(_UNIT_SYMBOLS, key=len, reverse=True))
    + r"|(?i:"
    + "|".join(re.escape(u) + "s?" for u in sorted(_UNIT_WORDS, key=len, reverse=True))
    + r"))(?![\w/])"
)
_NUMBER = re.compile(
    r"(?<![\w.,])(?P<sign>[€$£])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|(?i:" + "|".join(_NUMBER_WORDS) + r")\b)(?![\d,]\d)"
    r"(?:\s?(?P<mult>thousand|million|billion)\b)?"
    rf"(?:\s?-?\s?{_UNIT})?"
)
_COUNTED = re.compile(r"\s?-?\s?(?P<word>[A-Za-z]+)")
_RANGE_JOIN = re.compile(r"\s*(?:-|to|and|or|x|×|/)\s*", re.IGNORECASE)

SHORT_WORDS = 4
"""A text of at most this many words is a short answer, whose opening capitalised word may be the answer itself."""
_NAME = re.compile(r"(?<![\w'])[A-Z][a-zA-Z]*(?:['-][A-Za-z]+)*(?:\s+[A-Z][a-zA-Z]*(?:['-][A-Za-z]+)*)*")
_SENTENCE_START = re.compile(r"(?:^\s*|[.!?:;\n]\s*|\d\)\s*|^\s*[-*]\s*|[\"(]\s*)$")
_STOPWORDS = set(
    "ac dc a an the i i'm i've i'd you we they he she it it's its this that these those there here yes no not "  # noqa: SIM905
    "in on at of for to from by with about after before during between into over under since until while when "
    "where which who whom whose what why how if then than so but and or nor as also only just each every all any "
    "both either neither some many most more much few several other another such our your their his her my me us "
    "them please note first second next finally however therefore thus unfortunately sorry according based per "
    "via".split()
)
"""Capitalised words that open sentences or phrases without naming anything."""
_NOT_COUNTED = set(
    "a an the of and or to in on at by for from with per than as is are was were be it its this that which who "  # noqa: SIM905
    "more less about up over under after before between until within each every".split()
)
"""Words after a number that say nothing about what it counts."""


# -- extraction ------------------------------------------------------------------------------------------------------


def extract_facts(text: str, question: str | None = None) -> list[Fact]:
    """The checkable facts of `text`, in order, without duplicates; those `question` already states are left out
    (repeating them proves nothing). A digit inside a date, time, version or code is not a separate number."""
    text = clean(text)
    taken: list[tuple[int, int]] = []
    found: list[Fact] = []

    def add(match: re.Match, fact: Fact) -> None:
        taken.append(match.span())
        found.append(fact)

    def free(match: re.Match) -> bool:
        return all(match.end() <= start or match.start() >= end for start, end in taken)

    for m in _LINK.finditer(text):
        address = re.sub(r"^(?:https?://)?(?:www\.)?", "", m.group(0).lower()).rstrip("/")
        add(m, Fact(m.group(0), "link", "link:" + address, m.span()))
    for pattern in _DATES:
        for m in pattern.finditer(text):
            if free(m):
                add(m, Fact(m.group(0), "date", "date:" + _date_key(m), m.span()))
    for m in _TIME.finditer(text):
        if free(m):
            hour, half = int(m.group("h")), (m.group("ampm") or "").lower()
            hour = hour % 12 + 12 * (half == "p") if half else hour
            add(m, Fact(m.group(0), "time", f"time:{hour}:{m.group('m')}", m.span()))
    for m in _VERSION.finditer(text):
        if free(m):
            add(m, Fact(m.group(0), "version", "version:" + m.group(0).lstrip("v"), m.span()))
    for m in _CODE.finditer(text):
        if free(m):
            add(m, Fact(m.group(0), "code", "code:" + re.sub(r"[-\s]", "", m.group(0).upper()), m.span()))
    numbers = [m for m in _NUMBER.finditer(text) if free(m)]
    units = [_unit_of(m) for m in numbers]
    for i in range(len(numbers) - 2, -1, -1):  # "100-240 V", "2 to 40 litres": the range shares its unit
        between = text[numbers[i].end() : numbers[i + 1].start()]
        shared = units[i + 1] is not None and not numbers[i + 1].group("sign")  # "3 × €420": the sign is the 420's
        if units[i] is None and shared and _RANGE_JOIN.fullmatch(between):
            units[i] = units[i + 1]
    for m, unit in zip(numbers, units):
        value = _number(m.group("num"), m.group("mult"))
        key = f"num:{value} {unit}" if unit else f"num:{value}"
        add(m, Fact(m.group(0).strip(), "number", key, m.span("num"), None if unit else _counted(text, m.end())))
    masked = text
    for start, end in taken:  # names never run into a code, date or number
        masked = masked[:start] + "\0" * (end - start) + masked[end:]
    short = len(text.split()) <= SHORT_WORDS
    for m in _NAME.finditer(masked):
        name = _name(masked, m, question, short)
        if name:
            found.append(Fact(name, "name", "name:" + words_of(name), m.span()))
    facts = list({fact.key: fact for fact in sorted(found, key=lambda f: f.span[0])}.values())
    if question is None:
        return facts
    in_question = Coverage.of(question)
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
    digits = _NUMBER_WORDS.get(digits.lower(), digits)
    value = Decimal(digits.replace(",", "")) * _MULTIPLIERS.get(multiplier or "", 1)
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def _counted(text: str, end: int) -> str | None:
    """The noun right after a number, singular and lower case ("16 zones" -> zone), unless it is a function word."""
    m = _COUNTED.match(text, end)
    word = m.group("word").lower() if m else ""
    if not word or word in _NOT_COUNTED:
        return None
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def _name(text: str, m: re.Match, question: str | None, short: bool = False) -> str | None:
    """A capitalised run minus leading common words; a lone word that opens a sentence counts only when it is also
    capitalised mid-sentence in the text or the question, since "Customer support ..." is no name, or when it is
    a short answer's word that no lower-case word follows ("Portuguese.", "Porto, 1961."): it is the answer."""
    words = m.group(0).split()
    at_start = bool(_SENTENCE_START.search(text[: m.start()]))
    while words and (words[0].lower().removesuffix("'s") in _STOPWORDS or words[0] in _MONTHS):
        words, at_start = words[1:], False
    words = [w.removesuffix("'s") for w in words]
    if not words or (len(words) == 1 and (len(words[0]) < 2 or words[0].lower() in _STOPWORDS)):
        return None
    answer_itself = short and not re.match(r"\s*[a-z]", text[m.end() :])  # "Porto.", not "Released in 2024."
    if at_start and len(words) == 1 and not answer_itself:
        mid_sentence = rf"(?<![.!?:;\n]\s)(?<!^)\b{re.escape(words[0])}\b"
        if not any(re.search(mid_sentence, t.strip()) for t in (text[m.end() :], question or "")):
            return None
    return " ".join(words)


def words_of(text: str) -> str:
    """Lower-case words only, possessives dropped: the form names are compared in."""
    return " ".join(re.findall(r"[^\W_]+", re.sub(r"'s\b", "", clean(text).lower())))


# -- comparison ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """What a text states: fact keys, bare number values (a date gives its year), units, and its words."""

    keys: set[str]
    values: set[str]
    units: set[str]
    words: str

    @classmethod
    def of(cls, text: str) -> Coverage:
        facts = extract_facts(text)
        numbers = [f.key.removeprefix("num:").split(" ") for f in facts if f.kind == "number"]
        years = {f.key[5:9] for f in facts if f.kind == "date"}
        return cls(
            {f.key for f in facts},
            {n[0] for n in numbers} | years,
            {n[1] for n in numbers if len(n) > 1},
            f" {words_of(text)} ",
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


def facts_agree(claimed: Fact, found: Fact) -> bool:
    """Whether an evidence fact confirms a claimed one: the same value (a month agrees with a day in it), and for
    numbers a compatible unit or counted word."""
    if claimed.kind == found.kind == "date":
        return found.value.startswith(claimed.value) or claimed.value.startswith(found.value)
    if claimed.kind != found.kind or claimed.value != found.value:
        return False
    return claimed.unit is None or found.unit is None or claimed.unit == found.unit


def contradicts(claimed: Fact, found: Fact) -> bool:
    """Whether an evidence fact gives the same kind of quantity another value ("45-day" against "30-day")."""
    if claimed.kind != found.kind or claimed.kind in ("name", "code", "version", "link") or facts_agree(claimed, found):
        return False
    if claimed.kind in ("date", "time"):
        return True
    return claimed.unit is not None and claimed.unit == found.unit


def name_in(name: str, text: str) -> bool:
    """Whether a name or code occurs in a text as whole words, ignoring case."""
    return re.search(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", text, re.IGNORECASE) is not None
