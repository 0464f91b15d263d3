"""PII redaction with typed placeholders (`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[NATIONAL_ID]`), counted by kind.

Numbers are checked before they are redacted: card numbers must pass the Luhn check and IBANs the ISO 7064
mod-97 check, so order numbers, serials and part numbers that merely look similar stay in the text.
Kinds run in a fixed order (most specific first) so that one span is never counted twice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from workbench.config import PII_KINDS

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_NINO = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")  # liberal: a missed ID leaks, a false hit only hides
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"  # +44 20 7946 0958, +1-555-010-2368
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"  # (555) 010-2368
    r"|0\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4}"  # 0161 496 0311, 020 7946 0958
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-010-2368
    r")(?![\w])(?![ .-]\d)"
)


def luhn_valid(number: str) -> bool:
    digits = [int(ch) for ch in number if ch.isdigit()]
    if len(digits) < 13:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _digit_count_ok(match: str) -> bool:
    return 9 <= sum(ch.isdigit() for ch in match) <= 15


def _always(_: str) -> bool:
    return True


_RULES: list[tuple[str, re.Pattern, Callable[[str], bool]]] = [
    ("email", _EMAIL, _always),
    ("iban", _IBAN, iban_valid),
    ("card", _CARD, luhn_valid),
    ("national_id", _SSN, _always),
    ("national_id", _NINO, _always),
    ("phone", _PHONE, _digit_count_ok),
]


def redact(text: str, kinds: list[str] | tuple[str, ...] = PII_KINDS) -> tuple[str, Counter]:
    """Replace PII of the given kinds with placeholders; returns the text and counts by kind."""
    counts: Counter[str] = Counter()
    for kind, pattern, is_valid in _RULES:
        if kind not in kinds:
            continue

        def substitute(match: re.Match, kind=kind, is_valid=is_valid) -> str:
            if not is_valid(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return f"[{kind.upper()}]"

        text = pattern.sub(substitute, text)
    return text, counts
