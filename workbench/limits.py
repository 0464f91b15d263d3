"""Bounds on what one input row, question or request may hold, so that bad input ends in a clear error rather than
a crash or a runaway allocation. The sizes are config (`limits`); this module holds the checks every reader shares.

JSON is the case that needs care: Python's parser recurses once per nesting level, so a row nested a few thousand
deep raises RecursionError from inside `json.loads`. `parse_json` turns that, and any decoding problem, into a
`JSONInputError` (a ValueError, so readers' existing handling of bad rows applies) and bounds the depth it accepts.
"""

from __future__ import annotations

import json

JSON_DEPTH = 64
"""Deepest nesting a JSON input may have (the `limits.json_depth` default); real rows and requests need a handful."""


class JSONInputError(ValueError):
    """A JSON text that cannot be used: malformed, not UTF-8, or nested deeper than allowed."""


def parse_json(text: str | bytes, max_depth: int = JSON_DEPTH) -> object:
    """`json.loads`, with every failure a `JSONInputError` whose message says what is wrong."""
    try:
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)  # no UTF-16/32 guessing
    except RecursionError:
        raise JSONInputError(f"JSON nested too deeply (more than {max_depth} levels)") from None
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise JSONInputError("not valid JSON: a number has too many digits") from None
    if depth(value) > max_depth:
        raise JSONInputError(f"JSON nested too deeply (more than {max_depth} levels)")
    return value


def depth(value: object) -> int:
    """Nesting depth of parsed JSON: a scalar is 0, `[]` and `{}` are 1. Iterative, so any parsed value is safe."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
