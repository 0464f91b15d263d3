"""Reference-based answer metrics shared by the fine-tuning benchmark and the judges.

Token F1 follows the SQuAD convention: lower-case, drop punctuation and articles, compare bags of tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> list[str]:
    """Answer tokens as compared: lower-case, without punctuation or articles."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def content_words(text: str) -> set[str]:
    """The words that carry a text's content: the compared tokens less scikit-learn's English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # only where content words are needed

    return {w for w in normalize(text) if w not in ENGLISH_STOP_WORDS}


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall; 1.0 when both are empty."""
    predicted, expected = normalize(prediction), normalize(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)
