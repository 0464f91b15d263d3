"""The freshness probe: facts changed in a copy of the run (never the run itself), each edit a whole number of a
reference answer written once in its gold document, the copy's index updated, every variant asked, and the result
in the report."""

import json
import shutil

import pytest

from workbench.cli import main
from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.freshness import Edit, changed_number, freshness_file, outcome, pick_edits, probe_freshness
from workbench.report import build_report, load_rows
from workbench.report.render import render_markdown
from workbench.store import Store
from workbench.workspace import file_sha256, index_paths, read_jsonl, run_paths


@pytest.fixture
def demo_copy(demo_index, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    return home


def test_edits_change_one_number_per_document_to_a_value_it_does_not_hold(demo_copy):
    edits, texts = pick_edits("demo", demo_copy, 12)
    documents = {row["id"]: row["text"] for row in read_jsonl(run_paths("demo", demo_copy).documents)}
    assert len(edits) == 12 and len({e.doc_id for e in edits}) == 12
    for e in edits:
        assert e.old in e.was and e.new in e.now and e.old != e.new
        assert sum(text.count(e.was) for text in documents.values()) == 1 and texts[e.doc_id].count(e.now) >= 1
        assert texts[e.doc_id] == documents[e.doc_id].replace(e.was, e.now, 1)
    assert changed_number(75, "It is 90% and 75% of it.", percent=True) == "60"  # 90 is taken; a share stays <= 100
    assert changed_number(10, "10 or 12 units") == "14"


def test_an_answer_gives_the_new_value_the_old_one_both_or_neither():
    edit = Edit("Q1", "How long?", "d1", "45", "54", "45 days", "54 days")
    assert outcome("Within 54 days of delivery.", edit) == "new"
    assert outcome("You have 45 days.", edit) == "old"
    assert outcome("It was 45 days, now 54 days.", edit) == "both"
    assert outcome("Within 450 days, or 5.4 weeks.", edit) == "neither"


def test_the_probe_works_on_a_copy_and_the_report_shows_it(demo_copy, tiny_llama_folder, capsys):
    run = run_paths("demo", demo_copy)
    before = {path: file_sha256(path) for path in (run.documents, index_paths("demo", demo_copy).faiss)}
    config = Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 4}})
    result = probe_freshness("demo", config, demo_copy, facts=3, variants=["base", "rag"])
    assert {path: file_sha256(path) for path in before} == before  # the run and its index are untouched
    assert result["facts"] == 3 and result["index_update_s"] > 0 and set(result["variants"]) == {"base", "rag"}
    assert all(sum(row.values()) == pytest.approx(1.0) for row in result["variants"].values())
    assert len(result["answers"]) == 6 and json.loads(freshness_file("demo", demo_copy).read_text()) == result
    with Store.open(home=demo_copy) as store:
        report = build_report(load_rows(store, "demo", config, demo_copy))
    assert report["freshness"]["facts"] == 3 and "## Freshness" in render_markdown(report)
    with pytest.raises(BadInputError, match="--facts 0: change at least 1 fact"):
        probe_freshness("demo", config, demo_copy, facts=0)
    assert main(["probe-freshness", "--name", "nope", "--home", str(demo_copy)]) == 2
    assert "needs a prepared and indexed run" in capsys.readouterr().err
