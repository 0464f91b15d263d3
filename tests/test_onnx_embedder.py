"""Queries embedded by ONNX Runtime: the same vectors and the same search results as the sentence-transformers
model, an export made once per weights and reused, and a clear error when the runtime is asked for but missing."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.test_embedding import EMBEDDER, TEXTS
from workbench.config import Config
from workbench.models import ModelNotAvailable, load_embedder
from workbench.records import read_split
from workbench.retrieval import onnx_embedder as onnx
from workbench.retrieval.embedding import embed, query_embedder
from workbench.retrieval.index import Retriever
from workbench.workspace import run_paths


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty cache folder and no export remembered by this process."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    onnx.onnx_embedder.cache_clear()
    yield tmp_path / "cache" / "onnx"
    onnx.onnx_embedder.cache_clear()


def test_onnx_vectors_match_the_model_in_any_batch():
    reference = embed(load_embedder(EMBEDDER, "cpu"), TEXTS, batch_size=4)
    runtime = onnx.onnx_embedder(EMBEDDER)
    for batch_size in (1, 3, len(TEXTS)):  # padding within a batch does not move a row
        vectors = embed(runtime, TEXTS, batch_size=batch_size)
        assert vectors.shape == reference.shape and vectors.dtype == np.float32
        assert (vectors * reference).sum(axis=1).min() > 0.9999
    assert embed(runtime, []).shape == (0, reference.shape[1])


def test_searches_rank_the_same_chunks_with_either_runtime(demo_index):
    home = demo_index[0]
    questions = [e.question for s in ("val", "test") for e in read_split(run_paths("demo", home).split(s))]
    by_runtime = {}
    for runtime in ("torch", "onnx"):
        config = Config.model_validate({"model": {"embedder_runtime": runtime}})
        retriever = Retriever.load("demo", config, home)
        by_runtime[runtime] = [[hit.chunk.id for hit in hits] for hits in retriever.search_many(questions, 5)]
        assert isinstance(retriever.embedder, onnx.OnnxEmbedder) == (runtime == "onnx")
    assert by_runtime["onnx"] == by_runtime["torch"]
    # searches of several sessions at once share the embedder (its tokenizer is locked)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda q: [hit.chunk.id for hit in retriever.search(q, 5)], questions))
    assert found == by_runtime["onnx"]


def test_the_export_is_made_once_per_weights_and_reused(own_cache, monkeypatch):
    first = onnx.onnx_embedder(EMBEDDER)
    exports = list(own_cache.iterdir())
    assert [path.name for path in exports] == [first.path.parent.name]  # no staging folder left behind
    onnx.onnx_embedder.cache_clear()  # a new process: the export on disk is found, not made again

    def no_export(*_):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx, "_export", no_export)
    again = onnx.onnx_embedder(EMBEDDER)
    assert again.path == first.path
    np.testing.assert_allclose(again.encode(TEXTS[:2]), first.encode(TEXTS[:2]), atol=1e-6)


def test_other_weights_get_their_own_export():
    model = load_embedder(EMBEDDER, "cpu")
    changed = SentenceTransformer(modules=[module for module in model])
    key = onnx._export_key(model)
    assert onnx._export_key(changed) == key  # the same weights and modules, however loaded
    first = next(iter(changed.parameters()))
    original = first.data.clone()
    try:
        first.data[0, 0] += 1e-3
        assert onnx._export_key(changed) != key
    finally:
        first.data.copy_(original)


def test_an_interrupted_export_leaves_nothing_that_loads(own_cache, monkeypatch):
    def crash(*_, **__):
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(onnx.torch.onnx, "export", crash)
    with pytest.raises(RuntimeError, match="killed"):
        onnx.onnx_embedder(EMBEDDER)
    assert not list(own_cache.iterdir())  # the staging folder is gone and no export is cached


def test_runtime_choice_and_a_clear_error_without_onnxruntime(monkeypatch):
    assert isinstance(query_embedder(EMBEDDER, "cpu", "torch"), SentenceTransformer)
    assert isinstance(query_embedder(EMBEDDER, "cpu", "auto"), onnx.OnnxEmbedder)
    monkeypatch.setattr("workbench.retrieval.embedding.onnx_available", lambda: False)
    monkeypatch.setattr(onnx, "onnx_available", lambda: False)
    onnx.onnx_embedder.cache_clear()
    try:
        assert isinstance(query_embedder(EMBEDDER, "cpu", "auto"), SentenceTransformer)  # auto falls back
        with pytest.raises(ModelNotAvailable, match="embedder_runtime is onnx but onnxruntime is not installed"):
            query_embedder(EMBEDDER, "cpu", "onnx")
    finally:
        onnx.onnx_embedder.cache_clear()
