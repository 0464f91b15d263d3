"""Exact and near-duplicate detection.

Near duplicates are found with MinHash LSH over word shingles (fast, scales to large corpora) and then confirmed
with the exact Jaccard similarity, so the configured threshold means exactly what it says for every reported pair.
The same Jaccard over character n-grams groups similar questions, which are short.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")
_NUM_PERM = 128


def normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def content_hash(text: str) -> str:
    """Hash of the normalised text: documents differing only in case, punctuation or spacing share it."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def word_shingles(text: str, size: int) -> set[str]:
    words = normalise(text).split()
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def char_ngrams(text: str, size: int = 4) -> set[str]:
    padded = f" {normalise(text)} "
    if len(padded) <= size:
        return {padded}
    return {padded[i : i + size] for i in range(len(padded) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def exact_duplicates(texts: Sequence[str]) -> dict[int, int]:
    """Map each duplicate's index to the index of the first text with the same normalised content."""
    first: dict[str, int] = {}
    dupes: dict[int, int] = {}
    for index, text in enumerate(texts):
        key = content_hash(text)
        if key in first:
            dupes[index] = first[key]
        else:
            first[key] = index
    return dupes


def similar_pairs(shingle_sets: Sequence[set[str]], threshold: float) -> list[tuple[int, int, float]]:
    """All pairs (i < j) whose exact Jaccard is >= threshold; LSH proposes candidates, Jaccard decides.

    LSH runs with a lower threshold than asked so that pairs right at the threshold are still proposed.
    """
    lsh = MinHashLSH(threshold=max(0.05, threshold * 0.75), num_perm=_NUM_PERM)
    pairs: set[tuple[int, int]] = set()
    for index, shingles in enumerate(shingle_sets):
        signature = MinHash(num_perm=_NUM_PERM, seed=1)
        signature.update_batch([s.encode("utf-8") for s in shingles])
        for other in lsh.query(signature):
            pairs.add((other, index))
        lsh.insert(index, signature)
    found = []
    for i, j in sorted(pairs):
        score = jaccard(shingle_sets[i], shingle_sets[j])
        if score >= threshold:
            found.append((i, j, score))
    return found


def near_duplicates(texts: Sequence[str], threshold: float, shingle_size: int) -> dict[int, tuple[int, float]]:
    """Map each near-duplicate's index to (index of the earlier text it repeats, Jaccard similarity)."""
    shingles = [word_shingles(text, shingle_size) for text in texts]
    dupes: dict[int, tuple[int, float]] = {}
    for i, j, score in similar_pairs(shingles, threshold):
        if i not in dupes and j not in dupes:
            dupes[j] = (i, score)
    return dupes
