"""Exports: ratings, arena answers, eval answers, DPO pairs and SFT examples, as .jsonl, .csv or a `datasets` folder
that `datasets` loads back; nothing of a turn not voted on names its variant."""

import csv
import json

import pytest
from datasets import load_dataset, load_from_disk
from test_store import conversation, eval_answer, eval_setup, judgement

from workbench.cli import main
from workbench.report.exports import ExportError, export_rows, write_rows
from workbench.store import Store


@pytest.fixture
def rated(tmp_path):
    """Run `r`: ann's conversation of two turns (the first voted ft best, with stars; the second not voted yet),
    bob's one-turn conversation voted "tie"; and an eval answer with a judge and a claim."""
    store = Store.open(str(tmp_path / "store.db"))
    conversation(store, "r", ["t1", "t2"])  # variants base, ft, rag; blind order rag, ft, base
    for answer_id, rating in [
        ("t1-ft", {"stars": 5, "vote": "best"}),
        ("t1-base", {"stars": 2}),
        ("t1-rag", {"stars": 4}),
        ("t2-rag", {"stars": 5}),  # turn t2: rated, not voted
    ]:
        store.add_rating(answer_id[:2], "ann", answer_id, **rating)
    conversation(store, "r", ["b1"], rater="bob")
    store.add_rating("b1", "bob", None, vote="tie")
    store.add_judgement("t1-ft", "token_f1", 0.5)
    store.add_claims("t2-rag", "evidence", [{"claim": "made up", "score": 0.75, "supported": False}])
    store.start_eval(**eval_setup())
    store.add_eval_answer("e1", "q1", eval_answer("q1", "rag"), gold_rank=1, judgements=[judgement("g", 0.5)])
    yield store
    store.close()


def test_ratings_and_answers_carry_question_and_text_and_no_variant_before_the_vote(rated):
    ratings = export_rows(rated, "ratings", "r")
    by_answer = {r["answer_id"]: r for r in ratings}
    assert by_answer["t1-ft"]["variant"] == "ft" and by_answer["t1-ft"]["question"] == "What is WAL?"
    assert by_answer["t2-rag"]["variant"] == "column A" and by_answer["t2-rag"]["answer"]  # rag is shown first
    answers = {a["id"]: a for a in export_rows(rated, "answers", "r")}
    assert answers["t1-ft"]["variant"] == "ft" and answers["t1-ft"]["judges"] == {
        "token_f1": {"score": 0.5, "reason": None}
    }
    assert answers["t1-rag"]["chunk_ids"] == ["doc1#0", "doc2#3"]  # a voted turn: sources and prompt stay
    unvoted = answers["t2-rag"]
    assert unvoted["variant"] is None and unvoted["column"] == "A" and unvoted["claims"][0]["claim"] == "made up"
    assert not {"prompt", "tokens_in", "adapter_id", "index_id", "chunk_ids", "decoding"} & set(unvoted)
    shown = json.dumps({k: v for k, v in unvoted.items() if k != "id"})  # the fixture's ids name variants
    assert "rag" not in shown and "idx@" not in shown


def test_eval_answers_carry_their_eval_split_judges_and_sources(rated):
    [row] = export_rows(rated, "evals", "r")
    assert (row["eval_id"], row["qa_id"], row["split"], row["variant"]) == ("e1", "q1", "test", "rag")
    assert row["judges"]["g"]["score"] == 0.5 and row["chunk_ids"] == ["doc1#0", "doc2#3"] and row["gold_rank"] == 1
    assert len(export_rows(rated, "answers", "r")) == 9  # arena answers only


def test_dpo_pairs_the_voted_best_against_each_other_answer_in_trl_form(rated):
    pairs = export_rows(rated, "dpo", "r")
    assert len(pairs) == 2  # ann's vote on t1: ft against base and rag; bob's tie and the unvoted t2 give none
    assert {p["rejected_variant"] for p in pairs} == {"base", "rag"} and {p["chosen_variant"] for p in pairs} == {"ft"}
    first = pairs[0]
    assert first["prompt"] == [{"role": "user", "content": "What is WAL?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Write-ahead logging — «journal» first."}]
    assert first["rejected"][0]["role"] == "assistant" and first["chosen_stars"] == 5
    assert {p["rejected_stars"] for p in pairs} == {2, 4}
    sft = export_rows(rated, "sft", "r")
    assert [row["answer_id"] for row in sft] == ["t1-ft", "t1-rag"]  # liked, on a voted turn; t1-base had 2 stars
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "Write-ahead logging — «journal» first."}


def test_every_form_loads_back_with_datasets(rated, tmp_path):
    rows = export_rows(rated, "dpo", "r")
    assert write_rows(rows, tmp_path / "dpo.jsonl") == 2
    loaded = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    assert loaded[0]["prompt"] == rows[0]["prompt"] and loaded.column_names[:3] == ["prompt", "chosen", "rejected"]
    write_rows(export_rows(rated, "answers", "r"), tmp_path / "answers")
    folder = load_from_disk(str(tmp_path / "answers"))
    assert len(folder) == 9 and json.loads(folder[0]["judges"]) is not None
    write_rows(export_rows(rated, "ratings", "r"), tmp_path / "ratings.csv")
    with open(tmp_path / "ratings.csv", newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    with pytest.raises(ExportError, match="--what 'votes': choose one of ratings, answers, evals, dpo, sft"):
        export_rows(rated, "votes")
    with pytest.raises(ExportError, match=r"--out .*\.parquet: write a \.jsonl or \.csv file"):
        write_rows(rows, tmp_path / "x.parquet")


def test_cli_export_writes_the_file_and_says_how_many(rated, tmp_path, capsys):
    home = tmp_path / "home"
    (home / "runs" / "demo").mkdir(parents=True)  # a prepared run's folder, as `report` asks for too
    with Store.open(home=home) as store:  # the workspace's own store
        conversation(store, "demo", ["d1"])
        store.add_rating("d1", "ann", "d1-ft", stars=5, vote="best")
    out = tmp_path / "sft.jsonl"
    assert main(["export", "--name", "demo", "--what", "sft", "--out", str(out), "--home", str(home)]) == 0
    assert "1 sft row(s)" in capsys.readouterr().out and json.loads(out.read_text())["answer_id"] == "d1-ft"
    assert (
        main(["export", "--name", "demo", "--what", "dpo", "--out", str(tmp_path / "x.txt"), "--home", str(home)]) == 2
    )
    assert "write a .jsonl or .csv file" in capsys.readouterr().err
