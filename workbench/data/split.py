"""Leak-free train/val/test splits.

Items are grouped so that near-duplicate questions (a pair's paraphrases included) always land in the same split;
groups are then assigned, in a seeded order, to the split furthest below its target share within the item's
type, which keeps every question type represented in every split. `leakage` checks the result independently.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from workbench.data.dedup import char_ngrams, similar_pairs

SPLITS = ("train", "val", "test")


def group_similar(texts_per_item: Sequence[Sequence[str]], threshold: float) -> list[int]:
    """Group id per item: items share a group when any of their texts are >= threshold similar (transitively)."""
    owners, grams = [], []
    for item, texts in enumerate(texts_per_item):
        for text in texts:
            owners.append(item)
            grams.append(char_ngrams(text))
    parent = list(range(len(texts_per_item)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in similar_pairs(grams, threshold):
        a, b = find(owners[i]), find(owners[j])
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = [find(item) for item in range(len(texts_per_item))]
    renumber = {root: n for n, root in enumerate(dict.fromkeys(roots))}
    return [renumber[root] for root in roots]


def assign_splits(
    groups: Sequence[int], strata: Sequence[str | None], ratios: dict[str, float], seed: int
) -> list[str]:
    """Split name per item; whole groups move together, stratified by the stratum of each group's first item."""
    members: dict[int, list[int]] = defaultdict(list)
    for item, group in enumerate(groups):
        members[group].append(item)
    order = list(members)
    random.Random(seed).shuffle(order)
    assigned = {name: defaultdict(int) for name in SPLITS}
    seen: dict[str | None, int] = defaultdict(int)
    result: list[str] = [""] * len(groups)
    for group in order:
        items = members[group]
        stratum = strata[items[0]]
        seen[stratum] += len(items)
        # The split with the largest shortfall against its target share of this stratum so far.
        best = max(SPLITS, key=lambda name: ratios[name] * seen[stratum] - assigned[name][stratum])
        assigned[best][stratum] += len(items)
        for item in items:
            result[item] = best
    return result


def leakage(
    test_texts: Sequence[Sequence[str]], train_texts: Sequence[Sequence[str]], threshold: float
) -> list[tuple[int, int, float]]:
    """(test item, train item, similarity) for every test item with a text >= threshold similar to a train text."""
    owners, grams = [], []
    for side, items in ((0, test_texts), (1, train_texts)):
        for item, texts in enumerate(items):
            for text in texts:
                owners.append((side, item))
                grams.append(char_ngrams(text))
    best: dict[tuple[int, int], float] = {}
    for i, j, score in similar_pairs(grams, threshold):
        (side_i, item_i), (side_j, item_j) = owners[i], owners[j]
        if side_i == side_j:
            continue
        test_item, train_item = (item_i, item_j) if side_i == 0 else (item_j, item_i)
        best[(test_item, train_item)] = max(score, best.get((test_item, train_item), 0.0))
    return sorted((t, r, s) for (t, r), s in best.items())
