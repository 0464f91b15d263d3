"""FAISS indexes over normalised embeddings: exact inner product for small corpora, HNSW for large ones.

Every index maps FAISS rows to our int64 chunk keys (`IndexIDMap2`), so a search returns chunk keys directly and
vectors can be read back by key when an update rebuilds the index.
"""

from __future__ import annotations

import faiss
import numpy as np

from workbench.config import IndexConfig


def index_kind(count: int, settings: IndexConfig) -> str:
    """`flat` or `hnsw` for an index of `count` vectors under the configured choice."""
    if settings.index_type != "auto":
        return settings.index_type
    return "hnsw" if count > settings.hnsw_above else "flat"


def build_vector_index(vectors: np.ndarray, keys: np.ndarray, settings: IndexConfig) -> faiss.Index:
    """An index over `vectors` (rows normalised, float32) answering with `keys` (int64)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    if index_kind(len(vectors), settings) == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = settings.hnsw_ef_construction
        inner.hnsw.efSearch = settings.hnsw_ef_search
    else:
        inner = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, np.asarray(keys, dtype=np.int64))
    return index


def configure_search(index: faiss.Index, settings: IndexConfig) -> None:
    """Apply search-time settings (HNSW's candidate list) to a loaded index."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = settings.hnsw_ef_search


def search_vectors(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, keys) of the k nearest vectors per query row; missing results have key -1."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def vectors_for(index: faiss.Index, keys: list[int]) -> np.ndarray:
    """The stored vectors of the given keys, in that order."""
    if not keys:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.stack([index.reconstruct(int(key)) for key in keys])
