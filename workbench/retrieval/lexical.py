"""BM25 over chunk texts and reciprocal rank fusion with dense results, for the optional hybrid search.

Lexical matching catches what a small embedder blurs: part numbers, error codes, product names.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_TOKEN = re.compile(r"[\w.-]*\w", re.UNICODE)


def lexical_tokens(text: str) -> list[str]:
    """Lower-case word tokens; dots and hyphens inside a token are kept so `MH-1` and `2.4` stay whole."""
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 (k1, b) over a fixed list of texts; scores are computed from a sparse inverted index."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        docs = [Counter(lexical_tokens(t)) for t in texts]
        lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
        average = lengths.mean() if len(docs) else 1.0
        self.size = len(docs)
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for row, counts in enumerate(docs):
            norm = k1 * (1 - b + b * lengths[row] / max(average, 1e-9))
            for term, tf in counts.items():
                self.postings.setdefault(term, []).append((row, tf * (k1 + 1) / (tf + norm)))
        self.idf = {
            term: math.log(1 + (self.size - len(rows) + 0.5) / (len(rows) + 0.5))
            for term, rows in self.postings.items()
        }

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, score) of the k best-scoring texts, best first; texts sharing no term are left out."""
        scores: Counter = Counter()
        for term in set(lexical_tokens(query)):
            for row, weight in self.postings.get(term, ()):
                scores[row] += self.idf[term] * weight
        return scores.most_common(k)


def reciprocal_rank_fusion(rankings: list[list[int]], k: int) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids: each rank r (1-based) adds 1 / (k + r); best fused score first."""
    fused: Counter = Counter()
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] += 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
