import csv
import json

import pytest

from workbench.config import Config
from workbench.data.examples import qa_example
from workbench.data.loaders import BadInputError, load_qa
from workbench.data.prepare import prepare
from workbench.eval.runner import load_questions
from workbench.records import Example, read_split
from workbench.workspace import read_jsonl, run_paths

SPLITS = ("train", "val", "test")
PAIRS = [
    {"id": "q1", "question": "How fast does the X200 pump run?", "answer": "40 litres per minute.", "doc_id": "pump"},
    {
        "id": "q2",
        "question": "Which pump has a twelve month warranty and how do I return it?",
        "answer": "The X200; return it within 30 days.",
        "doc_id": "pump",
        "doc_ids": ["pump", "returns"],
        "type": "multi_doc",
        "paraphrases": ["What warranty does the X200 have, and what is the return window?"],
    },
    {"id": "q3", "question": "How long is the return window?", "answer": "30 days.", "doc_ids": ["returns"]},
    {
        "id": "q4",
        "question": "Who is the CEO of the moon?",
        "answer": "The documents do not say.",
        "type": "unanswerable",
    },
    {"id": "q5", "question": "What colour is the hub?", "answer": "The hub is green.", "doc_id": "hub", "type": "fact"},
    {"id": "q6", "question": "How is the hub charged?", "answer": "Over USB-C in two hours.", "doc_id": "hub"},
]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "pump.md").write_text("# Pump\nThe X200 pump runs at 40 litres per minute and has a 12 month warranty.")
    (folder / "returns.md").write_text("# Returns\nAny order can be returned within 30 days of delivery for a refund.")
    (folder / "hub.md").write_text("# Hub\nThe hub is green and charges over USB-C in about two hours from empty.")
    return folder


def _all_splits(paths) -> list[Example]:
    return [example for name in SPLITS for example in read_split(paths.split(name))]


def test_a_prepared_split_reads_back_as_its_examples(home, tmp_path, corpus):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS))
    prepare("tiny", [corpus], qa, home=home, progress=False)
    paths = run_paths("tiny", home)
    for name in SPLITS:
        assert [e.to_dict() for e in read_split(paths.split(name))] == read_jsonl(paths.split(name))
    examples = _all_splits(paths)
    pairs = {pair.id: pair for pair in load_qa(qa)[0]}
    assert sorted(e.id for e in examples) == sorted(pairs)
    assert all(e == qa_example(pairs[e.id], e.group) for e in examples)
    assert all(e.is_question for e in examples)
    gold = {e.id: e.gold_doc_ids for e in examples}
    assert gold == {
        "q1": ["pump"],
        "q2": ["pump", "returns"],
        "q3": ["returns"],
        "q4": [],
        "q5": ["hub"],
        "q6": ["hub"],
    }


FIELDS = {
    "q1": {"product": "X200", "difficulty": 2},
    "q2": {"product": "X200", "channel": "email"},
    "q3": {"channel": "chat", "difficulty": 1},
    "q5": {"product": "hub"},
    "q6": {"product": "hub", "difficulty": 3},
}
"""Extra QA fields per pair (q4 has none); every split of the test below holds some."""


def _write_qa(path, pairs) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
        return
    columns = ["id", "question", "answer", "doc_id", "product", "difficulty", "channel"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(pairs)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_extra_qa_fields_travel_into_the_prepared_splits_and_the_eval_questions(home, tmp_path, corpus, suffix):
    qa = tmp_path / f"qa{suffix}"
    _write_qa(qa, [pair | FIELDS.get(pair["id"], {}) for pair in PAIRS])
    config = Config(prepare={"split": {"train": 0.4, "val": 0.3, "test": 0.3}})  # every split gets questions
    prepare("fields", [corpus], qa, config, home=home, progress=False)
    paths = run_paths("fields", home)
    as_read = FIELDS if suffix == ".jsonl" else {k: {n: str(v) for n, v in f.items()} for k, f in FIELDS.items()}
    expected = {pair["id"]: as_read.get(pair["id"], {}) for pair in PAIRS}
    rows = [row for name in SPLITS for row in read_jsonl(paths.split(name))]
    assert {row["id"]: row["fields"] for row in rows} == expected
    assert {e.id: e.fields for e in _all_splits(paths)} == expected
    for name in ("val", "test"):
        questions = load_questions("fields", name, home)
        assert {q.id: q.fields for q in questions} == {e.id: e.fields for e in read_split(paths.split(name))}
        assert any(q.fields for q in questions)
    assert {q.id: q.fields for q in load_questions("fields", str(qa), home)} == expected


def test_corpus_examples_are_not_questions(home, corpus):
    prepare("corpus-only", [corpus], home=home, progress=False)
    examples = _all_splits(run_paths("corpus-only", home))
    assert examples and all(e.origin == "corpus" and not e.is_question for e in examples)
    assert all(e.gold_doc_ids == [e.doc_id] for e in examples)


def _example(**changes) -> Example:
    base = {"id": "x", "messages": [], "origin": "qa", "kind": "qa", "group": 0, "question": "Q?", "answer": "A."}
    return Example(**(base | changes))


def test_gold_doc_ids_from_doc_ids_or_doc_id_or_none():
    assert _example(doc_id="a").gold_doc_ids == ["a"]
    assert _example(doc_id="a", doc_ids=["b", "a"]).gold_doc_ids == ["b", "a"]
    assert _example(doc_ids=["b"]).gold_doc_ids == ["b"]
    assert _example().gold_doc_ids == []
    assert _example(origin="synthetic").is_question and not _example(origin="corpus").is_question


def _line(**changes) -> str:
    return json.dumps(_example(doc_id="a", doc_ids=["a"]).to_dict() | changes)


def test_an_older_file_without_the_optional_fields_reads(tmp_path):
    path = tmp_path / "runs" / "old" / "data" / "test.jsonl"
    path.parent.mkdir(parents=True)
    optional = ("doc_id", "doc_ids", "type", "paraphrases", "fields")
    row = {k: v for k, v in json.loads(_line(fields={"product": "S2"})).items() if k not in optional}
    path.write_text(json.dumps(row) + "\n\n" + _line(id="y", extra="ignored", fields={"product": "S2"}) + "\n")
    first, second = read_split(path)
    assert (first.doc_id, first.doc_ids, first.type, first.paraphrases, first.fields) == (None, [], None, [], {})
    assert second.id == "y" and second.gold_doc_ids == ["a"] and second.fields == {"product": "S2"}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        (json.dumps({k: v for k, v in json.loads(_line()).items() if k != "answer"}), "missing field 'answer'"),
        (_line(group="3"), "field 'group' has the wrong type"),
        (_line(group=True), "field 'group' has the wrong type"),
        (_line(doc_ids="a"), "field 'doc_ids' has the wrong type"),
        (_line(messages=[{"role": "user"}]), "field 'messages' has the wrong type"),
        (_line(origin="web"), "field 'origin' is 'web', not one of qa, synthetic, corpus"),
        (_line(fields="S2"), "field 'fields' has the wrong type"),
        (_line(fields=["S2"]), "field 'fields' has the wrong type"),
        (_line(fields={"product": ["S2"]}), "field 'fields' has a non-scalar value for 'product'"),
        (_line(fields={"ok": 1, "tags": {"a": 1}}), "field 'fields' has a non-scalar value for 'tags'"),
    ],
)
def test_a_bad_line_names_the_file_line_and_field(tmp_path, bad, field):
    path = tmp_path / "runs" / "myrun" / "data" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(_line() + "\n" + bad + "\n")
    with pytest.raises(BadInputError) as raised:
        read_split(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:2: ") and field in message
    assert "re-run `workbench prepare --name myrun`" in message


def test_a_missing_split_file_says_to_prepare(tmp_path):
    with pytest.raises(BadInputError, match="no such split file; re-run `workbench prepare --name gone`"):
        read_split(tmp_path / "runs" / "gone" / "data" / "val.jsonl")
