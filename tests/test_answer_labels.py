from workbench.judge.answer_labels import label_answer, real_answer_set

Q = "How many people did Marrowgate employ in 2016?"
REF = "Marrowgate's headcount reached 85 in 2016."


def test_answers_are_labelled_by_the_references_key_facts():
    assert label_answer("It employed 85 people that year.", Q, REF, unanswerable=False) == 0
    assert label_answer("Marrowgate employed 112 people in 2016.", Q, REF, unanswerable=False) == 1
    two = "Founded on 14 March 2011 in Ostbury."
    assert label_answer("In Ostbury, in 2011.", "When and where?", two, unanswerable=False) is None  # partly


def test_abstentions_are_left_out_unless_the_question_is_unanswerable():
    abstain = "The documentation does not contain this information."
    assert label_answer(abstain, Q, REF, unanswerable=False) is None
    assert label_answer("", Q, REF, unanswerable=False) is None
    assert label_answer(abstain, "What was Q1 revenue?", abstain, unanswerable=True) == 0
    assert label_answer("Revenue was €2.1 million.", "What was Q1 revenue?", abstain, unanswerable=True) == 1


def test_a_key_fact_given_another_value_makes_the_answer_wrong_even_beside_the_right_one():
    question, reference = "What is the default hysteresis?", "The default hysteresis is 0.5 °C."
    assert label_answer("It is 0.5 °C.", question, reference, False) == 0
    assert label_answer("It is 0.5 to 1.2 °C.", question, reference, False) == 1  # a competing value
    assert label_answer("It is 0.5 °C; the alarm sounds after 30 minutes.", question, reference, False) == 0


def test_an_answer_that_asserts_nothing_is_left_out():
    question = "Until when are trade-in offers valid?"
    echo = "Question: Until when are trade-in offers valid?"
    assert label_answer(echo, question, "Until 31 December 2026.", unanswerable=False) is None
    assert label_answer(echo, question, "The documentation does not say.", unanswerable=True) is None
    assert label_answer("Trade-in offers are valid.", question, "Until 31 December 2026.", False) is None
    assert label_answer("Trade-in offers are valid until March 2025.", question, "Until 31 December 2026.", False) == 1


def test_a_reference_without_facts_is_judged_by_its_content_words():
    question, reference = "Should the diaphragm be greased?", "No; only the new O-ring gets a thin film of grease."
    assert label_answer("Only the new O-ring gets a thin film of grease.", question, reference, False) == 0
    assert label_answer("Yes, grease the diaphragm well.", question, reference, False) == 1


def test_the_set_splits_by_question_and_drops_what_the_rule_leaves_out():
    questions = {f"q{i}": {"question": Q, "answer": REF, "type": "fact"} for i in range(10)}
    answers = [
        {"id": f"{q}-{v}", "qa_id": q, "variant": v, "text": text}
        for q in questions
        for v, text in (("rag", "Marrowgate had 85 people."), ("base", "It had 12 people."), ("ft", "I don't know."))
    ]
    rows = real_answer_set(answers + [{"id": "x", "qa_id": "unknown", "variant": "rag", "text": "85"}], questions)
    assert len(rows) == 20 and {r["label"] for r in rows if r["variant"] == "rag"} == {0}
    halves = {r["qa_id"]: r["half"] for r in rows}
    assert sorted(halves.values()).count("fit") == 5 and all(
        r["half"] == halves[r["qa_id"]] for r in rows
    )  # both answers to one question land in the same half
    assert rows == real_answer_set(answers, questions)
