import json
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.judge.checking import check_file
from workbench.judge.claims import split_claims
from workbench.judge.facts import name_in
from workbench.judge.hallucination import (
    DETECTORS,
    WEIGHTS,
    Item,
    Passage,
    fit_threshold,
    make_detector,
    name_contradicted,
    precision_recall,
    register_detector,
    swapped_name,
)
from workbench.judge.labelled import build_labelled_set, load_documents, load_questions
from workbench.judge.reference import is_abstention
from workbench.workspace import read_jsonl

REPO = Path(__file__).resolve().parent.parent
RETURNS = (
    "You can return hardware within 45 days from the delivery date. Opened items are refunded minus a 12% "
    "restocking fee. Store credit carries a 5% bonus and is valid for 24 months."
)


def test_claims_are_sentences_and_fact_bearing_clauses():
    text = (
        "The Skylark S3 Pro costs €2,180 and carries a 3-year warranty; it controls up to 16 zones. "
        "It was founded by Ilse Varnhold and Dario Quennell. Weight is 2.1 kg, e.g. without the bracket."
    )
    assert split_claims(text) == [
        "The Skylark S3 Pro costs €2,180.",
        "carries a 3-year warranty.",
        "it controls up to 16 zones.",
        "It was founded by Ilse Varnhold and Dario Quennell.",
        "Weight is 2.1 kg, e.g. without the bracket.",
    ]
    assert split_claims("- First item has 3 parts\n- Second has 4") == ["First item has 3 parts.", "Second has 4."]


def test_initials_decimals_and_source_markers_do_not_split_claims():
    assert split_claims("John R. Smith was born first. He moved to the U.S. in 1990.") == [
        "John R. Smith was born first.",
        "He moved to the U.S. in 1990.",
    ]
    assert split_claims("The valve closes at 2.5 °C. [2]") == ["The valve closes at 2.5 °C. [2]"]
    assert split_claims("It costs €62. [1][3] Refunds take 3 days. (2)") == [
        "It costs €62. [1][3]",
        "Refunds take 3 days. (2)",
    ]
    assert split_claims("[1]") == []  # nothing but a marker states nothing


@pytest.fixture(scope="module")
def detector():
    return make_detector(Config())


def check_one(detector, answer: str, context: str = RETURNS, question: str = "What are the return terms?"):
    return detector.check([Item(question, answer, [Passage("returns-1", context)])])[0]


def test_supported_missing_and_contradicted_claims_score_in_that_order(detector):
    supported = check_one(detector, "You can return hardware within 45 days from the delivery date.")
    missing = check_one(
        detector, "You can return hardware within 45 days from the delivery date at the Lenhollow desk."
    )
    contradicted = check_one(detector, "You can return hardware within 30 days from the delivery date.")
    assert supported.score < missing.score < contradicted.score
    assert not supported.flagged and contradicted.flagged
    claim = contradicted.claims[0]
    assert claim.evidence[0]["chunk_id"] == "returns-1" and 0 < claim.evidence[0]["score"] <= 1
    assert claim.to_dict().keys() == {"text", "score", "supported", "evidence"} and not claim.supported


def test_one_wrong_clause_flags_only_that_claim_and_weighs_on_the_answer_by_how_much_it_says(detector):
    answer = "Opened items carry a 12% restocking fee and store credit is valid for 36 months."
    verdict = check_one(detector, answer)
    assert [c.supported for c in verdict.claims] == [True, False]
    right, wrong = (c.score for c in verdict.claims)
    assert verdict.score == pytest.approx((right + wrong) / 2)  # the default `mean`: half of what it says
    strict = make_detector(Config.model_validate({"hallucination": {"aggregate": "max"}}))
    assert check_one(strict, answer).flagged and check_one(strict, answer).score == wrong


def test_each_answer_in_a_batch_is_checked_against_its_own_context(detector):
    items = [
        Item("Return window?", "Hardware can be returned within 45 days.", [Passage("context-1", RETURNS)]),
        Item("Buffer?", "The S2 keeps 7 days of readings offline.", [Passage("context-1", "The S2 buffers 7 days.")]),
    ]
    assert [check.flagged for check in detector.check(items)] == [False, False]
    assert detector.check(items[:1])[0].claims[0].evidence[0]["text"] == RETURNS


def test_an_invented_web_address_is_flagged_and_a_given_one_is_not(detector):
    context = RETURNS + " Start a return at returns.marrowgate.eu or write to returns@marrowgate.eu."
    invented = check_one(detector, "Start a return at www.verdance.com.", context)
    assert invented.flagged and not invented.claims[0].supported
    for given in ("Start a return at https://returns.marrowgate.eu/.", "Write to returns@marrowgate.eu."):
        assert not check_one(detector, given, context).flagged, given


def test_a_short_answer_that_is_the_wrong_entity_is_flagged(detector):
    context = "Ana Costa was born in Lisbon in 1961 and is Portuguese. She directed the film Tide Lines."
    question = "Where was Ana Costa born?"
    for wrong in ("Porto.", "In Porto.", "Brazilian."):
        verdict = check_one(detector, wrong, context, question)
        assert verdict.flagged, wrong
    for right in ("Lisbon.", "In Lisbon.", "She was born in Lisbon."):
        assert not check_one(detector, right, context, question).flagged, right


def test_the_evidence_saying_the_same_of_another_name_is_a_signal():
    film = [
        "The film Tide Lines was directed by Ana Costa in 1998.",
        "Ana Costa is Portuguese; Rui Nunes is Brazilian.",
    ]
    question = "Who directed Tide Lines?"
    assert swapped_name("Tide Lines was directed by Rui Nunes.", question, film)
    assert swapped_name("Ana Costa is Brazilian.", question, film)
    for right in ("Tide Lines was directed by Ana Costa.", "Ana Costa.", "Rui Nunes is Brazilian."):
        assert not swapped_name(right, question, film), right
    price = ["The flat out-of-warranty repair price for a Skylark S2 is €260."]
    question = "What is the out-of-warranty repair price for a Skylark S3 Pro?"
    assert swapped_name("The out-of-warranty repair price for a Skylark S3 Pro is €260.", question, price)
    assert not swapped_name("The out-of-warranty repair price for a Skylark S2 is €260.", question, price)
    part = ["An internal backup battery (part MG-SP-033) keeps the hub running for about 4 hours."]
    assert not swapped_name("The backup battery keeps the Hub MH-1 running for about 4 hours.", "How long?", part)


def test_a_name_in_another_value_is_a_contradiction():
    film = [
        "The film Tide Lines was directed by Ana Costa in 1998.",
        "Ana Costa is Portuguese; Rui Nunes is Brazilian.",
    ]
    question = "Who directed Tide Lines?"
    for wrong in ("Tide Lines was directed by Rui Nunes.", "Ana Costa is Brazilian.", "Rui Nunes is Portuguese."):
        assert name_contradicted(wrong, question, film), wrong
    for right in ("Tide Lines was directed by Ana Costa.", "Ana Costa.", "Rui Nunes is Brazilian.", "Lisbon."):
        assert not name_contradicted(right, question, film), right
    zones = ["The Skylark S2 controls up to 6 zones, and the Skylark S3 Pro controls up to 16 zones."]
    assert not name_contradicted("The Skylark S3 Pro controls up to 16 zones.", "How many zones?", zones)
    assert name_contradicted(
        "The Skylark S3 Pro controls up to 6 zones.", "How many?", ["The Skylark S2 controls up to 6 zones."]
    )
    meeting = ["The executive team meets every Tuesday at 09:00 at the head office."]
    assert name_contradicted("The executive team meets every Kellmark at 09:00.", "When?", meeting)
    paraphrase = ["Its music was written by Rui Nunes, who later directed Salt Roads."]
    assert not name_contradicted("Rui Nunes is Brazilian.", question, paraphrase)


def test_a_name_found_nowhere_in_the_evidence_needs_less_to_count_as_replacing_another():
    """A claim's name that no evidence holds (`unfound`) may stand for a code of another series, and between one
    matching word on each side; a name the evidence holds elsewhere still needs a rival of its kind and two."""
    refunds = ["Refunds are issued only by L2 support agents, after the fault is confirmed."]
    claim = "Only IP68 support agents issue refunds."
    assert name_contradicted(claim, "Who issues refunds?", refunds, unfound=["code:IP68"])
    assert not name_contradicted(claim, "Who issues refunds?", refunds)  # IP68 said elsewhere: another series
    menu = ["Report it within 48 hours through the Help menu, choosing Delivery problem."]
    claim = "Report it within 48 hours via the Kellpost menu."
    assert name_contradicted(claim, "How do I report damage?", menu, unfound=["name:kellpost"])
    assert not name_contradicted(claim, "How do I report damage?", menu)  # one matching word each side


def test_a_wrong_relation_between_names_the_evidence_holds_is_flagged(detector):
    context = (
        "The film Tide Lines was directed by Ana Costa in 1998. Its music was written by Rui Nunes, who later "
        "directed Salt Roads. Ana Costa is Portuguese; Rui Nunes is Brazilian."
    )
    question = "Who directed Tide Lines?"
    for wrong in ("Tide Lines was directed by Rui Nunes.", "Ana Costa is Brazilian."):
        assert check_one(detector, wrong, context, question).flagged, wrong
    for right in ("Tide Lines was directed by Ana Costa.", "Ana Costa.", "Rui Nunes is Brazilian."):
        assert not check_one(detector, right, context, question).flagged, right


def test_a_question_in_an_answer_is_not_a_claim(detector):
    verdict = check_one(detector, "You can return hardware within 45 days. Question: what does Lenhollow charge?")
    assert [c.score for c in verdict.claims][1] == 0 and not verdict.flagged


def test_abstentions_are_not_hallucinations(detector):
    assert is_abstention("The documentation does not contain this information.")
    assert not is_abstention("Refunds take 10 working days.")
    verdict = check_one(detector, "The documentation does not contain this information.")
    assert verdict.score == 0 and not verdict.flagged and verdict.claims[0].supported
    assert check_one(detector, "").score == 0 and not check_one(detector, "").claims


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_detector("evidence", DETECTORS["evidence"])
    config = Config.model_validate({"hallucination": {"detector": "oracle"}})
    with pytest.raises(BadInputError, match="unknown detector 'oracle'; choose one of evidence, nli"):
        make_detector(config)


def test_nli_detector_runs_a_local_cross_encoder(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from workbench.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("all-minilm-l6-v2").path)
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    small = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    BertForSequenceClassification(small).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = Config.model_validate({"hallucination": {"detector": "nli", "nli_model": str(tmp_path)}})
    verdict = check_one(make_detector(config), "You can return hardware within 45 days.")
    assert 0 <= verdict.claims[0].score <= 1 and verdict.claims[0].evidence


def test_metrics_on_known_cases():
    labels = [0, 0, 1, 1]
    assert precision_recall([0.1, 0.4, 0.35, 0.8], labels, 0.35) == (2 / 3, 1.0)
    assert fit_threshold([0.1, 0.4, 0.35, 0.8], labels) == 0.35


@pytest.fixture(scope="module")
def labelled(demo_index):
    home, _ = demo_index
    documents = load_documents("demo", home)
    return build_labelled_set(load_questions("demo", home), documents, seed=13), documents


def test_labelled_set_corrupts_real_facts_deterministically(labelled, demo_index):
    rows, documents = labelled
    home, _ = demo_index
    assert rows == build_labelled_set(load_questions("demo", home)[::-1], documents, seed=13)  # order-free
    assert rows != build_labelled_set(load_questions("demo", home), documents, seed=14)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"true", "swapped_number", "swapped_name", "swapped_relation", "invented_fact"}
    true_words = [len(r["answer"].split()) for r in rows if r["label"] == 0 and r["change"]]
    invented_words = [len(r["answer"].split()) for r in rows if r["kind"] == "invented_fact"]
    assert true_words and abs(sum(true_words) / len(true_words) - sum(invented_words) / len(invented_words)) < 8
    for row in rows:
        gold = "\n".join(documents[d] for d in row["doc_ids"])
        if row["label"] == 0:  # the reference, or the reference and a true sentence of its documents
            extra = (row["change"] or {}).get("to")
            assert row["answer"] == (f"{row['reference']} {extra}" if extra else row["reference"])
            assert extra is None or (extra in gold and row["change"]["supported"])
            continue
        assert row["answer"] != row["reference"]
        if row["kind"] == "invented_fact":
            assert row["answer"].endswith(row["change"]["to"])
        else:
            assert row["change"]["from"] in row["reference"] and row["change"]["to"] in row["answer"]
            held = name_in(row["change"]["to"], gold)  # a relation swap takes another name the evidence holds
            assert held == (row["kind"] == "swapped_relation"), (
                f"{row['id']}: substitute {'in' if held else 'not in'} gold"
            )
    by_pair = {}
    for row in rows:
        by_pair.setdefault(row["qa_id"], set()).add(row["half"])
    assert all(len(halves) == 1 for halves in by_pair.values()), "a QA pair's rows stay in one half"
    halves = [r["half"] for r in rows]
    assert 0.4 < halves.count("calibration") / len(rows) < 0.6


def test_calibration_never_sees_the_evaluation_half(labelled):
    sys.path.insert(0, str(REPO / "bench"))
    from hallucination import setting_figures

    rows, _ = labelled
    calibration = [r for r in rows if r["half"] == "calibration"][:40]
    evaluation = [r for r in rows if r["half"] == "evaluation"][:40]
    seen = []

    class Scripted:
        """Scores true answers low on the calibration half and everything high on the evaluation half."""

        settings = Config().hallucination

        def check(self, items):
            from workbench.judge.hallucination import Check, ClaimCheck

            out = []
            for item in items:
                seen.append(item.answer)
                row = next(
                    r for r in calibration + evaluation if (r["question"], r["answer"]) == (item.question, item.answer)
                )
                score = 0.9 if row["half"] == "evaluation" or row["label"] else 0.2
                features = dict.fromkeys(WEIGHTS, 0.0) | {"weak": float(row["half"] == "calibration")}
                out.append(Check(score, score > 0.5, [ClaimCheck(item.answer, score, score <= 0.5, [], features)]))
            return out

    figures = setting_figures(Scripted(), calibration, evaluation, None)
    by_how = figures["auroc_by_aggregation"]["mean"]
    assert by_how == {"calibration": 1.0, "evaluation": 0.5} and figures["aggregation"] == "mean"
    features, labels = figures["fit_set"]  # what --fit may learn from: the calibration half alone
    assert labels == [r["label"] for r in calibration] and all(f[0] == 1.0 for f in features)
    assert figures["detector"]["threshold"] == "any claim flagged"  # precision and recall of its own flag
    assert figures["detector"]["recall"] == 1.0 and figures["detector"]["precision"] == pytest.approx(
        sum(r["label"] for r in evaluation) / len(evaluation)
    )
    assert len(seen) == len(calibration) + len(evaluation)


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_check_end_to_end_with_and_without_context(demo_index, tmp_path, capsys):
    home, _ = demo_index
    rows = [
        {"question": "How long is the return window?", "answer": "Hardware can be returned within 45 days.",
         "context": RETURNS, "system": "rag"},
        {"id": "q2", "question": "How long is the return window?", "answer": "Hardware can be returned within 30 days.",
         "context": [RETURNS, "Shipping takes 3 days."]},
        {"question": "How much does the Skylark S3 Pro cost?", "answer": "The Skylark S3 Pro costs €2,180."},
        {"question": "How much does the Skylark S3 Pro cost?", "answer": "The Skylark S3 Pro costs €1,790."},
    ]  # fmt: skip
    source = write_rows(tmp_path / "answers.jsonl", rows)
    out = tmp_path / "checked.jsonl"
    code = main(["check", "--input", str(source), "--output", str(out), "--name", "demo", "--home", str(home)])
    assert code == 0 and "checked 4 answers" in capsys.readouterr().out
    checked = read_jsonl(out)
    assert [r["id"] for r in checked] == ["answers-1", "q2", "answers-3", "answers-4"]
    assert checked[0]["system"] == "rag" and checked[1]["context"][1] == "Shipping takes 3 days."
    assert [r["flagged"] for r in checked] == [False, True, False, True]
    assert all(0 <= r["hallucination_score"] <= 1 and r["claims"] for r in checked)
    retrieved = checked[2]["claims"][0]["evidence"]
    assert any("€2,180" in e["text"] for e in retrieved) and not retrieved[0]["chunk_id"].startswith("context")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "checked.jsonl"], "no temp files left"

    with_context_only = check_file(write_rows(tmp_path / "ctx.jsonl", rows[:2]), tmp_path / "ctx-out.jsonl")
    assert with_context_only["rows"] == 2 and with_context_only["flagged"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "answers.jsonl:2: not valid JSON"),
        ('{"question": "q"}', "answers.jsonl:2: `answer` missing"),
        ('{"question": "q", "answer": "a", "context": 3}', "answers.jsonl:2: `context` must be a string"),
        ('{"question": "q", "answer": "a"}', "answers.jsonl:2: no `context` and no index"),
    ],
)
def test_check_errors_name_the_file_and_line(tmp_path, capsys, line, message):
    good = {"question": "q", "answer": "a", "context": "c"}
    source = write_rows(tmp_path / "answers.jsonl", [good, line])
    code = main(["check", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--home", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
