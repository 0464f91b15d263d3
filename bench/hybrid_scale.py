"""Hybrid search at scale: the path users run (`Retriever.search`: query embedding, HNSW search, BM25, rank fusion,
chunk lookup), at 10k and 100k chunks, against dense-only search over the same index in the same run; and the BM25
half's build, save and load seconds (bm25s, saved with the index).

Chunks are ~160 words of the demo corpus's sentences drawn at random (seeded), so BM25 sees the demo's vocabulary
and term statistics at scale. Their vectors are synthetic (bench/vector_scale.py's sampler: 384-d, clustered, a
power-law spectrum), since embedding 100k chunks takes about half an hour on 2 cores; the query is embedded by the
real embedder, as in the app. Queries are the demo's QA questions, one at a time, with one thread for FAISS (see
vector_scale.py). Recall of the fused ranking is not measured here: HNSW recall is in `scale`, demo recall/MRR of
hybrid search in `quality`.
Usage: python bench/hybrid_scale.py  (bench/retrieval.py records it under "retrieval" as "hybrid_scale")
"""

from __future__ import annotations

import json
import random
import re
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from vector_scale import CENTRES, DIMENSION, SPECTRUM_EXPONENT, _normalised, _sample

from workbench.config import IndexConfig
from workbench.models import load_embedder
from workbench.records import Chunk
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


def hybrid_scale_figures(sizes: tuple[int, ...] = (10_000, 100_000), seed: int = 0) -> dict:
    rng, vectors_rng = random.Random(seed), np.random.default_rng(seed)
    sentences = demo_sentences()
    questions = [json.loads(line)["question"] for line in (DEMO / "qa.jsonl").read_text().splitlines()]
    queries = random.Random(seed).sample(questions, QUERIES)
    spectrum = (np.arange(DIMENSION) + 1.0) ** -SPECTRUM_EXPONENT
    spectrum /= np.sqrt(np.mean(spectrum**2))
    centres = _normalised(vectors_rng.standard_normal((CENTRES, DIMENSION)) * spectrum)
    embedder = load_embedder("all-minilm-l6-v2")
    figures = {}
    for size in sizes:
        chunks = synthetic_chunks(size, sentences, rng)
        keys = np.arange(size, dtype=np.int64)
        index = build_vector_index(_sample(vectors_rng, centres, spectrum, size), keys, IndexConfig(index_type="hnsw"))
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
        lexical_only = []
        for query in queries:
            started = time.perf_counter()
            lexical.top(query, 50)
            lexical_only.append((time.perf_counter() - started) * 1e3)
        figures[str(size)] = {
            "hybrid_p50_ms": round(float(np.percentile(hybrid, 50)), 2),
            "hybrid_p95_ms": round(float(np.percentile(hybrid, 95)), 2),
            "dense_p50_ms": round(float(np.percentile(dense, 50)), 2),
            "dense_p95_ms": round(float(np.percentile(dense, 95)), 2),
            "hybrid_over_dense_p50": round(float(np.percentile(hybrid, 50) / np.percentile(dense, 50)), 2),
            "bm25_query_p50_ms": round(float(np.percentile(lexical_only, 50)), 2),
            "bm25_query_p95_ms": round(float(np.percentile(lexical_only, 95)), 2),
            "bm25_build_s": round(build_s, 2),
            "bm25_save_s": round(save_s, 2),
            "bm25_load_s": round(load_s, 2),
        }
        print(size, figures[str(size)], flush=True)
    return figures


if __name__ == "__main__":
    print(json.dumps(hybrid_scale_figures()))
