"""Every input reader, fed random bytes, invalid UTF-8, deep or wrong-typed JSON and huge fields, either reads the
input, skips what it cannot use with a reason, or raises `BadInputError`; any other exception fails. `workbench
check` given input it rejects leaves the previous output untouched."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from workbench.data.loaders import CSV_FIELD_CHARS, BadInputError, load_corpus, load_qa
from workbench.judge.checking import check_file, read_rows

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

KEYS = ("id", "title", "text", "question", "answer", "doc_id", "doc_ids", "type", "paraphrases", "context", "tag")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["fact", "", " "]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
rows = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), json_values, max_size=6) | json_values
json_lines = st.lists(rows, max_size=5).map(lambda values: "".join(json.dumps(v) + "\n" for v in values).encode())


@st.composite
def deep_json(draw) -> bytes:
    """A row with one field nested far deeper than any real row: past the depth limit or the parser's recursion."""
    depth = draw(st.sampled_from([65, 1000, 5000]))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    key = draw(st.sampled_from(KEYS))
    return (
        json.dumps({"question": "q?", "answer": "a", "text": "t", "context": "c"})[:-1] + f', "{key}": '
    ).encode() + (opening * depth + "1" + closing * depth + "}\n").encode()


def _invalid_utf8(text: str, bad: bytes, tail: str) -> bytes:
    return text.encode() + bad + tail.encode()


invalid_utf8 = st.builds(
    _invalid_utf8, st.text(max_size=30), st.sampled_from([b"\xff", b"\xc3", b"caf\xe9", b"\xed\xa0\x80"]), st.text()
)
any_bytes = st.binary(max_size=600) | invalid_utf8 | json_lines | deep_json()

csv_text = st.lists(
    st.sampled_from([*'ab,"\n\r \t|[]{}é', "\x00", "\u2028", "[[[[", '"[1, 2]"', '"' + "[" * 3000 + '"']), max_size=80
).map("".join)
csv_files = (
    st.builds(
        lambda header, body: (header + "\n" + body).encode(),
        st.sampled_from(["id,title,text", "question,answer,tag,doc_ids", ""]),
        csv_text,
    )
    | st.binary(max_size=300)
    | invalid_utf8
)


@st.composite
def huge_csv(draw) -> bytes:
    """A CSV row whose field is large (over Python's default limit) or over ours, with rows around it."""
    size = draw(st.sampled_from([200_000, CSV_FIELD_CHARS + 1]))
    column = draw(st.sampled_from(["text", "answer", "tag"]))
    return (
        f'id,question,answer,title,text,tag\na,q?,a,t,x,y\n\nb,q?,a,t,x,"{column[0] * size}"\nc,q?,a,t,x,y\n'.encode()
    )


def _in_folder(name: str, content: bytes):
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.write_bytes(content)
    return folder, path


def assert_corpus_read_or_refused(path: Path, skip_bad_rows: bool) -> None:
    try:
        docs, report = load_corpus([path], skip_bad_rows=skip_bad_rows, progress=False)
    except BadInputError as exc:
        assert str(exc).startswith(str(path))
        return
    assert len(report.files_read) + len(report.skipped) == 1
    assert all(entry["reason"] for entry in report.skipped + report.skipped_rows)
    assert len({d.id for d in docs}) == len(docs)
    for doc in docs:
        assert all(isinstance(value, str) for value in (doc.id, doc.title, doc.text)) and doc.text.strip()


def assert_qa_read_or_refused(path: Path, skip_bad_rows: bool) -> None:
    try:
        pairs, report = load_qa(path, skip_bad_rows=skip_bad_rows)
    except BadInputError as exc:
        assert str(exc).startswith(str(path))
        return
    assert report.files_read == [str(path)] and all(entry["reason"] for entry in report.skipped_rows)
    assert len({p.id for p in pairs}) == len(pairs)
    for pair in pairs:
        assert isinstance(pair.question, str) and pair.question and isinstance(pair.answer, str) and pair.answer
        assert all(isinstance(doc_id, str) for doc_id in [*pair.doc_ids, pair.doc_id or ""])


@FUZZ
@given(content=any_bytes, skip_bad_rows=st.booleans())
def test_corpus_jsonl_rows(content, skip_bad_rows):
    folder, path = _in_folder("rows.jsonl", content)
    with folder:
        assert_corpus_read_or_refused(path, skip_bad_rows)


@FUZZ
@given(content=csv_files | huge_csv(), skip_bad_rows=st.booleans())
def test_corpus_csv_rows(content, skip_bad_rows):
    folder, path = _in_folder("rows.csv", content)
    with folder:
        assert_corpus_read_or_refused(path, skip_bad_rows)


@FUZZ
@given(content=any_bytes | csv_files, suffix=st.sampled_from([".md", ".txt", ".html"]))
@example(content="\u2028 \u3000".encode(), suffix=".md")  # whitespace only to Python, not to bytes.strip()
@example(content=b"<p> </p>", suffix=".html")
def test_corpus_documents(content, suffix):
    folder, path = _in_folder("doc" + suffix, content)
    with folder:
        assert_corpus_read_or_refused(path, skip_bad_rows=False)


@FUZZ
@given(content=any_bytes, skip_bad_rows=st.booleans())
def test_qa_jsonl(content, skip_bad_rows):
    folder, path = _in_folder("qa.jsonl", content)
    with folder:
        assert_qa_read_or_refused(path, skip_bad_rows)


@FUZZ
@given(content=csv_files | huge_csv(), skip_bad_rows=st.booleans())
def test_qa_csv(content, skip_bad_rows):
    folder, path = _in_folder("qa.csv", content)
    with folder:
        assert_qa_read_or_refused(path, skip_bad_rows)


@FUZZ
@given(content=any_bytes, indexed=st.booleans())
def test_check_input(content, indexed):
    folder, path = _in_folder("answers.jsonl", content)
    with folder:
        try:
            checked = read_rows(path, indexed=indexed)
        except BadInputError as exc:
            assert str(exc).startswith(str(path))
        else:
            for row in checked:
                assert isinstance(row["question"], str) and isinstance(row["answer"], str)
                assert isinstance(row["id"], str | int) and not isinstance(row["id"], bool)
        if indexed:
            return
        try:
            read_rows(path, indexed=False)
        except BadInputError:
            _assert_check_keeps_previous_output(path)


def _assert_check_keeps_previous_output(path: Path) -> None:
    """A rejected input fails before any model loads and leaves the output as it was, with no temp files."""
    output = path.with_name("checked.jsonl")
    output.write_text('{"previous": true}\n')
    with pytest.raises(BadInputError):
        check_file(path, output, progress=False)
    assert output.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, output.name])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(255, -1, -1)), "answers.jsonl:1: not UTF-8 text"),
        (b'{"question": "q", "answer": "caf\xe9", "context": "c"}\n', "answers.jsonl:1: not UTF-8 text"),
        (b'{"question": "q", "answer": "a", "context": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested too deeply"),
        (b'{"id": {"n": 1}, "question": "q", "answer": "a", "context": "c"}\n', "`id` must be a string or a whole"),
        (b'{"question": "q", "answer": ' + b"9" * 5000 + b', "context": "c"}\n', "a number has too many digits"),
    ],
)
def test_check_input_problems_name_the_line(tmp_path, content, message):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        read_rows(path, indexed=True)
    _assert_check_keeps_previous_output(path)


def test_check_input_reads_a_byte_order_mark_and_fills_missing_ids(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = [{"question": "q", "answer": "a", "context": "c", "id": None}, {"id": 7, "question": "r", "answer": "b"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8-sig")
    assert [row["id"] for row in read_rows(path, indexed=True)] == ["answers-1", 7]
