import pytest

from workbench.limits import JSONInputError, depth, parse_json


def test_parse_json_turns_every_failure_into_one_clear_error():
    assert parse_json('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    for bad, why in (
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("[" * 65 + "]" * 65, "nested too deeply"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"a": }', "not valid JSON"),
        ("1" * 5000, "not valid JSON"),
    ):
        with pytest.raises(JSONInputError, match=why):
            parse_json(bad)
    assert parse_json("[" * 64 + "]" * 64, max_depth=64)


def test_depth_counts_containers_without_recursing():
    assert depth(3) == 0 and depth([]) == 1 and depth({"a": [[]]}) == 3
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert depth(deep) == 100_001
