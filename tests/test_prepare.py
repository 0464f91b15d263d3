import html
import json

import pytest
from conftest import DEMO
from datasets import load_dataset

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.data.prepare import prepare
from workbench.workspace import read_json, run_paths


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    report = prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    return home, report


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    report = prepare("noisy", [DEMO / "corpus", DEMO / "noisy"], DEMO / "qa.jsonl", home=home, progress=False)
    return home, report


def test_demo_meets_the_size_promises(demo_run):
    _, report = demo_run
    assert report["documents"]["kept"] >= 40 and report["documents"]["words"]["total"] >= 15_000
    qa = report["qa"]
    assert qa["pairs"] >= 300 and qa["paraphrases"] == 2 * qa["pairs"]
    assert set(qa["by_type"]) == {"fact", "numeric", "procedure", "multi_doc", "unanswerable"}
    assert qa["documents_without_questions"] == [] and qa["unknown_doc_ids"] == []
    assert report["duplicates"] == {"exact": [], "near": []} and report["pii"]["documents"] == {}
    assert report["leakage"]["count"] == 0


def test_demo_splits_load_with_datasets_and_carry_chat_messages(demo_run):
    home, report = demo_run
    paths = run_paths("demo", home)
    files = {name: str(paths.split(name)) for name in ("train", "val", "test")}
    data = load_dataset("json", data_files=files)
    assert {name: len(data[name]) for name in files} == report["splits"]["sizes"]
    row = data["test"][0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][0]["content"] == row["question"] and row["origin"] == "qa"
    for name in files:
        assert set(report["splits"]["by_type"][name]) == {"fact", "numeric", "procedure", "multi_doc", "unanswerable"}


def test_no_question_or_group_crosses_splits(demo_run):
    home, _ = demo_run
    paths = run_paths("demo", home)
    seen = {}
    for name in ("train", "val", "test"):
        for row in map(json.loads, paths.split(name).read_text().splitlines()):
            assert seen.setdefault(row["group"], name) == name


def test_outputs_and_manifest_describe_the_run(demo_run):
    home, report = demo_run
    paths = run_paths("demo", home)
    assert sorted(p.name for p in paths.root.iterdir()) == [
        "data",
        "documents.jsonl",
        "manifest.json",
        "quality.json",
        "quality.md",
    ]
    manifest = read_json(paths.manifest)["prepare"]
    assert manifest["counts"]["documents"] == report["documents"]["kept"]
    assert set(manifest["outputs"]) == {"data/train.jsonl", "data/val.jsonl", "data/test.jsonl", "documents.jsonl"}
    assert len(manifest["inputs"]) == 45 and len(manifest["input_hash"]) == 64
    assert manifest["config"] == Config().model_dump(mode="json")
    assert "Leakage" in paths.quality_md.read_text()


def test_noisy_run_finds_every_planted_defect(noisy_run):
    home, report = noisy_run
    assert {(d["removed"], d["kept"]) for d in report["duplicates"]["exact"]} == {
        ("ticket-1187", "ticket-1187-copy"),
        ("ticket-2044", "ticket-2044-dup"),
        ("forum-probe-battery", "F-0981"),
    }
    assert {frozenset((d["removed"], d["kept"])) for d in report["duplicates"]["near"]} == {
        frozenset(("forum-hub-offline", "forum-hub-offline-repost")),
        frozenset(("wiki-returns-policy-old", "wiki-returns-policy-2023")),
    }
    assert set(report["pii"]["documents"]) == {"email", "phone", "card", "iban", "national_id"}
    assert {b["line"] for b in report["cleaning"]["boilerplate_lines"]} == {
        "exported from marrowgate helpdesk v2 — internal use only",
        "confidential. do not forward outside the organisation.",
    }
    assert len(report["cleaning"]["mojibake_repaired"]) >= 5
    skipped = {s["source"].rsplit("/", 1)[-1] for s in report["files"]["skipped"]}
    assert skipped == {"empty-note.txt", "scan-0042.pdf.bin"}
    assert report["leakage"]["count"] == 0
    documents = run_paths("noisy", home).documents.read_text()
    for planted in ("4111 1111 1111 1111", "@example.com", "078-05-1120", "GB82 WEST", "â€™", "Confidential."):
        assert planted not in documents
    assert "order number was 4111 1111 1111 1112" in documents  # fails Luhn: not a card


def test_without_qa_examples_come_from_the_corpus_split_by_document(home):
    report = prepare("corpus-only", [DEMO / "corpus"], home=home, progress=False)
    assert report["qa"] is None and set(report["examples"]["by_kind"]) == {"section_qa", "continuation"}
    paths = run_paths("corpus-only", home)
    docs_per_split = {}
    for name in ("train", "val", "test"):
        rows = [json.loads(line) for line in paths.split(name).read_text().splitlines()]
        assert rows and all(row["origin"] == "corpus" for row in rows)
        docs_per_split[name] = {row["doc_id"] for row in rows}
    assert not docs_per_split["train"] & docs_per_split["test"]
    assert report["leakage"]["count"] == 0


def test_empty_corpus_is_a_clear_error_and_writes_nothing(home, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("")
    with pytest.raises(BadInputError, match="no usable documents.*blank.txt: empty file"):
        prepare("x", [tmp_path / "empty"], home=home, progress=False)
    assert not run_paths("x", home).root.exists()


def _pump_corpus(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\nThe pump runs at 40 litres per minute on weekdays.")
    return corpus


def _files(root) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_failed_run_leaves_the_previous_outputs_untouched(home, tmp_path):
    corpus = _pump_corpus(tmp_path)
    prepare("keep", [corpus], home=home, progress=False)
    paths = run_paths("keep", home)
    before = _files(paths.root)
    (tmp_path / "qa.jsonl").write_text('{"question": "Q?"}\n')
    with pytest.raises(BadInputError, match="qa.jsonl:1: missing or empty 'answer'"):
        prepare("keep", [corpus], tmp_path / "qa.jsonl", home=home, progress=False)
    assert _files(paths.root) == before


def test_a_corpus_without_training_examples_fails_and_keeps_the_previous_run(home, tmp_path):
    prepare("keep", [_pump_corpus(tmp_path)], home=home, progress=False)
    paths = run_paths("keep", home)
    before = _files(paths.root)
    headings = tmp_path / "headings"
    headings.mkdir()
    (headings / "manual.md").write_text("# Pump model X200 service manual\n\n## Safety notes for the X200 pump\n")
    (headings / "returns.md").write_text("# Returns policy for every customer order\n")
    with pytest.raises(BadInputError) as failure:
        prepare("keep", [headings], home=home, progress=False)
    assert str(failure.value).startswith(
        f"{headings}: no training examples (2 document(s) loaded, 2 kept, 0 QA pairs: no --qa file)"
    )
    assert "Add documents with body text, or a QA set with --qa" in str(failure.value)
    assert "re-run `workbench prepare --name keep`" in str(failure.value)
    assert _files(paths.root) == before


def test_quality_report_shows_corpus_text_as_written_and_markdown_renders_it_literally(home, tmp_path):
    from markdown_it import MarkdownIt

    corpus = _pump_corpus(tmp_path)
    odd = corpus / "bob's <b>notes | *v2*.png"
    odd.write_bytes(b"\x89PNG....")
    prepare("odd", [corpus], home=home, progress=False)
    quality = run_paths("odd", home).quality_md.read_text()
    assert "bob's" in quality and "&#x27;" not in quality and "&lt;" not in quality
    rendered = MarkdownIt("commonmark").enable("table").render(quality)
    assert f"<td>{html.escape(str(odd), quote=False)}</td>" in rendered  # one cell, no tag, no emphasis


def test_a_corpus_of_short_documents_says_how_many_were_too_short_and_what_to_change(home, tmp_path):
    corpus = tmp_path / "short"
    corpus.mkdir()
    for name in ("a", "b"):
        (corpus / f"{name}.md").write_text("# Note\nTo do.")
    with pytest.raises(BadInputError) as failure:
        prepare("x", [corpus], home=home, progress=False)
    assert str(failure.value) == (
        f"{corpus}: no usable documents (2 file(s) read, 0 file(s) and 0 row(s) skipped; all 2 document(s) loaded are "
        "shorter than prepare.min_doc_words = 5 words after cleaning: a, b). Add documents with more text, or set a "
        "lower prepare.min_doc_words in a --config file"
    )
    assert not run_paths("x", home).root.exists()


def _qa_corpus(tmp_path):
    """Documents `a` and `returns`, and `stub`, which is dropped as too short."""
    corpus = _pump_corpus(tmp_path)
    (corpus / "returns.md").write_text("# Returns\nAny order can be returned within 30 days for a refund.")
    (corpus / "stub.md").write_text("# Stub\nTo do.")
    return corpus


def _write_qa(path, *doc_ids) -> None:
    rows = [
        {"question": f"Question {n} about pumps?", "answer": "Yes.", "doc_ids": ids} for n, ids in enumerate(doc_ids)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_qa_row_naming_an_unknown_document_is_an_error_naming_its_line(home, tmp_path):
    corpus, qa = _qa_corpus(tmp_path), tmp_path / "qa.jsonl"
    _write_qa(qa, ["a"], ["a", "retrns"], ["stub"])
    with pytest.raises(BadInputError) as failure:
        prepare("qa", [corpus], qa, home=home, progress=False)
    assert str(failure.value) == (
        f"{qa}:2: unknown doc_id 'retrns': no document has this id (did you mean 'returns'?); 1 more row(s) name "
        "unknown documents. A document's id is its path under the corpus folder without the suffix, or the id "
        "column of a .jsonl/.csv corpus; fix the ids, or pass --skip-bad-rows to skip such rows"
    )
    assert not run_paths("qa", home).root.exists()


def test_skip_bad_rows_skips_and_reports_qa_rows_naming_unknown_documents(home, tmp_path):
    corpus, qa = _qa_corpus(tmp_path), tmp_path / "qa.jsonl"
    _write_qa(qa, ["a"], ["a", "retrns"], ["stub"])
    report = prepare("qa", [corpus], qa, home=home, skip_bad_rows=True, progress=False)
    assert report["qa"]["pairs"] == 1
    assert report["qa"]["skipped_rows"] == [
        {"source": f"{qa}:2", "reason": "unknown doc_id 'retrns': no document has this id (did you mean 'returns'?)"},
        {
            "source": f"{qa}:3",
            "reason": "doc_id 'stub' names a document dropped as shorter than prepare.min_doc_words = 5 words",
        },
    ]
    assert [row["doc_id"] for row in report["qa"]["unknown_doc_ids"]] == ["retrns", "stub"]
    assert "Rows skipped: 2; references to unknown documents: 2" in run_paths("qa", home).quality_md.read_text()

    _write_qa(qa, ["retrns"], ["stub"])
    with pytest.raises(BadInputError, match="no row names only known documents: is this the QA set of this corpus"):
        prepare("qa", [corpus], qa, home=home, skip_bad_rows=True, progress=False)
