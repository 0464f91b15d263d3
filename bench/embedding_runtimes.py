"""Embedding runtimes on the demo: one query at a time (what a search waits on) and chunks in bulk (an index build),
PyTorch (sentence-transformers, fp32) against ONNX Runtime fp32 and int8 (dynamic quantisation, per channel), with
each one's cosine to the PyTorch vectors. Queries run on one thread, as in the app (`onnx_embedder.QUERY_THREADS`);
bulk on all of the process's threads. The defaults follow from these figures: queries on ONNX Runtime fp32
(`model.embedder_runtime: auto`); bulk on PyTorch, since no runtime here is both faster and within the quality bar
(cosine >= 0.99 to the fp32 vectors for every chunk).
Usage: python bench/embedding_runtimes.py (bench/retrieval.py records it under "retrieval" as "embedding_runtimes")
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from workbench.config import Config
from workbench.models import load_embedder
from workbench.retrieval.onnx_embedder import OnnxEmbedder, onnx_embedder

DEMO = Path(__file__).resolve().parent.parent / "demo"
WARMUP = 10
BULK_BATCH = Config().index.batch_size


def query_ms(model, queries: list[str]) -> np.ndarray:
    """Milliseconds per query, one query per call."""
    for query in queries[:WARMUP]:
        model.encode([query])
    timings = []
    for query in queries:
        started = time.perf_counter()
        model.encode([query])
        timings.append(time.perf_counter() - started)
    return np.array(timings) * 1e3


def bulk(model, texts: list[str]) -> tuple[float, np.ndarray]:
    """(chunks/s, vectors) for the texts in length order, `BULK_BATCH` per call."""
    texts = sorted(texts, key=len)
    model.encode(texts[:BULK_BATCH], batch_size=BULK_BATCH)
    started = time.perf_counter()
    vectors = np.asarray(model.encode(texts, batch_size=BULK_BATCH), dtype=np.float32)
    return len(texts) / (time.perf_counter() - started), vectors


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    return (vectors * reference).sum(axis=1) / norms


def runtime_figures(queries: list[str], texts: list[str]) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    spec = Config().model.embedder
    reference = load_embedder(spec, "cpu")
    fp32 = onnx_embedder(spec)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        int8_path = Path(folder) / "int8.onnx"
        logging.disable(logging.WARNING)  # the quantiser's advice to pre-process first
        quantize_dynamic(fp32.path, int8_path, weight_type=QuantType.QInt8, per_channel=True)
        logging.disable(logging.NOTSET)
        runtimes = {
            "torch": (reference, reference),
            "onnx_fp32": (fp32, OnnxEmbedder(reference, fp32.path, threads)),
            "onnx_int8": (OnnxEmbedder(reference, int8_path), OnnxEmbedder(reference, int8_path, threads)),
        }
        query_reference = reference.encode(queries)
        figures: dict = {"queries": len(queries), "chunks": len(texts), "bulk_threads": threads}
        bulk_reference = None  # PyTorch's vectors: it runs first
        for name, (for_queries, for_bulk) in runtimes.items():
            if name == "torch":
                torch.set_num_threads(1)  # one thread per query, as the ONNX runtimes get
            timings = query_ms(for_queries, queries)
            torch.set_num_threads(threads)
            chunks_per_s, vectors = bulk(for_bulk, texts)
            bulk_reference = vectors if bulk_reference is None else bulk_reference
            figures[name] = {
                "query_p50_ms": round(float(np.percentile(timings, 50)), 2),
                "query_p95_ms": round(float(np.percentile(timings, 95)), 2),
                "query_cosine_min": round(float(cosines(for_queries.encode(queries), query_reference).min()), 5),
                "bulk_chunks_per_s": round(chunks_per_s, 1),
                "bulk_cosine_min": round(float(cosines(vectors, bulk_reference).min()), 5),
            }
    for name in runtimes:
        row = figures[name]
        row["query_over_torch"] = round(figures["torch"]["query_p50_ms"] / row["query_p50_ms"], 2)
        row["bulk_over_torch"] = round(row["bulk_chunks_per_s"] / figures["torch"]["bulk_chunks_per_s"], 2)
    figures["query_embedding_speedup"] = figures["onnx_fp32"]["query_over_torch"]
    return figures


if __name__ == "__main__":  # bench/retrieval.py passes the demo index's chunk texts; here, the corpus's paragraphs
    qa = [json.loads(line)["question"] for line in (DEMO / "qa.jsonl").read_text().splitlines()]
    documents = [p.read_text(encoding="utf-8") for p in sorted((DEMO / "corpus").glob("*.md"))]
    paragraphs = [p for text in documents for p in text.split("\n\n") if len(p.split()) > 20]
    print(json.dumps(runtime_figures(qa[:150], paragraphs), indent=1))
