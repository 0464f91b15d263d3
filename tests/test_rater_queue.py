"""Rater queues and rater agreement: questions served so that raters overlap, queued turns checked by the store,
Krippendorff's alpha against the published example, and raters far below the rest flagged and left out on request."""

import pytest

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.rater_queue import QueueError, load_queue, next_question, queue_progress
from workbench.report.agreement import krippendorff_alpha
from workbench.report.build import build_report
from workbench.report.raters import rater_section
from workbench.report.render import render_html, render_markdown
from workbench.report.rows import ReportRows
from workbench.store import Store

VARIANTS = ["base", "rag"]


def answer(turn_id: str, variant: str, question: str, text: str = "An answer.") -> dict:
    """A complete answer record, as `Answer.to_dict()` gives it."""
    return {
        "id": f"{turn_id}-{variant}",
        "turn_id": turn_id,
        "variant": variant,
        "question": question,
        "text": text,
        "prompt": [{"role": "user", "content": question}],
        "ttft_s": 0.1,
        "total_s": 0.5,
        "tokens_in": 10,
        "tokens_out": 5,
        "finish_reason": "stop",
        "decoding": {"temperature": 0.0},
        "model_id": "m",
        "precision": None,
        "adapter_id": None,
        "index_id": None,
        "chunk_ids": [],
        "chunk_scores": [],
        "error": None,
    }


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "workbench.db") as opened:
        opened.ensure_run("r")
        yield opened


def queue(store: Store, questions=("q0?", "q1?", "q2?"), raters=2, name="week1") -> None:
    store.add_queue("r", name, [{"question": q, "qa_id": f"id{i}"} for i, q in enumerate(questions)], VARIANTS, raters)


def serve(store: Store, rater: str, vote: str | None = "base", stars: dict | None = None, name="week1") -> int:
    """`rater` takes their next queued question, answers stored, and votes (`vote`: a variant, tie or all_bad)."""
    item = next_question(store, "r", name, rater)
    conversation = store.start_conversation("r", rater, list(item.variants), list(item.variants))
    turn = f"t-{rater}-{item.id}"
    store.add_turn(conversation, turn, item.question, item.id)
    for variant in item.variants:
        store.add_answer(answer(turn, variant, item.question))
    for variant, given in (stars or {}).items():
        store.add_rating(
            turn, rater, answer_id=f"{turn}-{variant}", stars=given, vote="best" if vote == variant else None
        )
    if vote in VARIANTS and vote not in (stars or {}):
        store.add_rating(turn, rater, answer_id=f"{turn}-{vote}", vote="best")
    elif vote in ("tie", "all_bad"):
        store.add_rating(turn, rater, vote=vote)
    return item.id


def test_each_rater_gets_questions_others_started_first_and_never_one_twice(store):
    queue(store)
    ids = [row["id"] for row in store.queue_questions("r")]
    assert [serve(store, "ann") for _ in range(3)] == ids  # ann goes through the queue in order
    with pytest.raises(QueueError, match="every question of queue 'week1'"):
        next_question(store, "r", "week1", "ann")
    # bob is served what ann already rated, so their ratings overlap from the first question
    assert serve(store, "bob") == ids[0]
    # with q0 fully rated (2 of 2), a third rater gets the ones still short of raters first
    assert serve(store, "cat") == ids[1]
    assert serve(store, "cat") == ids[2]
    assert serve(store, "cat") == ids[0]
    [progress] = queue_progress(store, "r")
    assert progress | {"variants": None} == {
        "queue": "week1",
        "variants": None,
        "raters_wanted": 2,
        "questions": 3,
        "complete": 3,
        "started": 3,
        "votes": 7,
    }
    with pytest.raises(QueueError, match="no queue 'other'.*week1"):
        next_question(store, "r", "other", "ann")


def test_a_rater_who_left_without_voting_is_not_served_the_question_again(store):
    queue(store, questions=("q0?", "q1?"))
    first = serve(store, "ann", vote=None)
    assert next_question(store, "r", "week1", "ann").id != first
    assert [row["served"] for row in store.queue_questions("r")] == [1, 0]
    assert [row["voted"] for row in store.queue_questions("r")] == [0, 0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add_queue("r", "week1", [{"question": "again?"}], VARIANTS), "already loaded"),
        (lambda s: s.add_queue("r", "w2", [{"question": "q?"}], VARIANTS, 1), "raters_wanted: 1"),
        (lambda s: s.add_queue("r", "w2", [], VARIANTS), "no questions"),
        (lambda s: s.add_queue("r", "w2", [{"question": " "}], VARIANTS), r"queue_questions\[0\].question"),
        (lambda s: s.add_queue("nope", "w2", [{"question": "q?"}], VARIANTS), "queue_questions.run"),
        (lambda s: s.add_queue("r", "../x", [{"question": "q?"}], VARIANTS), "x"),
    ],
)
def test_bad_queues_are_refused_and_store_nothing(store, call, message):
    queue(store)
    with pytest.raises((BadInputError, ValueError), match=message):
        call(store)
    assert len(store.queue_questions("r")) == 3


def test_the_store_refuses_a_queued_turn_that_would_not_be_comparable(store):
    queue(store)
    item = next_question(store, "r", "week1", "ann")
    other = store.start_conversation("r", "ann", ["base", "ft"], ["ft", "base"])
    with pytest.raises(BadInputError, match="compares \\['base', 'rag'\\]"):
        store.add_turn(other, "t1", item.question, item.id)
    same = store.start_conversation("r", "ann", VARIANTS, ["rag", "base"])
    with pytest.raises(BadInputError, match="asks the queued question as it was loaded"):
        store.add_turn(same, "t2", "another question?", item.id)
    with pytest.raises(BadInputError, match="no queued question 999"):
        store.add_turn(same, "t3", item.question, 999)
    store.add_turn(same, "t4", "a free question first", None)
    with pytest.raises(BadInputError, match="first turn"):
        store.add_turn(same, "t5", item.question, item.id)
    assert [row["served"] for row in store.queue_questions("r")] == [0, 0, 0]


def test_load_queue_reads_a_split_and_checks_the_variants(tmp_path):
    home = tmp_path / "home"
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Where?", "answer": "Here."}\n{"question": "When?", "answer": "Now."}\n')
    (home / "runs" / "r").mkdir(parents=True)
    with Store.open(home / "workbench.db") as store:
        assert load_queue(store, "r", "file", str(qa), ["base", "rag"], home=home) == 2
        assert [row["question"] for row in store.queue_questions("r", "file")] == ["Where?", "When?"]
        with pytest.raises(QueueError, match="2 to 4 variants"):
            load_queue(store, "r", "one", str(qa), ["base"], home=home)
        with pytest.raises(QueueError, match="unknown variant 'gpt'"):
            load_queue(store, "r", "bad", str(qa), ["base", "gpt"], home=home)
        with pytest.raises(QueueError, match="--raters 1"):
            load_queue(store, "r", "few", str(qa), ["base", "rag"], raters=1, home=home)
        with pytest.raises(BadInputError, match="no test split"):
            load_queue(store, "r", "test", "test", ["base", "rag"], home=home)


# -- Krippendorff's alpha ---------------------------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with missing values: 4 observers,
# 12 units; alpha is 0.743 nominal and 0.849 interval.
PUBLISHED = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_krippendorff_alpha_gives_the_published_values():
    values = {(c, u): v for c, row in PUBLISHED.items() for u, v in enumerate(row) if v is not None}
    nominal, interval = krippendorff_alpha(values, "nominal"), krippendorff_alpha(values, "interval")
    assert nominal.value == pytest.approx(0.743, abs=5e-4) and interval.value == pytest.approx(0.849, abs=5e-4)
    assert nominal.n == 11  # unit 12 has one value: it cannot disagree and is left out
    assert krippendorff_alpha({("a", 1): 3, ("b", 2): 4}, "interval").value is None
    same = krippendorff_alpha({("a", 1): 3, ("b", 1): 3}, "interval")
    assert same.value is None and "the same" in same.reason
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(values, "ordinal")


# -- the report's rater section ---------------------------------------------------------------------------------------


def rating(rater: str, unit: int, variant: str | None, stars=None, vote=None, answer_id=None) -> dict:
    return {
        "rater": rater,
        "queue_question_id": unit,
        "variant": variant,
        "stars": stars,
        "vote": vote,
        "answer_id": answer_id or f"{unit}-{variant}",
        "turn_id": f"{rater}-{unit}",
        "hallucinated": None,
    }


def agreeing_ratings() -> list[dict]:
    """ann, bob and cat agree (stars 5 for base, 2 for rag, base voted best) on 8 questions; dan rates the reverse."""
    rows = []
    for unit in range(8):
        for rater in ("ann", "bob", "cat", "dan"):
            good, bad = ("base", "rag") if rater != "dan" else ("rag", "base")
            nudge = unit % 2 if rater == "bob" else 0
            rows.append(rating(rater, unit, good, stars=5 - nudge, vote="best"))
            rows.append(rating(rater, unit, bad, stars=2))
    return rows


def test_a_rater_who_disagrees_with_everyone_is_flagged():
    judgements = [{"answer_id": f"{u}-base", "judge": "token_f1", "score": 0.9 - u / 100} for u in range(8)]
    judgements += [{"answer_id": f"{u}-rag", "judge": "token_f1", "score": 0.2 + u / 100} for u in range(8)]
    section = rater_section(agreeing_ratings(), judgements, gap=0.3)
    assert section["raters"] == 4 and section["questions"] == 8
    assert section["votes_alpha"]["value"] < 0.5  # dan pulls the overall agreement down
    assert section["vote_agreement"] == {"share": pytest.approx(3 / 6), "pairs": 48}
    per = section["per_rater"]
    # each rater's alpha pools their pairs with every other rater, dan's included: the three agreeing raters stay
    # well above him
    assert per["ann"]["stars_alpha"] == per["cat"]["stars_alpha"]
    assert min(per[r]["stars_alpha"]["value"] for r in ("ann", "bob", "cat")) > 0.2
    assert per["dan"]["stars_alpha"]["value"] < 0 and per["dan"]["vote_agreement"]["share"] == 0
    assert per["ann"]["judges"]["token_f1"]["value"] > 0.8 and per["dan"]["judges"]["token_f1"]["value"] < -0.8
    assert set(section["flagged"]) == {"dan"} and "below chance" in section["flagged"]["dan"]


def test_two_raters_are_never_flagged_and_free_chat_ratings_do_not_count():
    rows = [r for r in agreeing_ratings() if r["rater"] in ("ann", "dan")]
    section = rater_section(rows, [], gap=0.3)
    assert section["per_rater"]["dan"]["stars_alpha"]["value"] < 0 and section["flagged"] == {}
    free = [r | {"queue_question_id": None} for r in rows]
    assert rater_section(free, [], gap=0.3) is None


def report_rows(drop: bool) -> ReportRows:
    """The report's rows of `agreeing_ratings`, each rating pointing at its own turn's answer."""
    config = Config.model_validate({"report": {"drop_flagged_raters": drop, "preference_rounds": 20}})
    ratings = [r | {"answer_id": f"{r['turn_id']}-{r['variant']}"} for r in agreeing_ratings()]
    answers = [
        {"id": f"{turn}-{v}", "turn_id": turn, "variant": v, "text": "An answer.", "eval_id": None}
        for turn in {r["turn_id"] for r in ratings}
        for v in VARIANTS
    ]
    return ReportRows("r", config, arena_answers=answers, ratings=ratings)


def test_dropping_flagged_raters_removes_their_votes_from_every_human_figure():
    kept, dropped = build_report(report_rows(False)), build_report(report_rows(True))
    assert kept["raters"]["flagged"].keys() == {"dan"} and kept["raters"]["dropped"] == []
    assert dropped["raters"]["dropped"] == ["dan"]
    assert kept["preference"]["votes"] == 32 and dropped["preference"]["votes"] == 24
    assert any("dan" in note and "left out" in note for note in dropped["notes"])


def test_the_rater_section_renders_after_human_preference_with_names_escaped():
    rows = report_rows(True)
    for r in rows.ratings:
        if r["rater"] == "dan":
            r["rater"] = "<b>dan</b>"
    report = build_report(rows)
    md, page = render_markdown(report), render_html(report)
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings.index("Rater agreement") == headings.index("Human preference") + 1
    assert "| \\<b>dan\\</b> |" in md and "dropped" in md
    assert "&lt;b&gt;dan&lt;/b&gt;" in page and "<b>dan</b>" not in page
    assert "Krippendorff&#x27;s alpha on stars" in page


def test_the_queue_command_loads_and_lists_queues_with_clear_errors(tmp_path, capsys):
    from workbench.cli import main

    home = tmp_path / "home"
    (home / "runs" / "r").mkdir(parents=True)
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Where?", "answer": "Here."}\n{"question": "When?", "answer": "Now."}\n')
    common = ["--home", str(home), "--name", "r"]
    assert main(["queue", *common, "--load", "week1", "--split", str(qa), "--variants", "base,rag"]) == 0
    out = capsys.readouterr().out
    assert "queued 2 question(s)" in out and "week1: 0 of 2 questions rated by 2 raters" in out
    assert main(["queue", *common, "--load", "week1", "--split", str(qa), "--variants", "base,rag"]) == 2
    assert "already loaded" in capsys.readouterr().err
    assert main(["queue", *common, "--load", "w2", "--split", str(qa), "--raters", "1"]) == 2
    assert "--raters 1" in capsys.readouterr().err
    assert main(["queue", *common]) == 0
    assert capsys.readouterr().out.startswith("week1: ")
