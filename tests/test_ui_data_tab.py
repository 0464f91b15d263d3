"""The Data tab's messages after a prepare: skipped uploads named as the user named them (in the message and in the
quality report, not by their workspace path), and a warning when the run has no QA set or no test questions."""

import json

from test_upload import files  # noqa: F401 - the fixture

from workbench.data.quality import literal
from workbench.data.upload import prepare_upload
from workbench.ui.data_tab import prepared_html, quality_text
from workbench.workspace import read_json, run_paths, write_json_atomic


def test_skipped_uploads_are_named_as_uploaded_and_no_qa_set_points_to_synthetic_pairs(home, files):  # noqa: F811
    upload, report = prepare_upload("my_docs", files, home=home, progress=False)
    said = prepared_html("my_docs", upload, report, replaced=False)
    assert "<b>setup.exe</b>: unsupported file type" in said and str(home) not in said
    assert "No QA set" in said and "Synthetic QA pairs" in said
    shown = quality_text(home, "my_docs")  # the Markdown prepare wrote: its table cells escaped (`my\_docs`)
    assert "| setup.exe | unsupported file type" in shown and str(home) not in shown
    written = (home / "runs" / "my_docs" / "quality.md").read_text()
    assert literal(str(upload.corpus)) in written  # the file itself keeps the path, escaped as Markdown


def test_a_qa_set_without_test_questions_says_eval_has_nothing_to_measure(home, files, tmp_path):  # noqa: F811
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "How long is the return window?", "answer": "45 days"}) + "\n")
    upload, report = prepare_upload("kettles", files[:2], qa, home=home, progress=False)
    assert report["splits"]["sizes"]["test"] == 0
    said = prepared_html("kettles", upload, report, replaced=False)
    assert "The test split holds no questions" in said and "No QA set" not in said
    manifest = run_paths("kettles", home).manifest  # what `synth --apply` records once pairs went in
    write_json_atomic(
        manifest,
        read_json(manifest)
        | {"synth": {"applied_at": "2026-12-01T10:00:00+00:00", "added": {"train": 5, "val": 1, "test": 2}}},
    )
    shown = quality_text(home, "kettles")
    assert "Synthetic QA pairs applied since** (2026-12-01 10:00 UTC): train +5, val +1, test +2 rows" in shown
