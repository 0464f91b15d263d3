"""Sentence embeddings for chunks and queries: batched, L2-normalised float32, so inner product is cosine."""

from __future__ import annotations

import numpy as np

from workbench.models import load_embedder, resolve
from workbench.workspace import file_sha256


def embed(model, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """One normalised row per text."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
    )
    return np.asarray(vectors, dtype=np.float32)


def embedder_identity(spec: str, device: str = "auto") -> dict:
    """What an index records about its embedder, so a mismatched one is caught at load time."""
    model = load_embedder(spec, device)
    weights = resolve(spec).weights_file
    return {
        "name": spec,
        "weights_sha256": file_sha256(weights) if weights is not None else None,
        "dimension": model.get_embedding_dimension(),
        "max_seq_length": model.max_seq_length,
    }
