import json

import pytest
from fpdf import FPDF

from workbench.data.loaders import CSV_FIELD_CHARS, HTML_DEPTH, BadInputError, load_corpus, load_qa


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_markdown_and_text_keep_titles_and_ids(tmp_path):
    _write(tmp_path / "c" / "guide.md", "# Pump guide\n\n## Setup\nTurn the dial to 4.\n")
    _write(tmp_path / "c" / "sub" / "notes.txt", "Field notes\n\nThe valve opens at 0.7 bar.\n")
    docs, report = load_corpus([tmp_path / "c"], progress=False)
    by_id = {d.id: d for d in docs}
    assert set(by_id) == {"guide", "sub/notes"}
    assert by_id["guide"].title == "Pump guide" and "Turn the dial to 4." in by_id["guide"].text
    assert by_id["sub/notes"].title == "Field notes" and by_id["sub/notes"].format == "txt"
    assert len(report.files_read) == 2 and report.skipped == []


def test_html_drops_scripts_and_navigation_and_keeps_headings_and_tables(tmp_path):
    page = """<!doctype html><html><head><title>API</title><script>var secret = 1;</script></head>
    <body><nav>Home | About</nav><h1>API guide</h1><p>Tokens last <b>12</b> months.</p>
    <table><tr><th>Plan</th><th>Limit</th></tr><tr><td>Grower</td><td>120</td></tr></table>
    <ul><li>First item</li></ul><footer>Copyright</footer></body></html>"""
    docs, _ = load_corpus([_write(tmp_path / "api.html", page)], progress=False)
    text = docs[0].text
    assert docs[0].title == "API"
    assert "# API guide" in text and "Tokens last 12 months." in text
    assert "Grower | 120" in text and "- First item" in text
    for hidden in ("secret", "Home | About", "Copyright"):
        assert hidden not in text


def test_pdf_text_is_extracted(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "Heron valve manual\nThe seal kit costs 38 euros.")
    path = tmp_path / "manual.pdf"
    pdf.output(str(path))
    docs, report = load_corpus([path], progress=False)
    assert "seal kit costs 38 euros" in docs[0].text
    assert docs[0].format == "pdf" and report.skipped == []


def test_row_files_give_one_document_per_row(tmp_path):
    _write(tmp_path / "rows.jsonl", '{"id": "a", "title": "A", "text": "alpha text"}\n\n{"id": "b", "text": "beta"}\n')
    _write(tmp_path / "rows.csv", 'id,title,text\nc,C,"gamma, with comma"\nd,D,"multi\nline"\n')
    docs, _ = load_corpus([tmp_path], progress=False)
    by_id = {d.id: d for d in docs}
    assert by_id["a"].title == "A" and by_id["b"].title == "beta"
    assert by_id["c"].text == "gamma, with comma" and by_id["d"].text == "multi\nline"
    assert by_id["c"].source.endswith("rows.csv:2")


def test_binary_empty_unsupported_and_broken_pdf_files_are_skipped_with_reasons(tmp_path):
    _write(tmp_path / "ok.md", "# Fine\ntext")
    _write(tmp_path / "blob.txt", bytes(range(256)) * 4)
    _write(tmp_path / "empty.txt", "")
    _write(tmp_path / "image.png", b"\x89PNG....")
    _write(tmp_path / "fake.pdf", b"not a pdf at all")
    docs, report = load_corpus([tmp_path], progress=False)
    reasons = {entry["source"].rsplit("/", 1)[-1]: entry["reason"] for entry in report.skipped}
    assert [d.id for d in docs] == ["ok"]
    assert reasons["blob.txt"] == "binary content, not text"
    assert reasons["empty.txt"] == "empty file"
    assert "unsupported file type '.png'" in reasons["image.png"]
    assert "not a PDF" in reasons["fake.pdf"]


def test_malformed_rows_name_file_and_line_or_are_skipped_on_request(tmp_path):
    path = _write(tmp_path / "rows.jsonl", '{"id": "a", "text": "ok"}\n{"id": "b", "text": \n{"id": "c"}\n')
    with pytest.raises(BadInputError, match=r"rows\.jsonl:2: not valid JSON.*--skip-bad-rows"):
        load_corpus([path], progress=False)
    docs, report = load_corpus([path], skip_bad_rows=True, progress=False)
    assert [d.id for d in docs] == ["a"]
    assert report.skipped == [] and report.files_read == [str(path)]  # the file was read; two of its rows were not
    assert [s["source"].rsplit("/", 1)[-1] for s in report.skipped_rows] == ["rows.jsonl:2", "rows.jsonl:3"]
    assert "missing or empty 'text'" in report.skipped_rows[1]["reason"]


def test_csv_row_with_extra_fields_is_reported_with_its_line(tmp_path):
    path = _write(tmp_path / "rows.csv", "id,title,text\na,A,fine\nb,B,too,many\n")
    with pytest.raises(BadInputError, match=r"rows\.csv:3: more fields than the header"):
        load_corpus([path], progress=False)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(BadInputError, match="no such file or folder"):
        load_corpus([tmp_path / "missing"], progress=False)


def test_qa_jsonl_and_csv(tmp_path):
    rows = [
        {
            "id": "q1",
            "question": "What does the S2 cost?",
            "answer": "€1,240.",
            "doc_id": "s2",
            "type": "numeric",
            "paraphrases": ["How much is the S2?", "Price of the S2?"],
        },
        {"question": "Who founded it?", "answer": "Ilse and Dario.", "doc_ids": ["a", "b"], "type": "multi_doc"},
    ]
    path = _write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    pairs, _ = load_qa(path)
    assert pairs[0].doc_ids == ["s2"] and pairs[0].paraphrases == ["How much is the S2?", "Price of the S2?"]
    assert pairs[1].doc_id is None and pairs[1].doc_ids == ["a", "b"] and pairs[1].id == "qa-00002"
    csv_path = _write(
        tmp_path / "qa.csv", 'question,answer,paraphrases\n"Q?","A.","[""P1"", ""P2""]"\n"R?","B.",one|two\n'
    )
    pairs, _ = load_qa(csv_path)
    assert pairs[0].paraphrases == ["P1", "P2"] and pairs[1].paraphrases == ["one", "two"]


def test_extra_qa_fields_are_kept_as_single_values(tmp_path):
    rows = [
        {"id": "q1", "question": "Q?", "answer": "A.", "product": " S2 ", "difficulty": 3, "channel": "email"},
        {"id": "q2", "question": "R?", "answer": "B.", "urgent": True, "score": 0.5, "owner": None, "doc_id": "d"},
    ]
    pairs, _ = load_qa(_write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert pairs[0].fields == {"product": "S2", "difficulty": 3, "channel": "email"}
    assert pairs[1].fields == {"urgent": True, "score": 0.5, "owner": None} and pairs[1].doc_id == "d"
    csv_path = _write(
        tmp_path / "qa.csv",
        "id,question,answer,type,product,difficulty\nq1,Q?,A.,fact,S2,3\nq2,R?,B.,, ,\nq3,S?,C.,,X1\n",
    )
    pairs, _ = load_qa(csv_path)
    assert [p.fields for p in pairs] == [{"product": "S2", "difficulty": "3"}, {}, {"product": "X1"}]
    assert pairs[0].type == "fact"


@pytest.mark.parametrize(("value", "kind"), [(["S2", "S3"], "a list"), ({"name": "S2"}, "an object")])
def test_a_non_scalar_extra_qa_field_names_the_line_and_field(tmp_path, value, kind):
    path = _write(
        tmp_path / "qa.jsonl",
        json.dumps({"question": "ok?", "answer": "ok"})
        + "\n"
        + json.dumps({"question": "Q?", "answer": "A", "product": value})
        + "\n",
    )
    with pytest.raises(BadInputError) as raised:
        load_qa(path)
    assert str(raised.value).startswith(
        f"{path}:2: field 'product' must be a single value (text, number or true/false) to group results by, not {kind}"
    )
    pairs, report = load_qa(path, skip_bad_rows=True)
    assert [p.question for p in pairs] == ["ok?"] and report.skipped_rows[0]["source"] == f"{path}:2"


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"question": "Q?"}, "missing or empty 'answer'"),
        ({"question": "Q?", "answer": "A", "type": "trivia"}, "unknown type 'trivia'"),
        ({"question": "Q?", "answer": "A", "paraphrases": 3}, "'paraphrases' must be a list"),
    ],
)
def test_bad_qa_rows_name_the_line(tmp_path, row, problem):
    path = _write(
        tmp_path / "qa.jsonl", json.dumps({"question": "ok?", "answer": "ok"}) + "\n" + json.dumps(row) + "\n"
    )
    with pytest.raises(BadInputError, match=rf"qa\.jsonl:2: {problem}"):
        load_qa(path)


def test_duplicate_qa_ids_are_rejected(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        '{"id": "x", "question": "a?", "answer": "a"}\n{"id": "x", "question": "b?", "answer": "b"}\n',
    )
    with pytest.raises(BadInputError, match="duplicate id 'x'"):
        load_qa(path)


DEEP = "[" * 5000 + "]" * 5000


def test_deeply_nested_rows_are_bad_rows_not_crashes(tmp_path):
    corpus = _write(tmp_path / "rows.jsonl", '{"id": "a", "text": "ok"}\n{"id": "b", "text": ' + DEEP + "}\n")
    with pytest.raises(BadInputError, match=r"rows\.jsonl:2: JSON nested too deeply"):
        load_corpus([corpus], progress=False)
    docs, report = load_corpus([corpus], skip_bad_rows=True, progress=False)
    assert [d.id for d in docs] == ["a"] and report.skipped_rows[0]["source"] == f"{corpus}:2"
    qa = _write(tmp_path / "qa.jsonl", '{"question": "q?", "answer": "a"}\n{"question": ' + DEEP + "}\n")
    with pytest.raises(BadInputError, match=r"qa\.jsonl:2: JSON nested too deeply"):
        load_qa(qa)
    assert len(load_qa(qa, skip_bad_rows=True)[0]) == 1
    csv_qa = _write(tmp_path / "qa.csv", f'question,answer,paraphrases\nq?,a,"{DEEP}"\n')
    with pytest.raises(BadInputError, match=r"qa\.csv:2: 'paraphrases' .*nested too deeply"):
        load_qa(csv_qa)


def test_a_json_depth_limit_can_be_set(tmp_path):
    path = _write(tmp_path / "rows.jsonl", json.dumps({"text": "t", "meta": [[["x"]]]}) + "\n")
    assert len(load_corpus([path], progress=False, json_depth=4)[0]) == 1
    with pytest.raises(BadInputError, match="more than 3 levels"):
        load_corpus([path], progress=False, json_depth=3)


def test_rows_that_are_not_utf8_name_their_line(tmp_path):
    jsonl = _write(tmp_path / "rows.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(BadInputError, match=r"rows\.jsonl:2: not UTF-8 text"):
        load_corpus([jsonl], progress=False)
    assert len(load_corpus([jsonl], skip_bad_rows=True, progress=False)[0]) == 1
    csv_path = _write(tmp_path / "qa.csv", b"question,answer\nq?,a\nr?,caf\xe9\n")
    with pytest.raises(BadInputError, match=r"qa\.csv:3: not UTF-8 text.*re-save"):
        load_qa(csv_path)


def test_a_unicode_line_separator_inside_a_jsonl_string_does_not_split_the_row(tmp_path):
    row = {"id": "a", "text": "one\u2028two\x85three"}
    path = _write(tmp_path / "rows.jsonl", json.dumps(row, ensure_ascii=False) + "\n" + '{"id": "b", "text": "x"}\n')
    docs, _ = load_corpus([path], progress=False)
    assert [(d.id, d.text, d.source) for d in docs] == [("a", row["text"], f"{path}:1"), ("b", "x", f"{path}:2")]


def test_a_number_too_long_to_read_is_a_bad_row(tmp_path):
    path = _write(tmp_path / "qa.jsonl", '{"question": "q?", "answer": ' + "9" * 5000 + "}\n")
    with pytest.raises(BadInputError, match=r"qa\.jsonl:1: not valid JSON: a number has too many digits"):
        load_qa(path)


def test_a_large_csv_field_loads_and_csv_errors_name_the_row_start_line(tmp_path):
    big = "word " * 40_000  # 200 KB, over Python's default csv field limit
    path = _write(tmp_path / "rows.csv", f'id,text\na,"{big}"\n\nb,"two\nlines"\nc,three\n')
    docs, _ = load_corpus([path], progress=False)
    assert [(d.id, len(d.text), d.source) for d in docs] == [
        ("a", len(big), f"{path}:2"),
        ("b", 9, f"{path}:4"),
        ("c", 5, f"{path}:6"),
    ]
    huge = _write(tmp_path / "huge.csv", f'id,text\na,fine\n\nb,"{"x" * (CSV_FIELD_CHARS + 1)}"\nc,lost\n')
    with pytest.raises(BadInputError, match=rf"huge\.csv:4: a field is longer than {CSV_FIELD_CHARS:,} characters"):
        load_corpus([huge], skip_bad_rows=True, progress=False)


def test_a_csv_header_with_a_repeated_column_is_an_error(tmp_path):
    path = _write(tmp_path / "qa.csv", "question,answer,answer\nq?,a,b\n")
    with pytest.raises(BadInputError, match=r"qa\.csv:1: column 'answer' appears twice in the header"):
        load_qa(path)


def test_a_numeric_answer_is_text_and_ids_may_be_integers(tmp_path):
    rows = [
        {"id": 0, "question": "How many zones?", "answer": 42, "doc_id": 7},
        {"id": "b", "question": "Ratio?", "answer": 0.5, "doc_ids": [7, "x"]},
    ]
    pairs, _ = load_qa(_write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert [(p.id, p.answer, p.doc_id, p.doc_ids) for p in pairs] == [
        ("0", "42", "7", ["7"]),
        ("b", "0.5", None, ["7", "x"]),
    ]
    docs, _ = load_corpus([_write(tmp_path / "rows.jsonl", '{"id": 0, "text": "zero"}\n')], progress=False)
    assert docs[0].id == "0"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"question": "Q?", "answer": True}, "'answer' must be text or a number, not true/false"),
        ({"question": "Q?", "answer": float("nan")}, "'answer' must be text or a finite number"),
        ({"question": ["Q?"], "answer": "A"}, "'question' must be text, not a list"),
        ({"question": "Q?", "answer": "A", "id": {"n": 1}}, "'id' must be text or a whole number, not an object"),
        ({"question": "Q?", "answer": "A", "id": 1.5}, "'id' must be text or a whole number, not a number"),
        ({"question": "Q?", "answer": "A", "doc_id": ["d"]}, "'doc_id' must be text or a whole number, not a list"),
        ({"question": "Q?", "answer": "A", "doc_ids": [True]}, "'doc_ids' must be a list of document ids"),
        ({"question": "Q?", "answer": "A", "type": ["fact"]}, "'type' must be text, not a list"),
        ({"question": "Q?", "answer": "A", "paraphrases": [None]}, "'paraphrases' must be a list of strings"),
        ({"question": "Q?", "answer": "A", "rank": float("inf")}, "field 'rank' must be a finite number"),
    ],
)
def test_wrong_typed_qa_values_name_the_line_and_field(tmp_path, row, problem):
    path = _write(tmp_path / "qa.jsonl", '{"question": "ok?", "answer": "ok"}\n' + json.dumps(row) + "\n")
    with pytest.raises(BadInputError) as raised:
        load_qa(path)
    assert str(raised.value).startswith(f"{path}:2: {problem}")
    assert "--skip-bad-rows" in str(raised.value)
    pairs, report = load_qa(path, skip_bad_rows=True)
    assert len(pairs) == 1 and report.skipped_rows[0]["reason"].startswith(problem)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"id": {"n": 1}, "text": "t"}, "'id' must be text or a whole number, not an object"),
        ({"id": True, "text": "t"}, "'id' must be text or a whole number, not true/false"),
        ({"title": ["A", "B"], "text": "t"}, "'title' must be text, not a list"),
        ({"title": 3, "text": "t"}, "'title' must be text, not a number"),
        ({"text": ["t"]}, "missing or empty 'text' field"),
        ([1, 2], "expected a JSON object, got a list"),
        ("text", "expected a JSON object, got a string"),
    ],
)
def test_wrong_typed_corpus_values_name_the_line_and_field(tmp_path, row, problem):
    path = _write(tmp_path / "rows.jsonl", '{"text": "ok"}\n' + json.dumps(row) + "\n")
    with pytest.raises(BadInputError) as raised:
        load_corpus([path], progress=False)
    assert str(raised.value).startswith(f"{path}:2: {problem}")


def test_html_nested_deeper_than_real_pages_is_skipped_with_a_reason(tmp_path):
    path = _write(tmp_path / "deep.html", "<div>" * (HTML_DEPTH + 1) + "text")
    _write(tmp_path / "fine.html", "<div>" * (HTML_DEPTH - 1) + "text")
    docs, report = load_corpus([tmp_path], progress=False)
    assert [d.id for d in docs] == ["fine"]
    assert report.skipped == [{"source": str(path), "reason": f"HTML nested more than {HTML_DEPTH} tags deep"}]
