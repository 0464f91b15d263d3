import json
import shutil

import numpy as np
import pytest
from conftest import DEMO

from workbench.cli import main
from workbench.config import Config, IndexConfig
from workbench.data.prepare import prepare
from workbench.records import Chunk, Example
from workbench.retrieval.chunking import embedding_text
from workbench.retrieval.index import Hit, IndexUnusable, Retriever, build_index, retrieval_quality
from workbench.retrieval.lexical import BM25, lexical_tokens, reciprocal_rank_fusion
from workbench.retrieval.vectors import build_vector_index, search_vectors, vectors_for
from workbench.workspace import index_paths, read_json, read_jsonl

EDITED_DOC = "skylark-s3-pro.md"


def test_demo_index_finds_the_right_documents(demo_index):
    home, manifest = demo_index
    test = manifest["quality"]["test"]
    assert test["questions"] >= 35 and test["recall@5"] >= 0.95
    assert test["recall@1"] <= test["recall@5"] <= test["recall@10"] and 0 < test["mrr"] <= 1
    assert manifest["embedder"]["name"] == "all-minilm-l6-v2" and manifest["embedder"]["dimension"] == 384
    assert manifest["index"]["type"] == "flat" and manifest["build"]["mode"] == "full"
    rows = read_jsonl(index_paths("demo", home).chunks)
    assert len(rows) == manifest["counts"]["chunks"] == manifest["build"]["embedded_chunks"]
    assert len({row["key"] for row in rows}) == len(rows) and len({row["id"] for row in rows}) == len(rows)
    hits = Retriever.load("demo", home=home).search("What is the offline buffer of the Skylark S3 Pro?", 3)
    assert [hit.rank for hit in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
    assert any(hit.chunk.doc_id == "skylark-s3-pro" for hit in hits)


def _edit_corpus(target):
    """A copy of the demo corpus with one number changed, one document removed and one added."""
    shutil.copytree(DEMO / "corpus", target)
    datasheet = target / EDITED_DOC
    text = datasheet.read_text()
    assert "30 days" in text
    datasheet.write_text(text.replace("30 days", "45 days"))
    (target / "glossary.txt").unlink()
    (target / "kestrel-k9.md").write_text(
        "# Kestrel K9 relay board\n\nThe Kestrel K9 relay board switches 16 circuits and ships in October 2027.\n"
    )
    return target


def test_update_re_embeds_only_changes_and_searches_like_a_rebuild(demo_index, tmp_path):
    home, first = demo_index
    updated, rebuilt = tmp_path / "updated", tmp_path / "rebuilt"
    shutil.copytree(home, updated)
    corpus = _edit_corpus(tmp_path / "corpus")
    for target in (updated, rebuilt):  # QA rows about the removed document are skipped
        prepare("demo", [corpus], DEMO / "qa.jsonl", home=target, skip_bad_rows=True, progress=False)
    manifest = build_index("demo", home=updated, update=True, progress=False)
    full = build_index("demo", home=rebuilt, progress=False)

    build = manifest["build"]
    assert build["mode"] == "update"
    assert 0 < build["embedded_chunks"] < first["counts"]["chunks"] / 5
    assert (
        build["removed_chunks"] >= 1 and build["reused_chunks"] + build["embedded_chunks"] == full["counts"]["chunks"]
    )
    assert manifest["documents"] == full["documents"] and manifest["corpus_sha256"] == full["corpus_sha256"]

    queries = ["What is the offline buffer of the Skylark S3 Pro?", "Kestrel K9 circuits", "claim code"]
    a = Retriever.load("demo", home=updated).search_many(queries, 8)
    b = Retriever.load("demo", home=rebuilt).search_many(queries, 8)
    for hits_a, hits_b in zip(a, b):
        assert [h.chunk.id for h in hits_a] == [h.chunk.id for h in hits_b]
        np.testing.assert_allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=1e-4)
    top = a[0][0].chunk
    assert top.doc_id == "skylark-s3-pro" and "45 days" in top.text and "30 days" not in top.text
    assert a[1][0].chunk.doc_id == "kestrel-k9"
    assert not any(h.chunk.doc_id == "glossary" for hits in a for h in hits)


def test_loading_checks_the_manifest(demo_index, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    paths = index_paths("demo", home)
    with pytest.raises(IndexUnusable, match="no index"):
        Retriever.load("other", home=home)

    manifest = read_json(paths.manifest)
    wrong = json.loads(json.dumps(manifest))
    wrong["embedder"]["weights_sha256"] = "0" * 64
    paths.manifest.write_text(json.dumps(wrong))
    with pytest.raises(IndexUnusable, match=r"built with embedder .*workbench index --name demo"):
        Retriever.load("demo", home=home)

    paths.manifest.write_text(json.dumps(manifest))
    data = bytearray(paths.faiss.read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths.faiss.write_bytes(bytes(data))
    with pytest.raises(IndexUnusable, match="index.faiss: missing or changed"):
        Retriever.load("demo", home=home)

    paths.manifest.write_text("{not json")
    with pytest.raises(IndexUnusable, match="not valid JSON"):
        Retriever.load("demo", home=home)


def test_index_needs_prepared_documents(tmp_path):
    with pytest.raises(Exception, match="workbench prepare --name nothing"):
        build_index("nothing", home=tmp_path, progress=False)


class _FixedRetriever:
    """Returns preset document ids as ranked hits, to check the quality arithmetic exactly."""

    def __init__(self, ranked_docs):
        self.ranked_docs = ranked_docs

    def search_many(self, queries, k):
        return [
            [Hit(Chunk(f"{d}:0", d, d, [], "", 0, 0), 1.0, r) for r, d in enumerate(self.ranked_docs[q][:k], 1)]
            for q in queries
        ]


def test_retrieval_quality_counts_document_hits_by_rank():
    ranked = {"q1": ["a", "b"], "q2": ["x", "y", "z", "b", "c", "d"], "q3": ["x"] * 10, "q4": ["y", "c"]}
    gold = [
        ("q1", "a", ["a"]),
        ("q2", "c", ["c"]),
        ("q3", "a", []),  # an older row with doc_id only
        ("q4", "b", ["b", "c"]),  # multi-document: any of them counts
        ("unanswerable", None, []),  # ignored
    ]
    examples = [Example(q, [], "qa", "qa", 0, q, "", doc_id, doc_ids) for q, doc_id, doc_ids in gold]
    quality = retrieval_quality(_FixedRetriever(ranked), examples)
    assert quality["questions"] == 4
    assert quality["recall@1"] == 0.25 and quality["recall@5"] == 0.75 and quality["recall@10"] == 0.75
    assert quality["mrr"] == pytest.approx((1 + 1 / 5 + 0 + 1 / 2) / 4)


def test_bm25_prefers_rare_exact_terms_and_rrf_rewards_agreement():
    bm25 = BM25.build(["the hub MH-1 pairs probes", "the hub has a battery", "error E-417 means a sensor fault", ""])
    assert bm25.top("what does E-417 mean", 2)[0][0] == 2
    assert bm25.top("MH-1", 4) == bm25.top("mh-1", 4) and bm25.top("MH-1", 4)[0][0] == 0
    assert bm25.top("nothing matches", 3) == []
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert [item for item, _ in fused] == [1, 3, 2, 4]


def test_bm25_from_token_ids_scores_as_bm25s_from_tokens_and_its_top_k_is_a_full_sort_cut():
    import bm25s

    words = [
        "hub",
        "probe",
        "sensor",
        "battery",
        "error",
        "e-417",
        "mh-1",
        "firmware",
        "pairing",
        "timeout",
        "the",
        "a",
        "of",
        "to",
    ]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 30))) for _ in range(400)]
    ours = BM25.build(texts)
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([lexical_tokens(t) or [""] for t in texts], show_progress=False)
    for query in ("hub error e-417", "the a of", "firmware", "nothing"):
        terms = list(dict.fromkeys(lexical_tokens(query)))
        expected = reference.get_scores(terms) if terms else np.zeros(len(texts))
        np.testing.assert_allclose(ours.model.get_scores(terms) if terms else expected, expected, rtol=1e-6)
        rows = np.flatnonzero(expected > 0)
        full = [(int(r), float(expected[r])) for r in rows[np.lexsort((rows, -expected[rows]))]]
        for k in (1, 5, 50, 1000):
            assert [row for row, _ in ours.top(query, k)] == [row for row, _ in full[:k]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vector_index_answers_with_chunk_keys(kind):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = np.arange(300) * 7 + 1000
    index = build_vector_index(vectors, keys, IndexConfig(index_type=kind))
    scores, found = search_vectors(index, vectors[:5], 3)
    assert list(found[:, 0]) == list(keys[:5]) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors_for(index, [int(keys[42])])[0], vectors[42], atol=1e-6)


def test_bm25_is_saved_with_the_index_loaded_as_built_and_checked_like_its_other_files(demo_index, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    paths = index_paths("demo", home)
    saved = sorted(f for f in read_json(paths.manifest)["files"] if f.startswith("bm25/"))
    assert saved and all((paths.root / f).is_file() for f in saved)
    assert not any(f.suffix in (".pkl", ".pickle") for f in paths.bm25.iterdir())
    loaded = Retriever.load("demo", home=home)
    rebuilt = BM25.build([embedding_text(c) for c in loaded.chunks])
    for query in ("Hub MH-1 LTE", "error E104 probe", "warranty of a Heron HV-8", "zzz unknown"):
        assert loaded.lexical.top(query, 20) == rebuilt.top(query, 20)
    (paths.root / saved[0]).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(IndexUnusable, match="bm25/.*changed since the index was built"):
        Retriever.load("demo", home=home)


def test_cli_index_and_search(demo_index, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    assert main(["index", "--name", "demo", "--home", str(home), "--update"]) == 0
    out = capsys.readouterr().out
    assert "indexed demo:" in out and "0 embedded" in out and "test recall@5" in out
    assert main(["search", "--name", "demo", "--home", str(home), "-k", "2", "Hub MH-1 LTE"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1. [") and any(line.startswith("2. [") for line in lines)
    assert main(["search", "--name", "missing", "--home", str(home), "x"]) == 2
    assert "no index" in capsys.readouterr().err


def test_dense_only_search_from_config(demo_index):
    config = Config.model_validate({"index": {"hybrid": False}})
    hits = Retriever.load("demo", config, home=demo_index[0]).search(
        "What is the offline buffer of the Skylark S3 Pro?"
    )
    assert len(hits) == config.index.top_k and 0 < hits[-1].score <= hits[0].score <= 1.0001


def test_an_interrupted_build_resumes_from_the_chunks_it_had_embedded(demo_index, tmp_path, monkeypatch):
    import workbench.retrieval.index as index_module
    from workbench.retrieval.resume import checkpoint_folder

    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    shutil.rmtree(index_paths("demo", home).root)
    monkeypatch.setattr(index_module, "PART_CHUNKS", 100)
    real, parts = index_module.embed_corpus, []

    def interrupted(spec, texts, *args, **kwargs):
        if len(parts) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third part embeds
        parts.append(len(texts))
        return real(spec, texts, *args, **kwargs)

    monkeypatch.setattr(index_module, "embed_corpus", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index("demo", home=home, progress=False)
    folder = checkpoint_folder(index_paths("demo", home).root)
    assert parts == [100, 100] and len(list(folder.glob("part-*.npy"))) == 2
    assert not index_paths("demo", home).manifest.exists()  # nothing half-written: no index yet

    parts.clear()
    monkeypatch.setattr(index_module, "PART_CHUNKS", 4096)
    manifest = build_index("demo", home=home, progress=False)
    chunks = manifest["counts"]["chunks"]
    assert manifest["build"]["resumed_chunks"] == 200 and manifest["build"]["embedded_chunks"] == chunks - 200
    assert parts == [chunks - 200] and not folder.exists()  # the rest embedded; the checkpoint gone with success
    resumed = Retriever.load("demo", home=home)
    built = Retriever.load("demo", home=demo_index[0])
    vectors = [vectors_for(r.vectors, sorted(r.by_key)) for r in (resumed, built)]
    # the same vectors up to the bf16 embedder's batch-to-batch rounding (parts batch the chunks differently)
    assert (vectors[0] * vectors[1]).sum(axis=1).min() > 0.999
    assert manifest["quality"]["test"] == demo_index[1]["quality"]["test"]


def test_a_checkpoint_of_another_embedder_is_dropped(tmp_path):
    from workbench.retrieval.resume import EmbeddingCheckpoint

    folder = tmp_path / ".demo.embedding"
    first = EmbeddingCheckpoint(folder, {"name": "a", "weights_sha256": "1"})
    first.save(["one", "two"], np.ones((2, 3), dtype=np.float32))
    assert sorted(first.load(["two", "three", "one"])) == [0, 2]
    assert EmbeddingCheckpoint(folder, {"name": "b", "weights_sha256": "2"}).load(["one", "two"]) == {}
