"""Split documents into retrieval chunks that respect sections, paragraphs and sentences and fit the embedder.

A chunk is a span of the original text (never rewritten), so offsets point back into the document. Chunks stay
inside one section, hold whole paragraphs where they fit, else whole sentences, else whitespace-separated pieces;
consecutive chunks of a section share a few trailing sentences so a fact at a border is found from either side.
Every size check counts the exact span that becomes a chunk, so a tokenizer that is not quite additive still
never yields a chunk over the limit.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence

from workbench.records import Chunk, Document

Span = tuple[int, int]

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*\S)", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_WORD = re.compile(r"\S+")


def chunk_document(doc: Document, count_tokens: Callable[[str], int], size: int, overlap: int) -> list[Chunk]:
    """The document's chunks in order, each at most `size` tokens, opening with <= `overlap` tokens of the one before.

    `count_tokens` should be roughly monotone (a span never counts more than a span containing it).
    """
    spans = [
        (span, path)
        for start, body, end, path in _sections(doc.text)
        for span in _pack_section(doc.text, start, body, end, count_tokens, size, overlap)
    ]
    chunks = []
    for n, ((start, end), path) in enumerate(spans):
        text = doc.text[start:end]
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        chunks.append(Chunk(f"{doc.id}:{n}:{digest}", doc.id, doc.title, path, text, start, end))
    return chunks


def embedding_text(chunk: Chunk) -> str:
    """What gets embedded: "title > heading > ..." on the first line, then the chunk text.

    Context words help short chunks match questions that name the product or topic but not the chunk's words.
    """
    context = " > ".join(p for p in [chunk.title, *(h for h in chunk.headings if h != chunk.title)] if p)
    return f"{context}\n{chunk.text}" if context else chunk.text


def token_counter(tokenizer) -> Callable[[str], int]:
    """Token count under a Hugging Face tokenizer, without special tokens (the limit is on the text itself)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _sections(text: str) -> list[tuple[int, int, int, list[str]]]:
    """(start, body start, end, heading path) per section: text before the first heading, then one per heading.

    A level-n heading keeps the first n-1 entries of the path and replaces the rest.
    """
    found = []
    start, body, path = 0, 0, []
    for heading in _HEADING.finditer(text):
        found.append((start, body, heading.start(), path))
        path = [*path[: len(heading.group(1)) - 1], heading.group(2)]
        start, body = heading.span()
    found.append((start, body, len(text), path))
    return found


def _pack_section(
    text: str, start: int, body: int, end: int, count_tokens: Callable[[str], int], size: int, overlap: int
) -> list[Span]:
    """Chunk spans of one section: whole paragraphs while they fit, else their sentences one by one.

    The heading line joins the first paragraph so it lands in the first chunk. A new chunk opens with the last
    chunk's trailing units worth at most `overlap` tokens; a paragraph that does not fit whole after them is
    packed unit by unit instead, so the overlap gives way only to a single unit that cannot fit beside it.
    """
    paragraphs = _spans(text, body, end, _PARAGRAPH_BREAK)
    if body > start:
        paragraphs = [(start, paragraphs[0][1]), *paragraphs[1:]] if paragraphs else [(start, body)]

    def fits(units: list[Span]) -> bool:
        return count_tokens(text[units[0][0] : units[-1][1]]) <= size

    def carried(units: list[Span], then: Span | None = None) -> list[Span]:
        """Trailing `units` worth at most `overlap` tokens (and leaving room for `then`), as many as possible."""
        first = len(units)
        while first > 0 and count_tokens(text[units[first - 1][0] : units[-1][1]]) <= overlap:
            if then is not None and count_tokens(text[units[first - 1][0] : then[1]]) > size:
                break
            first -= 1
        return units[first:]

    done: list[Span] = []
    current: list[Span] = []
    for paragraph in paragraphs:
        units = _units(text, *paragraph, count_tokens, size)
        if fits(current + units):
            current += units
            continue
        if current:
            opening = carried(current) + units
            if fits(opening):
                done.append((current[0][0], current[-1][1]))
                current = opening
                continue
        for unit in units:
            if current and not fits([*current, unit]):
                done.append((current[0][0], current[-1][1]))
                current = carried(current, unit)
            current.append(unit)
    if current:
        done.append((current[0][0], current[-1][1]))
    return done


def _units(text: str, start: int, end: int, count_tokens: Callable[[str], int], size: int) -> list[Span]:
    """Sentences (or lines) of a paragraph, those over `size` tokens split at whitespace into pieces that fit.

    A single word over `size` tokens (a long URL or code) is the one thing cut between characters, because an
    over-long chunk would be silently truncated by the embedder.
    """
    units = []
    for sentence in _spans(text, start, end, _SENTENCE_BREAK):
        if count_tokens(text[slice(*sentence)]) <= size:
            units.append(sentence)
            continue
        words = [m.span() for m in _WORD.finditer(text, *sentence)]
        ends = [word_end for _, word_end in words]
        first, i = sentence[0], 0
        while i < len(words):
            first = max(first, words[i][0])
            fit = _fit_end(text, first, ends, i, count_tokens, size)
            if fit > i:
                units.append((first, ends[fit - 1]))
                i = fit
                continue
            chars = range(first + 1, ends[i])
            fit = _fit_end(text, first, chars, 0, count_tokens, size)
            cut = chars[fit - 1] if fit else first + 1
            units.append((first, cut))
            first = cut
            if cut == ends[i]:
                i += 1
    return units


def _fit_end(text: str, start: int, ends: Sequence[int], lo: int, count_tokens: Callable[[str], int], size: int) -> int:
    """Index just past the last of `ends[lo:]` for which `text[start:end]` stays within `size` tokens (`lo` if none).

    Probes lo, lo+1, lo+3, lo+7, ... before bisecting, so the cost follows the piece found, not the whole run: a
    sentence or a word can be far longer than a chunk.
    """

    def tokens(k: int) -> int:
        return count_tokens(text[start : ends[k]])

    step = 1
    while lo + step <= len(ends) and tokens(lo + step - 1) <= size:
        step *= 2
    low = lo + step // 2
    return low + bisect_right(range(low, min(lo + step - 1, len(ends))), size, key=tokens)


def _spans(text: str, start: int, end: int, separator: re.Pattern) -> list[Span]:
    """Non-empty spans of `text[start:end]` between matches of `separator`, trimmed of surrounding whitespace."""
    cuts = [start]
    for match in separator.finditer(text, start, end):
        cuts += match.span()
    cuts.append(end)
    spans = []
    for a, b in zip(cuts[::2], cuts[1::2]):
        piece = text[a:b]
        a, b = a + len(piece) - len(piece.lstrip()), b - len(piece) + len(piece.rstrip())
        if a < b:
            spans.append((a, b))
    return spans
