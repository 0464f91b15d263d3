"""Checkable facts: one extractor for key-fact recall and the hallucination detector."""

import json

from tests.conftest import DEMO
from workbench.judge.facts import contradicts, extract_facts, facts_agree

QA = {row["id"]: row for row in map(json.loads, (DEMO / "qa.jsonl").read_text().splitlines())}


def facts(text: str) -> set[tuple]:
    return {(f.kind, f.value, f.unit) for f in extract_facts(text)}


def test_key_facts_of_a_demo_reference_leave_out_what_the_question_states():
    row = QA["A-001"]  # Who founded Marrowgate Systems, and when and where was it founded?
    facts = extract_facts(row["answer"], row["question"])
    assert [f.text for f in facts] == ["14 March 2011", "Ostbury", "Kellmark", "Ilse Varnhold", "Dario Quennell"]
    assert [f.kind for f in facts] == ["date", "name", "name", "name", "name"]
    assert "Marrowgate Systems" in [f.text for f in extract_facts(row["answer"])]


def test_key_facts_find_money_units_ranges_percentages_and_codes():
    keys = [
        f.key for f in extract_facts("The Skylark S2 runs from 100–240 V AC and costs €1,240; the WP-30 keeps 30 days.")
    ]
    assert keys == ["name:skylark", "code:S2", "num:100 v", "num:240 v", "num:1240 eur", "code:WP30", "num:30 day"]
    assert [f.key for f in extract_facts("About 40% use Canopy OS 4.3.0 at 09:00.")] == [
        "num:40 %",
        "name:canopy os",
        "version:4.3.0",
        "time:9:00",
    ]


def test_list_markers_and_sentence_openers_are_no_facts():
    facts = extract_facts("1) Switch off the controller; 2) set the address. Customer support has 11 field engineers.")
    assert [f.key for f in facts] == ["num:11"]


def test_facts_are_normalised_numbers_units_money_dates_and_codes():
    assert facts("a fee of 1,200 euros") == facts("a fee of €1200") == {("number", "1200", "eur")}
    assert facts("a 30-day window") == facts("within 30 days") == facts("thirty days") == {("number", "30", "day")}
    assert facts("a 12% fee") == facts("12 percent") == {("number", "12", "%")}
    assert facts("on 14 March 2011") == facts("on March 14, 2011") == facts("on 2011-03-14")
    assert facts("the Wren WP-40 probe") == {("code", "WP40", None), ("name", "wren", None)}  # no number 40
    march, day = extract_facts("in March 2011")[0], extract_facts("14 March 2011")[0]
    assert facts_agree(march, day), "a month agrees with a day in it"
    assert facts("Ilse Varnhold's company") == {("name", "ilse varnhold", None)}


def test_the_same_subject_with_another_number_is_a_contradiction():
    claimed = extract_facts("a 30-day return window")[0]
    assert contradicts(claimed, extract_facts("the 45-day return window")[0])
    assert not contradicts(claimed, extract_facts("within 30 days")[0])
    assert not contradicts(claimed, extract_facts("up to 16 zones")[0]), "another quantity is not a contradiction"


def test_spans_point_at_the_fact_in_the_original_text():
    text = "1) Keep “thirty” days – or 1,200 units – of the WP-40’s data at 09:00."
    for fact in extract_facts(text):
        start, end = fact.span
        assert text[start:end] in {"thirty", "1,200", "WP-40", "09:00"}, fact
    number = next(f for f in extract_facts("It costs €1,240.") if f.kind == "number")
    assert "It costs €1,240."[slice(*number.span)] == "1,240", "a number's span is its digits, not its sign"


def test_a_number_without_a_unit_keeps_the_word_it_counts():
    assert facts("up to 16 zones") == {("number", "16", "zone")}
    assert facts("11 field engineers") == {("number", "11", "field")}
    assert facts("in 2011 by the founders") == {("number", "2011", None)}, "a function word counts nothing"
    assert [f.key for f in extract_facts("up to 16 zones")] == ["num:16"], "the counted word is not part of the key"


def test_another_time_is_a_contradiction_but_another_version_is_not():
    nine, ten = extract_facts("at 09:00")[0], extract_facts("at 10:00")[0]
    assert contradicts(nine, ten) and not contradicts(nine, extract_facts("at 9:00 am")[0])
    assert not contradicts(extract_facts("Canopy OS 4.3.0")[-1], extract_facts("Canopy OS 4.4.0")[-1])


def test_a_currency_sign_belongs_to_its_own_number_only():
    assert [f.key for f in extract_facts("3 × €420 = €1,260")] == ["num:3", "num:420 eur", "num:1260 eur"]
    assert [f.key for f in extract_facts("240 × 180 × 65 mm")] == ["num:240 mm", "num:180 mm", "num:65 mm"]
