import json
import textwrap

import pytest

from tests.conftest import DEMO
from workbench.data.loaders import BadInputError
from workbench.judge import (
    REFERENCE_JUDGES,
    Judgement,
    LLMJudge,
    LocalJudgeModel,
    PairwiseJudge,
    is_abstention,
    key_fact_recall,
    load_rubric,
    parse_score,
    parse_verdict,
    rouge_l,
    rubric_names,
    run_judges,
)

QA = {row["id"]: row for row in map(json.loads, (DEMO / "qa.jsonl").read_text().splitlines())}
FAST_JUDGES = ["token_f1", "exact_match", "contains", "key_facts"]


def item(qa_id: str, text: str) -> dict:
    row = QA[qa_id]
    return {"question": row["question"], "text": text, "reference": row["answer"], "type": row["type"]}


# -- key-fact recall -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("It had 1,200 employees.", "The headcount was 1200."),
        ("It keeps 30 days of readings.", "It has a 30-day buffer."),
        ("They invested €85,000.", "They put in 85000 euros."),
        ("It has two sensing depths.", "There are 2 depths."),
        ("It runs from 100–240 V.", "Anything from 100 to 240 volts works."),
        ("Founded on 14 March 2011.", "It was founded on March 14, 2011."),
        ("The team meets at 09:00.", "They meet at 9:00."),
        ("Revenue was €1.2 million.", "Revenue was 1,200,000 EUR."),
        ("About 40% take part.", "Some 40 percent take part."),
        ("The WP-60 measures at 30 cm and 60 cm.", "It measures at 30 and 60 cm on the WP-60."),
        ("Released in September 2024.", "It came out on 2 September 2024."),
    ],
)
def test_equal_facts_written_differently_match(reference, answer):
    result = key_fact_recall(answer, reference)
    assert result.recall == 1.0, result.missing


def test_key_fact_recall_lists_the_missing_facts():
    row = QA["A-001"]
    result = key_fact_recall("It was founded in Ostbury in 2011 by Ilse Varnhold.", row["answer"], row["question"])
    assert result.recall == pytest.approx(2 / 5)
    assert result.found == ["Ostbury", "Ilse Varnhold"]
    assert result.missing == ["14 March 2011", "Kellmark", "Dario Quennell"]


def test_a_different_number_or_unit_is_missing():
    assert key_fact_recall("It costs €1,420.", "It costs €1,240.").missing == ["€1,240"]
    assert key_fact_recall("It keeps 30 hours.", "It keeps 30 days.").missing == ["30 days"]


# -- abstention ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "The documentation does not contain this information.",
        "The sources do not say how much the Skylark S3 Pro wall bracket costs.",
        "I'm sorry, but the provided sources don't mention the price of a wall bracket for the S3 Pro.",
        "This is not mentioned in the documentation.",
        "There is no information about that in the context.",
        "I cannot find that in the context provided.",
        "Unfortunately, I do not have information on that.",
    ],
)
def test_abstentions(text):
    assert is_abstention(text, QA["A-095"]["question"])


@pytest.mark.parametrize(
    "text",
    [
        "I don't know the exact date, but it was 2011.",
        "I'm not sure, but I think it was founded in Ostbury.",
        "The S3 Pro costs €2,180; the documentation does not mention a wall bracket.",
        "A wall bracket costs €35.",
        "Wi-Fi is not available on the S2.",
        "",
    ],
)
def test_answers_that_assert_or_do_not_abstain(text):
    assert not is_abstention(text, QA["A-095"]["question"])


def test_unanswerable_questions_score_the_abstention_on_every_reference_judge():
    abstains = run_judges(item("A-095", "The sources do not say what the bracket costs."), FAST_JUDGES + ["rouge_l"])
    asserts = run_judges(item("A-095", "A wall bracket for the S3 Pro costs €35."), FAST_JUDGES + ["rouge_l"])
    assert [j.score for j in abstains] == [1.0] * 5
    assert [j.score for j in asserts] == [0.0] * 5
    assert abstains[0].details == {"unanswerable": True, "abstained": True}
    # A reference that is itself an abstention marks the question unanswerable even without a type.
    untyped = item("A-095", "I don't know.") | {"type": None}
    assert run_judges(untyped, ["token_f1"])[0].score == 1.0


# -- reference judges ------------------------------------------------------------------------------------------------


def test_reference_judges_on_an_answerable_demo_question():
    reference = QA["A-015"]["answer"]  # The Skylark S2 costs €1,240.
    results = {j.judge: j for j in run_judges(item("A-015", "The Skylark S2 costs €1,240 including VAT."), FAST_JUDGES)}
    assert results["contains"].score == 1.0 and results["exact_match"].score == 0.0
    assert 0 < results["token_f1"].score < 1
    assert results["key_facts"].score == 1.0 and results["key_facts"].details["found"] == ["€1,240"]
    assert run_judges(item("A-015", reference), ["exact_match"])[0].score == 1.0


def test_missing_reference_and_broken_judges_give_a_reason_not_a_number():
    no_reference = {"question": "What?", "text": "Something.", "reference": "", "type": "fact"}
    assert run_judges(no_reference, ["token_f1"]) == [
        Judgement("token_f1", None, "no reference answer for this question")
    ]

    def broken(_item):
        raise RuntimeError("embedder missing")

    failed = run_judges(no_reference, judges={"broken": broken})[0]
    assert failed.score is None and "RuntimeError: embedder missing" in failed.reason
    with pytest.raises(BadInputError, match="unknown judge"):
        run_judges(no_reference, ["nope"])
    with pytest.raises(BadInputError, match="'text'"):
        run_judges({"question": "Q?"}, ["token_f1"])
    assert set(FAST_JUDGES + ["rouge_l", "embedding"]) == set(REFERENCE_JUDGES)


def test_rouge_through_the_local_evaluate_module_equals_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for row in list(QA.values())[:5]:
        answer = row["paraphrases"][0]
        assert rouge_l(answer, row["answer"]) == pytest.approx(scorer.score(row["answer"], answer)["rougeL"].fmeasure)


def test_embedding_similarity_ranks_a_paraphrase_above_an_unrelated_answer():
    judge = REFERENCE_JUDGES["embedding"]
    close = judge(item("A-002", "The first product Marrowgate shipped was the Wren WP-30 soil probe (2013)."))
    far = judge(item("A-002", "Bettina Larch leads sales and marketing."))
    assert close.score > far.score and close.score > 0.7
    assert close.details["embedder"] == "all-minilm-l6-v2" and -1 <= far.details["cosine"] <= 1


# -- LLM judge: score parsing and rubrics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 4", 4),
        ("The answer is mostly right.\nScore: 4", 4),
        ("**Score:** 5", 5),
        ("I would give it a score of 3.", 3),
        ("4/5", 4),
        ("Rating: 2 out of 5", 2),
        ('{"score": 4, "reason": "fine"}', 4),
        ('```json\n{"Score": "3"}\n```', 3),
        ("[[5]]", 5),
        ("4", 4),
        ("4.", 4),
        ("Score: 3.5", 3.5),
    ],
)
def test_parse_score_reads_common_formats(reply, score):
    assert parse_score(reply, 1, 5) == (score, None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("Good answer!", "no score found"),
        ("Score: 7", "outside the 1-5 scale"),
        ("Score: 0", "outside the 1-5 scale"),
        ("-1", "outside the 1-5 scale"),
        ("8/10", "out of 10"),
        ("Score: 3. On reflection, Score: 4.", "several scores"),
        ('{"score": "high"}', "not a number"),
    ],
)
def test_parse_score_failures_say_why(reply, reason):
    score, why = parse_score(reply, 1, 5)
    assert score is None and reason in why


def test_every_shipped_rubric_loads():
    assert {"correctness", "groundedness", "helpfulness", "pairwise"} <= set(rubric_names())
    for name in rubric_names():
        rubric = load_rubric(name)
        assert rubric.name == name and rubric.description
    assert load_rubric("groundedness").placeholders >= {"context", "answer"}


GOOD_RUBRIC = """\
    name: {name}
    description: d
    prompt: "Q: {{question}} A: {{answer}}"
    scale: {{min: 1, max: 5}}
    output: "Score: N from {{min}} to {{max}}"
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('prompt: "Q: {{question}} A: {{answer}}"', 'prompt: "{{answer}} {{opinion}}"'),
            "prompt: unknown placeholder",
        ),
        (('prompt: "Q: {{question}} A: {{answer}}"', 'prompt: "{{question}}"'), "must contain {answer}"),
        (('prompt: "Q: {{question}} A: {{answer}}"', 'prompt: "{{answer}} {{"'), "literal braces"),
        (("    scale: {{min: 1, max: 5}}\n", ""), "scale: a score rubric needs a scale"),
        (("{{min: 1, max: 5}}", "{{min: 5, max: 1}}"), "scale: "),
        (("description: d", "descripton: d"), "descripton: Extra inputs"),
        (("name: {name}", "name: other"), "name: 'other' differs from the file name"),
    ],
)
def test_rubric_validation_names_the_file_and_field(tmp_path, change, message):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(GOOD_RUBRIC.replace(*change)).format(name="mine"))
    with pytest.raises(BadInputError, match="mine.yaml") as error:
        load_rubric(path)
    assert message in str(error.value)


def test_a_good_rubric_file_loads_and_unknown_names_list_the_shipped_ones(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(GOOD_RUBRIC).format(name="mine"))
    assert load_rubric(path).messages({"question": "Q?", "answer": "A."})[-1]["content"] == (
        "Q: Q? A: A.\n\nScore: N from 1 to 5"
    )
    with pytest.raises(BadInputError, match="correctness"):
        load_rubric("correctnes")


class ScriptedModel:
    """A judge model that answers from a function of the prompt, recording each batch it was given."""

    name = "scripted"

    def __init__(self, reply, batch_size=8):
        self.reply, self.batch_size, self.batches = reply, batch_size, []

    def replies(self, conversations):
        self.batches.append(len(conversations))
        return [self.reply(c[-1]["content"]) for c in conversations]


def test_llm_judge_normalises_scores_and_records_failures_with_the_raw_reply():
    def reply(prompt):
        graded = prompt.split("Answer to grade:")[1]
        if "Ostbury" in graded:
            return "Score: 5"
        if "Lenhollow" in graded:
            return "Score: 2"
        return "It depends."

    model = ScriptedModel(reply, batch_size=2)
    judge = LLMJudge(load_rubric("correctness"), model)
    answers = ["It was founded in Ostbury.", "It was founded in Lenhollow.", "Hmm.", "Ostbury."]
    results = judge.judge_many([item("A-001", a) for a in answers] + [item("A-001", "x") | {"reference": ""}])
    assert [r.score for r in results] == [1.0, 0.25, None, 1.0, None]
    assert results[1].details["raw_score"] == 2 and results[1].details["scale"] == [1, 5]
    assert results[2].reason.startswith("unparsable judge reply: no score found")
    assert results[2].details["output"] == "It depends."
    assert results[4].reason == "rubric correctness needs reference, which this item lacks"
    assert model.batches == [2, 2]  # the item without a reference never reached the model
    assert {r.judge for r in results} == {"llm:correctness"}


def test_a_failed_parse_is_stored_as_no_score_with_its_reason(tmp_path):
    from workbench.store import Store

    failed = LLMJudge(load_rubric("correctness"), ScriptedModel(lambda prompt: "It depends.")).judge(item("A-001", "x"))
    with Store.open(tmp_path / "wb.db") as store:
        store.ensure_run("demo")
        conversation = store.start_conversation("demo", "r1", ["base"], ["base"])
        store.add_turn(conversation, "t1", "Who founded Marrowgate?")
        answer = {"id": "a1", "turn_id": "t1", "variant": "base", "question": "q", "text": "x", "prompt": [],
                  "ttft_s": 0.1, "total_s": 0.2, "tokens_in": 3, "tokens_out": 1, "finish_reason": "stop",
                  "decoding": {}, "model_id": "m"}  # fmt: skip
        store.add_answer(answer)
        store.add_judgement("a1", failed.judge, failed.score, failed.reason, failed.details)
        (stored,) = store.judgements()
    assert stored["score"] is None and stored["reason"].startswith("unparsable judge reply")
    assert stored["details"]["output"] == "It depends."


def test_llm_judge_fails_only_the_batch_whose_endpoint_failed():
    calls = []

    def reply(prompt):
        calls.append(prompt)
        if len(calls) == 2:
            raise OSError("HTTP 503: busy")
        return "4"

    judge = LLMJudge(load_rubric("helpfulness"), ScriptedModel(reply, batch_size=1))
    results = judge.judge_many([item("A-002", t) for t in ("a", "b", "c")])
    assert [r.score for r in results] == [0.75, None, 0.75]
    assert results[1].reason == "judge model failed: HTTP 503: busy"


def test_groundedness_uses_numbered_context_passages():
    prompts = []
    judge = LLMJudge(load_rubric("groundedness"), ScriptedModel(lambda p: prompts.append(p) or "Score: 3"))
    result = judge.judge(item("A-002", "The WP-30.") | {"context": ["First passage.", "Second passage."]})
    assert result.score == 0.5
    assert "[1] First passage.\n\n[2] Second passage." in prompts[0]
    assert judge.judge(item("A-002", "The WP-30.")).reason == "rubric groundedness needs context, which this item lacks"


def test_local_judge_model_runs_batched_on_a_tiny_model(tiny_llama_folder):
    model = LocalJudgeModel(str(tiny_llama_folder), max_new_tokens=4, device="cpu", batch_size=2)
    results = LLMJudge(load_rubric("helpfulness"), model).judge_many([item(q, "An answer.") for q in QA if q < "A-004"])
    assert len(results) == 3 and all(r.judge == "llm:helpfulness" for r in results)
    for r in results:  # a random model rarely emits a score; either way the raw reply is kept
        assert isinstance(r.details["output"], str) and r.details["model"] == f"local:{tiny_llama_folder}"
        assert (r.score is None) == (r.reason is not None)


# -- pairwise --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Verdict: A", "A"),
        ("verdict: tie", "tie"),
        ("[[B]]", "B"),
        ("[[C]]", "tie"),
        ("Answer B is better because it is specific.", "B"),
        ('{"winner": "A"}', "A"),
        ("B", "B"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == (verdict, None)


@pytest.mark.parametrize(
    ("reply", "reason"), [("", "empty"), ("Both are fine.", "no verdict"), ("[[A]] [[B]]", "ambiguous")]
)
def test_parse_verdict_failures(reply, reason):
    label, why = parse_verdict(reply)
    assert label is None and reason in why


def _pair(a: str, b: str) -> dict:
    return {"question": QA["A-015"]["question"], "answer_a": a, "answer_b": b}


def test_pairwise_swaps_positions_and_ties_when_the_orders_disagree():
    def fair(prompt):  # prefers whichever answer states the price, wherever it stands
        first = prompt.split("Answer A:")[1].split("Answer B:")[0]
        return "Verdict: A" if "1,240" in first else "Verdict: B"

    model = ScriptedModel(fair)
    results = PairwiseJudge(load_rubric("pairwise"), model).compare_many(
        [_pair("It costs €1,240.", "It is cheap."), _pair("It is cheap.", "It costs €1,240.")]
    )
    assert model.batches == [4]  # both orders of both pairs in one batch
    assert [(r.first, r.second, r.agree, r.winner) for r in results] == [("a", "a", True, "a"), ("b", "b", True, "b")]

    biased = PairwiseJudge(load_rubric("pairwise"), ScriptedModel(lambda p: "Verdict: A"))
    result = biased.compare_many([_pair("It costs €1,240.", "It is cheap.")])[0]
    assert (result.first, result.second, result.agree, result.winner) == ("a", "b", False, "tie")
    assert result.outputs == ("Verdict: A", "Verdict: A") and result.reason is None


def test_pairwise_failure_in_one_order_gives_no_winner():
    replies = iter(["Verdict: A", "I cannot decide."])
    result = PairwiseJudge(load_rubric("pairwise"), ScriptedModel(lambda p: next(replies))).compare_many(
        [_pair("x", "y")]
    )[0]
    assert (result.winner, result.first, result.second, result.agree) == (None, "a", None, None)
    assert result.reason == "order (b, a): no verdict (A, B or tie) found in the judge's reply"


def test_judges_refuse_the_wrong_kind_of_rubric():
    with pytest.raises(BadInputError, match="pairwise rubric"):
        LLMJudge(load_rubric("pairwise"), ScriptedModel(str))
    with pytest.raises(BadInputError, match="score rubric"):
        PairwiseJudge(load_rubric("helpfulness"), ScriptedModel(str))
