"""Claims and checkable facts: what a hallucination detector looks at in an answer.

An answer is split into sentences, and a sentence into clauses joined by ";" or "and" when each clause carries its own
checkable fact, so one wrong figure flags its own clause rather than a whole paragraph. Checkable facts are the
things small models get wrong while sounding right: numbers (with their unit), money, percentages, dates, names and
product codes. They are normalised, so "1,200" equals "1200", "30-day" equals "30 days" and "14 March 2011" equals
"2011-03-14", and compared as values, so the same subject with a different number can be told from a missing fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun")]
        + [("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct")]
        + [("november", "nov"), ("december", "dec")],
        start=1,
    )
    for name in names
}
NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "  # noqa: SIM905
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "hundred": 100}
CURRENCIES = {"€": "eur", "$": "usd", "£": "gbp", "eur": "eur", "euro": "eur", "euros": "eur", "usd": "usd"}
NOT_UNITS = set(
    "a an the of and or to in on at by for from with per than as is are was were be "  # noqa: SIM905
    "it its this that which who more less about up over under after before between until within each every".split()
)
"""Words after a number that say nothing about what it counts, so they are not taken as its unit."""
NOT_NAMES = set(
    "a an the this that these those it its if in on at by for from with when while where "  # noqa: SIM905
    "what which who how yes no not and or but so also only both each every all any some our your their we you "
    "they he she i there here then "
    "after before during since until once however please note to of as is are was".split()
)
"""Capitalised words that start sentences without naming anything."""
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9€$£])|\n+")
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|etc|approx|incl|no|vs|dr|mr|mrs|ms|st|fig|cf)\.$", re.IGNORECASE)
_CLAUSE_JOIN = re.compile(r"\s*;\s*|,?\s+(?:and|while|whereas|but)\s+", re.IGNORECASE)
_DATE = re.compile(
    r"\b(?:(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?P<month>[A-Za-z]{3,9})\.?,?\s+(?P<year>\d{4})"
    r"|(?P<month2>[A-Za-z]{3,9})\.?\s+(?P<day2>\d{1,2})(?:st|nd|rd|th)?,\s*(?P<year2>\d{4})"
    r"|(?P<iso>\d{4}-\d{2}-\d{2})"
    r"|(?P<month3>[A-Za-z]{3,9})\s+(?P<year3>\d{4}))\b"
)
_CODE = re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*\b|\b[A-Z]{2,}-[A-Z0-9-]+\b")
_NUMBER = re.compile(
    r"(?P<cur>[€$£])?\s?(?<![\w.])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)(?![\w])"
    r"(?:(?:\s?-\s?|\s)?(?P<unit>%|per ?cent\b|[A-Za-z°µ]+(?:-[A-Za-z]+)?))?"
)
_NUMBER_WORD = re.compile(r"\b(?P<num>" + "|".join(NUMBER_WORDS) + r")(?:[\s-](?P<unit>[A-Za-z]+))?\b", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[’']s)?(?:\s+[A-Z][a-z]+(?:[’']s)?)*\b")


@dataclass(frozen=True)
class Fact:
    """A checkable fact: `kind` is number, money, percent, date, code or name; `value` is its normal form.

    A number's `unit` is the word it counts (singular, lower case), so "30-day window" and "30 days" agree and a
    "45-day window" in the evidence contradicts a claimed "30-day window". `span` locates the fact's own characters
    (for a number, its digits) in the text it was found in.
    """

    kind: str
    value: str
    text: str
    unit: str | None = None
    span: tuple[int, int] = field(default=(0, 0), compare=False)


def split_claims(answer: str) -> list[str]:
    """The answer's claims: its sentences, each split further at ";" / "and" where every part states a fact."""
    claims = []
    for sentence in split_sentences(answer):
        claims.extend(_split_clauses(sentence))
    return claims


def split_sentences(text: str) -> list[str]:
    """Sentences and list items; a full stop after an abbreviation or inside a number does not end a sentence."""
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", text, flags=re.MULTILINE)  # list markers
    pieces, current = [], ""
    last = 0
    for match in _SENTENCE_END.finditer(text):
        current += text[last : match.start()]
        last = match.end()
        if _ABBREVIATIONS.search(current):
            current += " "
            continue
        pieces.append(current)
        current = ""
    pieces.append(current + text[last:])
    return [" ".join(p.split()) for p in pieces if re.search(r"\w", p)]


def _split_clauses(sentence: str) -> list[str]:
    """Split at a joint only when both sides keep a fact of their own and a few words, else keep them together."""
    clauses, start = [], 0
    for joint in _CLAUSE_JOIN.finditer(sentence):
        left, right = sentence[start : joint.start()], sentence[joint.end() :]
        following = _CLAUSE_JOIN.split(right, maxsplit=1)[0]
        if _states_fact(left) and _states_fact(following):
            clauses.append(left)
            start = joint.end()
    clauses.append(sentence[start:])
    return [c.strip() if c.rstrip().endswith((".", "!", "?")) else c.strip() + "." for c in clauses]


def _states_fact(clause: str) -> bool:
    return len(clause.split()) >= 4 and bool(extract_facts(clause))


def extract_facts(text: str) -> list[Fact]:
    """Every checkable fact in a text, normalised; a digit inside a date or product code is not a separate number."""
    facts: list[Fact] = []
    taken = [False] * len(text)

    def free(start: int, end: int) -> bool:
        return not any(taken[start:end])

    def take(start: int, end: int) -> None:
        taken[start:end] = [True] * (end - start)

    for match in _DATE.finditer(text):
        value = _date_value(match)
        if value:
            facts.append(Fact("date", value, match.group(), span=match.span()))
            take(*match.span())
    for match in _CODE.finditer(text):
        if free(*match.span()) and not match.group().isdigit():
            facts.append(Fact("code", match.group().lower(), match.group(), span=match.span()))
            take(*match.span())
    for match in _NUMBER.finditer(text):
        start = match.start("num")
        if not free(start, match.end("num")):
            continue
        facts.append(_number_fact(match.group("num"), match.group("unit"), match.group("cur"), match.span("num")))
        take(start, match.end("num"))
    for match in _NUMBER_WORD.finditer(text):
        if free(*match.span()):
            value = NUMBER_WORDS[match.group("num").lower()]
            facts.append(_number_fact(str(value), match.group("unit"), None, match.span("num")))
            take(*match.span())
    for match in _NAME.finditer(text):
        if not free(*match.span()):
            continue
        words = [re.sub(r"[’']s$", "", w) for w in match.group().split()]
        while words and (words[0].lower() in NOT_NAMES or words[0].lower() in MONTHS):
            words.pop(0)
        at_start = not text[: match.start()].strip() or text[: match.start()].rstrip()[-1] in ".!?:"
        if len(words) == 1 and at_start and match.group().split()[0] == words[0]:
            continue  # one capitalised word opening a sentence is usually an ordinary word
        if words:
            facts.append(Fact("name", " ".join(words).lower(), " ".join(words), span=match.span()))
    return facts


def _number_fact(number: str, unit: str | None, currency: str | None, span: tuple[int, int]) -> Fact:
    value = _normal_number(number)
    unit = (unit or "").lower()
    if currency or unit in CURRENCIES:
        return Fact("money", value, number, CURRENCIES[currency or unit], span)
    if unit in ("%", "percent", "per cent", "percentage"):
        return Fact("percent", value, number, "%", span)
    unit = unit.split("-")[0]
    if not unit or unit in NOT_UNITS:
        return Fact("number", value, number, None, span)
    return Fact("number", value, number, _singular(unit), span)


def _normal_number(number: str) -> str:
    """'1,200' -> '1200', '2.50' -> '2.5'; version strings such as '4.5.0' stay as they are."""
    number = number.replace(",", "")
    if number.count(".") > 1:
        return number
    value = float(number)
    return str(int(value)) if value.is_integer() else repr(value)


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _date_value(match: re.Match) -> str | None:
    if match.group("iso"):
        return match.group("iso")
    day, month, year = (
        (match.group("day"), match.group("month"), match.group("year"))
        if match.group("month")
        else (match.group("day2"), match.group("month2"), match.group("year2"))
        if match.group("month2")
        else (None, match.group("month3"), match.group("year3"))
    )
    month_number = MONTHS.get(month.lower())
    if month_number is None:
        return None
    return f"{year}-{month_number:02d}" + (f"-{int(day):02d}" if day else "")


def facts_agree(claimed: Fact, found: Fact) -> bool:
    """Whether an evidence fact confirms a claimed one: the same value, and for numbers a compatible unit."""
    if claimed.kind == "date" and found.kind == "date":
        return found.value.startswith(claimed.value) or claimed.value.startswith(found.value)
    if claimed.kind != found.kind or claimed.value != found.value:
        return False
    return claimed.unit is None or found.unit is None or claimed.unit == found.unit


def contradicts(claimed: Fact, found: Fact) -> bool:
    """Whether an evidence fact states the same kind of quantity with another value ("45-day" against "30-day")."""
    if claimed.kind != found.kind or claimed.kind in ("name", "code") or facts_agree(claimed, found):
        return False
    if claimed.kind == "date":
        return True
    return claimed.unit is not None and claimed.unit == found.unit


def name_in(name: str, text: str) -> bool:
    """Whether a name or code occurs in a text as whole words, ignoring case."""
    return re.search(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", text, re.IGNORECASE) is not None
