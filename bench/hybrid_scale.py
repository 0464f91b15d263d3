"""Hybrid search at scale: the path users run (`Retriever.search`: query embedding, HNSW search, BM25, rank fusion,
chunk lookup), at 10k, 100k and 1M chunks, against dense-only search over the same index in the same run; the
BM25 half's build, save and load seconds (bm25s, saved with the index); recall@10 of the hybrid ranking against
the same hybrid search over exact (flat) vectors (each query text searched with a query vector drawn from the
chunks' distribution: see `SampledQueries`); and memory: the bytes of the vector index, of BM25's arrays and of
the chunk texts, and the process's peak resident memory so far.

Chunks are ~160 words of the demo corpus's sentences drawn at random (seeded), so BM25 sees the demo's vocabulary
and term statistics at scale. Their vectors are synthetic (bench/vector_scale.py's sampler: 384-d, clustered, a
power-law spectrum), since embedding 100k chunks takes about half an hour on 2 cores; the query is embedded by the
real embedder in the default runtime, as in the app (and by the PyTorch model, for comparison). Queries are the
demo's QA questions, one at a time, with one thread for FAISS (see vector_scale.py). Demo recall/MRR of hybrid
search against the gold documents is in `quality`.
Usage: python bench/hybrid_scale.py [SIZE ...]  (bench/retrieval.py records it under "retrieval" as "hybrid_scale")
"""

from __future__ import annotations

import json
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from vector_scale import CENTRES, DIMENSION, SPECTRUM_EXPONENT, _normalised, _sample

from workbench.config import Config, IndexConfig
from workbench.models import load_embedder
from workbench.records import Chunk
from workbench.retrieval.embedding import query_embedder
from workbench.retrieval.index import Retriever
from workbench.retrieval.lexical import BM25
from workbench.retrieval.vectors import build_vector_index

DEMO = Path(__file__).resolve().parent.parent / "demo"
CHUNK_WORDS = 160
QUERIES = 150
WARMUP = 10


def demo_sentences() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((DEMO / "corpus").glob("*.md")))
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) >= 4]


def synthetic_chunks(count: int, sentences: list[str], rng: random.Random) -> list[Chunk]:
    chunks = []
    for i in range(count):
        words: list[str] = []
        while len(words) < CHUNK_WORDS:
            words += rng.choice(sentences).split()
        text = " ".join(words)
        chunks.append(Chunk(f"c{i}", f"d{i // 5}", f"Document {i // 5}", [], text, 0, len(text)))
    return chunks


def timed(retriever: Retriever, queries: list[str]) -> np.ndarray:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for query in queries[:WARMUP]:
            retriever.search(query, 5)
        timings = []
        for query in queries:
            started = time.perf_counter()
            retriever.search(query, 5)
            timings.append(time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(threads)
    return np.array(timings) * 1e3


class SampledQueries:
    """An embedder that gives each query a vector drawn from the chunks' own distribution, for recall only: the real
    embedder's question vectors sit far from every synthetic cluster, where the nearest chunks are near-ties that no
    approximate search (nor a real corpus) would produce."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def get_embedding_dimension(self) -> int:
        return DIMENSION

    def encode(self, texts: list[str], **_) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def recall_at_10(approximate: Retriever, exact: Retriever, queries: list[str]) -> float:
    """The share of exact search's 10 best chunks that the approximate search also returns, over the queries."""
    found = [
        len({h.chunk.id for h in approximate.search(q, 10)} & {h.chunk.id for h in exact.search(q, 10)}) / 10
        for q in queries
    ]
    return float(np.mean(found))


def bm25_bytes(lexical: BM25) -> int:
    """The bytes of BM25's arrays (the sparse score matrix and the vocabulary's ids)."""
    arrays = [a for a in lexical.model.scores.values() if isinstance(a, np.ndarray)]
    return sum(a.nbytes for a in arrays)


def hybrid_scale_figures(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000), seed: int = 0) -> dict:
    rng, vectors_rng = random.Random(seed), np.random.default_rng(seed)
    sentences = demo_sentences()
    questions = [json.loads(line)["question"] for line in (DEMO / "qa.jsonl").read_text().splitlines()]
    queries = random.Random(seed).sample(questions, QUERIES)
    spectrum = (np.arange(DIMENSION) + 1.0) ** -SPECTRUM_EXPONENT
    spectrum /= np.sqrt(np.mean(spectrum**2))
    centres = _normalised(vectors_rng.standard_normal((CENTRES, DIMENSION)) * spectrum)
    model = Config().model
    embedder = query_embedder(model.embedder, model.device, model.embedder_runtime)  # what `Retriever.load` uses
    torch_embedder = load_embedder(model.embedder, model.device)
    figures: dict = {"query_runtime": type(embedder).__name__}
    for size in sizes:
        chunks = synthetic_chunks(size, sentences, rng)
        keys = np.arange(size, dtype=np.int64)
        vectors = _sample(vectors_rng, centres, spectrum, size)
        started = time.perf_counter()
        index = build_vector_index(vectors, keys, IndexConfig(index_type="hnsw"))
        hnsw_build_s = time.perf_counter() - started
        flat = build_vector_index(vectors, keys, IndexConfig(index_type="flat"))
        del vectors
        started = time.perf_counter()
        lexical = BM25.build([c.text for c in chunks])
        build_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            lexical.save(Path(folder) / "bm25")
            save_s = time.perf_counter() - started
            started = time.perf_counter()
            lexical = BM25.load(Path(folder) / "bm25", size)
            load_s = time.perf_counter() - started
        settings = IndexConfig(index_type="hnsw")
        hybrid = timed(Retriever(chunks, list(keys), index, embedder, settings, lexical), queries)
        dense = timed(
            Retriever(chunks, list(keys), index, embedder, settings.model_copy(update={"hybrid": False})), queries
        )
        torch_queries = timed(Retriever(chunks, list(keys), index, torch_embedder, settings, lexical), queries)
        lexical_only = []
        for query in queries:
            started = time.perf_counter()
            lexical.top(query, 50)
            lexical_only.append((time.perf_counter() - started) * 1e3)
        sampled = SampledQueries(dict(zip(queries, _sample(vectors_rng, centres, spectrum, len(queries)))))
        recall = recall_at_10(
            Retriever(chunks, list(keys), index, sampled, settings, lexical),
            Retriever(chunks, list(keys), flat, sampled, settings, lexical),
            queries,
        )
        memory = {
            "vector_index_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1),
            "bm25_mb": round(bm25_bytes(lexical) / 2**20, 1),
            "chunk_text_mb": round(sum(len(c.text.encode()) for c in chunks) / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        del flat
        figures[str(size)] = {
            "hybrid_p50_ms": round(float(np.percentile(hybrid, 50)), 2),
            "hybrid_p95_ms": round(float(np.percentile(hybrid, 95)), 2),
            "dense_p50_ms": round(float(np.percentile(dense, 50)), 2),
            "dense_p95_ms": round(float(np.percentile(dense, 95)), 2),
            "hybrid_over_dense_p50": round(float(np.percentile(hybrid, 50) / np.percentile(dense, 50)), 2),
            "hybrid_torch_queries_p50_ms": round(float(np.percentile(torch_queries, 50)), 2),
            "torch_queries_over_default_p50": round(
                float(np.percentile(torch_queries, 50) / np.percentile(hybrid, 50)), 2
            ),
            "bm25_query_p50_ms": round(float(np.percentile(lexical_only, 50)), 2),
            "bm25_query_p95_ms": round(float(np.percentile(lexical_only, 95)), 2),
            "bm25_build_s": round(build_s, 2),
            "bm25_save_s": round(save_s, 2),
            "bm25_load_s": round(load_s, 2),
            "hnsw_build_s": round(hnsw_build_s, 1),
            "hybrid_recall_at_10": round(recall, 4),
            "memory": memory,
        }
        print(size, figures[str(size)], flush=True)
    return figures


if __name__ == "__main__":
    print(json.dumps(hybrid_scale_figures(tuple(int(a) for a in sys.argv[1:]) or (10_000, 100_000, 1_000_000))))
