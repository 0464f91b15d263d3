"""`workbench index`: chunk, embed and index a prepared run's documents into `HOME/indexes/NAME/`.

The folder holds `index.faiss` (vectors keyed by int64 chunk keys), `chunks.jsonl` (one chunk per line with its
key) and `manifest.json` (embedder identity, chunking, index type and parameters, corpus and per-document hashes,
file hashes, counts, timings, retrieval quality). An update re-embeds only added or changed documents, reuses the
stored vectors of the others and rebuilds the FAISS structure over all of them in document order, so it searches
like a full rebuild of the new corpus. The folder is written whole into a staging folder, then swapped in; a failed
build leaves the previous index as it was and no staging folder behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from workbench import __version__
from workbench.config import Config, IndexConfig
from workbench.data.loaders import BadInputError
from workbench.models import load_embedder
from workbench.records import Chunk, Document, Example, read_split
from workbench.retrieval.chunking import chunk_document, embedding_text, token_counter
from workbench.retrieval.embedding import embed, embed_corpus, embedder_identity, query_embedder
from workbench.retrieval.lexical import BM25, reciprocal_rank_fusion
from workbench.retrieval.resume import PART_CHUNKS, EmbeddingCheckpoint, checkpoint_folder
from workbench.retrieval.vectors import build_vector_index, configure_search, index_kind, search_vectors, vectors_for
from workbench.workspace import (
    file_sha256,
    index_paths,
    package_versions,
    read_json,
    read_jsonl,
    run_paths,
    staged_version,
    write_json_atomic,
    write_jsonl_atomic,
)

QUALITY_KS = (1, 5, 10)


class IndexUnusable(BadInputError):
    """An index that is missing, corrupt or built with a different embedder; the message says what to rebuild."""


@dataclass
class Hit:
    """One search result: the chunk, its score (cosine, or the fused score with hybrid search) and 1-based rank."""

    chunk: Chunk
    score: float
    rank: int

    def to_dict(self) -> dict:
        return {"chunk_id": self.chunk.id, "doc_id": self.chunk.doc_id, "score": self.score, "rank": self.rank}


class Retriever:
    """Searches one index: dense inner product, optionally fused with BM25 ranks."""

    def __init__(
        self,
        chunks: list[Chunk],
        keys: list[int],
        vectors: faiss.Index,
        embedder,
        settings: IndexConfig,
        lexical: BM25 | None = None,
    ):
        """`lexical`: the chunks' BM25 as saved with the index; built here when hybrid search needs one."""
        self.chunks, self.vectors, self.embedder, self.settings = chunks, vectors, embedder, settings
        self.by_key = {key: row for row, key in enumerate(keys)}
        if settings.hybrid and lexical is None:
            lexical = BM25.build([embedding_text(c) for c in chunks])
        self.lexical = lexical if settings.hybrid else None

    @classmethod
    def load(cls, name: str, config: Config | None = None, home: str | Path | None = None) -> Retriever:
        """Open `HOME/indexes/NAME/` after checking it against its manifest and the configured embedder."""
        config = config or Config()
        paths = index_paths(name, home)
        manifest = _checked_manifest(name, paths, config)
        try:
            vectors = faiss.read_index(str(paths.faiss))
        except RuntimeError as exc:
            raise IndexUnusable(f"{paths.faiss}: unreadable ({exc}); {_rebuild(name)}") from None
        rows = read_jsonl(paths.chunks)
        if vectors.d != manifest["embedder"]["dimension"] or vectors.ntotal != len(rows):
            raise IndexUnusable(f"{paths.root}: index and chunks disagree; {_rebuild(name)}")
        configure_search(vectors, config.index)
        chunks = [chunk_from_row(row) for row in rows]
        embedder = query_embedder(config.model.embedder, config.model.device, config.model.embedder_runtime)
        lexical = None
        if config.index.hybrid and paths.bm25.is_dir():  # indexes built before BM25 was saved build it on load
            try:
                lexical = BM25.load(paths.bm25, len(chunks))
            except (OSError, ValueError, KeyError) as exc:
                raise IndexUnusable(f"{paths.bm25}: unreadable ({exc}); {_rebuild(name)}") from None
        return cls(chunks, [row["key"] for row in rows], vectors, embedder, config.index, lexical)

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The k best chunks for a query, best first."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int | None = None) -> list[list[Hit]]:
        k = k or self.settings.top_k
        depth = max(k, 50) if self.lexical else k
        # BM25 runs on a worker thread while the queries are embedded (both release the GIL for most of their work),
        # so hybrid search costs about the embedding alone instead of the two in turn (100k chunks: 10.3 -> 8.8 ms p50)
        lexical = _beside().submit(self._lexical_rows, queries, depth) if self.lexical else None
        scores, keys = search_vectors(self.vectors, embed(self.embedder, queries, self.settings.batch_size), depth)
        lexical_rows = lexical.result() if lexical else [None] * len(queries)
        results = []
        for row_scores, row_keys, lexical_ranking in zip(scores, keys, lexical_rows):
            dense = [(self.by_key[int(key)], float(score)) for key, score in zip(row_keys, row_scores) if key >= 0]
            if lexical_ranking is not None:
                dense = reciprocal_rank_fusion([[row for row, _ in dense], lexical_ranking], self.settings.rrf_k)
            results.append([Hit(self.chunks[row], score, rank) for rank, (row, score) in enumerate(dense[:k], 1)])
        return results

    def _lexical_rows(self, queries: list[str], depth: int) -> list[list[int]]:
        return [[row for row, _ in self.lexical.top(query, depth)] for query in queries]


@functools.lru_cache(maxsize=1)
def _beside() -> ThreadPoolExecutor:
    """Threads for BM25 beside the query embedding, shared by every retriever (searches of several sessions)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25")


def build_index(
    name: str, config: Config | None = None, home: str | Path | None = None, update: bool = False, progress: bool = True
) -> dict:
    """Build (or update) the index of run `name`; returns its manifest."""
    config = config or Config()
    started = time.perf_counter()
    run = run_paths(name, home)
    paths = index_paths(name, home)
    if not run.documents.exists():
        raise BadInputError(f"{run.root}: no prepared documents; run `workbench prepare --name {name}` first")
    documents = [
        Document(**{k: row[k] for k in ("id", "title", "text", "source", "format")})
        for row in read_jsonl(run.documents)
    ]
    embedder = load_embedder(config.model.embedder, config.model.device)
    identity = embedder_identity(config.model.embedder, config.model.device)
    chunking = {
        "chunk_tokens": config.index.chunk_tokens,
        "overlap_tokens": config.index.overlap_tokens,
        "tokenizer": config.model.embedder,
    }
    previous, why_full = _reusable(paths, identity, chunking) if update else (None, "full build requested")
    count = token_counter(embedder.tokenizer)

    chunks: list[Chunk] = []
    keys: list[int] = []
    old_keys: list[int] = []  # keys whose stored vectors are reused, parallel to `reused_rows`
    reused_rows: list[int] = []
    fresh_rows: list[int] = []
    next_key = previous["manifest"]["next_key"] if previous else 0
    hashes = {doc.id: _document_hash(doc) for doc in documents}
    for doc in documents:
        kept = previous["chunks"].get(doc.id) if previous else None
        if kept is not None and previous["manifest"]["documents"].get(doc.id) == hashes[doc.id]:
            for key, chunk in kept:
                reused_rows.append(len(chunks))
                old_keys.append(key)
                chunks.append(chunk)
                keys.append(key)
            continue
        for chunk in chunk_document(doc, count, config.index.chunk_tokens, config.index.overlap_tokens):
            fresh_rows.append(len(chunks))
            chunks.append(chunk)
            keys.append(next_key)
            next_key += 1

    embed_started = time.perf_counter()
    checkpoint = EmbeddingCheckpoint(checkpoint_folder(paths.root), identity)
    fresh, embedding, resumed = _embed_resumably(
        [embedding_text(chunks[r]) for r in fresh_rows], config, identity["dimension"], checkpoint, progress
    )
    embed_seconds = time.perf_counter() - embed_started
    vectors = np.zeros((len(chunks), identity["dimension"]), dtype=np.float32)
    if fresh_rows:
        vectors[fresh_rows] = fresh
    if reused_rows:
        vectors[reused_rows] = vectors_for(previous["index"], old_keys)
    index = build_vector_index(vectors, np.array(keys, dtype=np.int64), config.index)
    retriever = Retriever(chunks, keys, index, embedder, config.index)

    manifest = {
        "name": name,
        "embedder": identity,
        "chunking": chunking,
        "index": {
            "type": index_kind(len(chunks), config.index),
            "metric": "inner_product",
            "hnsw": {
                "m": config.index.hnsw_m,
                "ef_construction": config.index.hnsw_ef_construction,
                "ef_search": config.index.hnsw_ef_search,
            },
            "hybrid": config.index.hybrid,
        },
        "corpus_sha256": file_sha256(run.documents),
        "documents": hashes,
        "counts": {"documents": len(documents), "chunks": len(chunks)},
        "next_key": next_key,
        "build": {
            "mode": "update" if previous else "full",
            "why_full": None if previous else why_full,
            "embedded_chunks": len(fresh_rows) - resumed,
            "resumed_chunks": resumed,
            "reused_chunks": len(reused_rows),
            "removed_chunks": previous["count"] - len(reused_rows) if previous else 0,
            "embedding": embedding,
            "embed_seconds": embed_seconds,
            "chunks_per_s": (len(fresh_rows) - resumed) / embed_seconds if len(fresh_rows) > resumed else None,
        },
        "quality": quality_by_split(retriever, run),
        "versions": package_versions("faiss-cpu", "sentence-transformers", "torch") | {"workbench": __version__},
    }
    _write(paths, index, chunks, keys, manifest, started, retriever.lexical)
    checkpoint.clear()
    return read_json(paths.manifest)


def _embed_resumably(texts: list[str], config: Config, dimension: int, checkpoint, progress: bool):
    """(vectors, how, chunks taken from the checkpoint): `texts` embedded in parts of `PART_CHUNKS`, each part
    saved to `checkpoint` before the next, and the texts an interrupted build already embedded taken from it."""
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    saved = checkpoint.load(texts)
    for position, vector in saved.items():
        vectors[position] = vector
    todo = [i for i in range(len(texts)) if i not in saved]
    how = None
    with tqdm(total=len(texts), initial=len(saved), desc="embedding", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(todo), PART_CHUNKS):
            part = todo[start : start + PART_CHUNKS]
            embedded, how = embed_corpus(
                config.model.embedder,
                [texts[i] for i in part],
                config.index.batch_size,
                config.model.device,
                bar=bar,
            )
            vectors[part] = embedded
            checkpoint.save([texts[i] for i in part], embedded)
    return vectors, how, len(saved)


def chunk_from_row(row: dict) -> Chunk:
    """A chunk from its `chunks.jsonl` line (which also carries the FAISS key)."""
    return Chunk(**{k: v for k, v in row.items() if k != "key"})


def retrieval_quality(retriever: Retriever, examples: list[Example], ks: tuple[int, ...] = QUALITY_KS) -> dict | None:
    """Document-level recall@k and MRR over the examples that name their gold documents.

    A question counts as found at k when a chunk of any of its `gold_doc_ids` is among the top k chunks (what the
    RAG prompt would show); MRR uses the rank of the first such chunk within the deepest k (0 when absent).
    """
    examples = [example for example in examples if example.gold_doc_ids]
    if not examples:
        return None
    depth = max(ks)
    found_at = []
    for example, hits in zip(examples, retriever.search_many([e.question for e in examples], depth)):
        gold = set(example.gold_doc_ids)
        found_at.append(next((hit.rank for hit in hits if hit.chunk.doc_id in gold), None))
    quality = {f"recall@{k}": sum(1 for r in found_at if r is not None and r <= k) / len(examples) for k in ks}
    quality["mrr"] = sum(1 / r for r in found_at if r is not None) / len(examples)
    quality["questions"] = len(examples)
    return quality


def quality_by_split(retriever: Retriever, run) -> dict:
    """`retrieval_quality` over the questions of the test split and of every split (corpus examples left out)."""
    questions = {
        s: [e for e in read_split(run.split(s)) if e.is_question]
        for s in ("train", "val", "test")
        if run.split(s).exists()
    }
    result = {"test": retrieval_quality(retriever, questions.get("test", []))}
    result["all"] = retrieval_quality(retriever, [e for examples in questions.values() for e in examples])
    return result


def _document_hash(doc: Document) -> str:
    return hashlib.sha256(json.dumps([doc.title, doc.text], ensure_ascii=False).encode()).hexdigest()


def _reusable(paths, identity: dict, chunking: dict) -> tuple[dict | None, str]:
    """The previous index's state when an update can reuse it, else (None, why a full build is needed)."""
    if not paths.manifest.exists():
        return None, "no previous index"
    manifest = read_json(paths.manifest)
    if manifest.get("embedder") != identity:
        return None, "the embedder changed"
    if manifest.get("chunking") != chunking:
        return None, "the chunking settings changed"
    try:
        index = faiss.read_index(str(paths.faiss))
    except RuntimeError:
        return None, "the previous index file is unreadable"
    rows = read_jsonl(paths.chunks)
    chunks: dict[str, list[tuple[int, Chunk]]] = {}
    for row in rows:
        chunk = chunk_from_row(row)
        chunks.setdefault(chunk.doc_id, []).append((row["key"], chunk))
    return {"manifest": manifest, "index": index, "chunks": chunks, "count": len(rows)}, ""


def _write(
    paths,
    index: faiss.Index,
    chunks: list[Chunk],
    keys: list[int],
    manifest: dict,
    started: float,
    lexical: BM25 | None,
) -> None:
    """The index's files, switched in whole; BM25 (rebuilt on an update too: bm25s has no incremental update, and
    it takes seconds where embedding takes minutes) saved beside the vectors, every file hashed in the manifest."""
    with staged_version(paths.root) as staging:
        staged = type(paths)(staging)
        _write_faiss(index, staged.faiss)
        write_jsonl_atomic(staged.chunks, [{"key": key} | chunk.to_dict() for key, chunk in zip(keys, chunks)])
        manifest["files"] = {"index.faiss": file_sha256(staged.faiss), "chunks.jsonl": file_sha256(staged.chunks)}
        if lexical is not None:
            lexical.save(staged.bm25)
            for file in sorted(staged.bm25.iterdir()):
                manifest["files"][f"{staged.bm25.name}/{file.name}"] = file_sha256(file)
        manifest["build"]["seconds"] = time.perf_counter() - started
        write_json_atomic(staged.manifest, manifest)


def _write_faiss(index: faiss.Index, path: Path) -> None:
    """Write `index` through a Python file, which raises on a full disk: faiss's own file writer only prints a
    failed close and leaves a truncated file, which the manifest would then vouch for."""
    with open(path, "wb") as fh:
        faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write))
        fh.flush()
        os.fsync(fh.fileno())


def _checked_manifest(name: str, paths, config: Config) -> dict:
    if not paths.manifest.exists():
        raise IndexUnusable(f"{paths.root}: no index; {_rebuild(name)}")
    try:
        manifest = read_json(paths.manifest)
    except ValueError as exc:  # not JSON, or not text at all
        raise IndexUnusable(f"{paths.manifest}: not valid JSON ({exc}); {_rebuild(name)}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("embedder"), dict):
        raise IndexUnusable(f"{paths.manifest}: not an index manifest (no embedder); {_rebuild(name)}")
    for file, digest in manifest.get("files", {}).items():
        path = paths.root / file
        if not path.exists() or file_sha256(path) != digest:
            raise IndexUnusable(f"{path}: missing or changed since the index was built (corrupt?); {_rebuild(name)}")
    built_with = manifest["embedder"]
    current = embedder_identity(config.model.embedder, config.model.device)
    for field in ("name", "weights_sha256", "dimension"):
        if built_with.get(field) != current[field]:
            raise IndexUnusable(
                f"{paths.root}: built with embedder {built_with.get('name')} ({field} {built_with.get(field)}), "
                f"but the config uses {current['name']} ({field} {current[field]}); {_rebuild(name)} with this "
                "embedder, or set model.embedder back"
            )
    return manifest


def _rebuild(name: str) -> str:
    return f"run `workbench index --name {name}` to build it again"
