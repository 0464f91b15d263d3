import pytest

from workbench.text_metrics import exact_match, normalize, token_f1


def test_normalize_drops_case_punctuation_and_articles():
    assert normalize("The S3 Pro keeps 30 days, an hour.") == ["s3", "pro", "keeps", "30", "days", "hour"]


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("30 days", "30 days", 1.0),
        ("It keeps 30 days of readings.", "30 days", 0.5),  # precision 2/6, recall 1
        ("7 days", "30 days", 0.5),
        ("no overlap", "30 days", 0.0),
        ("", "", 1.0),
        ("", "30 days", 0.0),
        ("days days days", "days", 0.5),  # repeated tokens count once per reference occurrence
    ],
)
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_exact_match_ignores_formatting_only():
    assert exact_match("The answer: 42!", "answer 42") and not exact_match("42 days", "42")
