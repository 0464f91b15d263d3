import json

import pytest
from fpdf import FPDF

from workbench.data.loaders import BadInputError, load_corpus, load_qa


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
    with pytest.raises(BadInputError, match=r"rows\.jsonl:2: invalid JSON.*--skip-bad-rows"):
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
