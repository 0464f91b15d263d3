"""The arena's core: blind order, streaming columns, stored answers/judgements/claims, ratings and the reveal.

A 2-layer random Llama stands in for the model (its answers are noise, which is all these tests need), with a
random LoRA adapter as the fine-tuned one, over the indexed demo.
"""

import dataclasses
import itertools
import json
import shutil

import pytest
import torch
from conftest import DEMO
from peft import LoraConfig, get_peft_model

from workbench.config import Config, LimitsConfig
from workbench.models import fresh_causal_lm
from workbench.rater_queue import QueueError
from workbench.report.summary import variant_summary
from workbench.session import Arena, ArenaError, Column, Source, blind_order, load_references, normalise_question
from workbench.ui.render import column_html
from workbench.workspace import run_paths

VARIANTS = ["base", "ft", "rag", "ft_rag"]
QA_QUESTION = "Who founded Marrowgate Systems, and when and where was it founded?"


def write_random_adapter(spec: str, folder, seed: int = 0) -> None:
    torch.manual_seed(seed)
    base, _ = fresh_causal_lm(spec)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(folder)


@pytest.fixture(scope="module")
def arena(demo_index, tiny_llama_folder, tmp_path_factory):
    home = tmp_path_factory.mktemp("session") / "home"
    shutil.copytree(demo_index[0], home)
    write_random_adapter(str(tiny_llama_folder), run_paths("demo", home).adapter)
    config = Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 12}})
    arena = Arena(config, "demo", home)
    yield arena
    arena.store.close()


def test_blind_order_is_a_seeded_shuffle_and_columns_never_hold_a_name(arena):
    assert blind_order(VARIANTS, 7) == blind_order(VARIANTS, 7)
    assert sorted(blind_order(VARIANTS, 7)) == sorted(VARIANTS)
    session = arena.session("r1", VARIANTS, seed=3)
    orders = set()
    for _ in range(8):
        orders.add(tuple(session.order))
        session.reset()
    assert len(orders) > 1  # each conversation draws its own order
    assert session.labels == ["A", "B", "C", "D"]
    assert {f.name for f in dataclasses.fields(Column)}.isdisjoint({"variant", "name"})


def test_a_turn_streams_every_column_and_stores_answers_judgements_and_claims(arena):
    session = arena.session("r2", VARIANTS, seed=1)
    snapshots = list(session.ask(QA_QUESTION))
    final = {c.label: c for c in snapshots[-4:]}
    speaking = {label for label, c in final.items() if c.text}  # the random model's RAG rows may decode to ""
    streamed = {c.label for c in snapshots if not c.done}
    assert len(speaking) >= 2 and streamed == speaking  # every column with text showed it before it finished
    firsts = [next(i for i, c in enumerate(snapshots) if c.label == label) for label in speaking]
    first_done = next(i for i, c in enumerate(snapshots) if c.done)
    assert max(firsts) < first_done  # all columns started before any finished: they fill at once
    for label in speaking:
        seen = [c.text for c in snapshots if c.label == label and not c.done]
        assert all(b.startswith(a) for a, b in itertools.pairwise(seen))
    assert all(c.done and c.checked and c.answer_id and c.tokens_out and c.ttft_s for c in final.values())

    store = arena.store
    [conversation] = [c for c in store.conversations("demo") if c["rater"] == "r2"]
    assert conversation["blind_order"] == session.order and sorted(conversation["variants"]) == sorted(VARIANTS)
    answers = {a["id"]: a for a in store.answers("demo") if a["conversation_id"] == conversation["id"]}
    assert len(answers) == 4 and {a["question"] for a in answers.values()} == {QA_QUESTION}
    for label, column in final.items():
        variant = session.order["ABCD".index(label)]
        stored = answers[column.answer_id]
        assert stored["variant"] == variant and stored["text"] == column.text
        assert bool(column.sources) == variant.endswith("rag")
        assert [s.chunk_id for s in column.sources] == stored["chunk_ids"]
        assert all(s.text for s in column.sources)
        assert set(column.judges) >= {"token_f1", "key_facts"}  # the question is a QA pair with a reference
    judged = {j["answer_id"] for j in store.judgements("demo")}
    assert set(answers) <= judged
    if arena.detector is not None:
        flagged = {f["answer_id"] for f in store.claim_flags("demo")}
        with_claims = {c.answer_id for c in final.values() if c.claims}
        assert with_claims and with_claims <= flagged
        for column in final.values():
            for claim in column.claims or []:
                assert 0 <= claim["score"] <= 1 and isinstance(claim["supported"], bool)


def test_turns_keep_each_variants_history_and_unknown_questions_are_not_judged(arena):
    session = arena.session("r3", ["base", "rag"], seed=2)
    first = {c.label: c for c in session.ask("What does the Skylark S3 Pro do?") if c.done}
    second = [c for c in session.ask("And how much does it cost?") if c.done and c.checked]
    assert {c.label for c in second} == set(session.labels)
    assert all(not c.judges for c in second)  # not a QA pair: no reference to judge against
    assert [q for q, _ in session.history("A")] == ["What does the Skylark S3 Pro do?"]
    rows = [a for a in arena.store.answers("demo") if a["id"] in {c.answer_id for c in second}]
    assert {r["position"] for r in rows} == {1}
    for row in rows:
        label = session.labels[session.order.index(row["variant"])]
        assert row["prompt"][-3]["content"] == "What does the Skylark S3 Pro do?"
        assert row["prompt"][-2] == {"role": "assistant", "content": first[label].text}


def test_rating_then_vote_reveals_and_ends_the_blind_conversation(arena):
    session = arena.session("r4", ["base", "ft", "rag"], seed=5)
    with pytest.raises(ArenaError, match="nothing to rate"):
        session.rate(vote="A")
    list(session.ask("How do I reset a Marrowgate hub?"))
    with pytest.raises(ArenaError, match="vote first"):
        session.reveal()
    session.rate(stars={"A": 2}, hallucinated={"A": True})
    with pytest.raises(ArenaError, match="vote first"):
        session.reveal()  # a rating without a vote names nothing
    with pytest.raises(ArenaError, match="unknown column"):
        session.rate(stars={"D": 3})
    session.rate(stars={"A": 2, "B": 5, "C": 1}, vote="B", hallucinated={"A": True, "B": False}, comment="B cites it")
    assert session.reveal() == dict(zip("ABC", session.order))
    rows = [r for r in arena.store.ratings("demo") if r["rater"] == "r4"]
    by_variant = {r["variant"]: r for r in rows}
    assert len(rows) == 3 and set(by_variant) == {"base", "ft", "rag"}
    best = by_variant[session.order[1]]
    assert (best["stars"], best["vote"], best["hallucinated"], best["comment"]) == (5, "best", False, "B cites it")
    assert by_variant[session.order[0]]["hallucinated"] is True and by_variant[session.order[2]]["hallucinated"] is None
    with pytest.raises(ArenaError, match="revealed"):
        next(session.ask("Another question?"))
    conversation = session.conversation_id
    session.reset()
    list(session.ask("How do I reset a Marrowgate hub?"))
    assert session.conversation_id != conversation and not session.voted
    session.rate(vote="all_bad", comment="none of them know")
    turn_level = [r for r in arena.store.ratings("demo") if r["rater"] == "r4" and r["answer_id"] is None]
    assert [(r["vote"], r["comment"]) for r in turn_level] == [("all_bad", "none of them know")]
    summary = variant_summary(arena.store, "demo")
    assert summary[session.order[0]]["all_bad"] >= 1 and summary[best["variant"]]["wins"] >= 1


def test_a_queued_question_is_served_to_each_rater_as_the_same_answers_in_their_own_blind_order(arena):
    assert arena.load_queue("agree", "test", ["base", "ft"], raters=2, limit=2) == 2
    assert [q["queue"] for q in arena.queues()] == ["agree"]
    seen = {}
    for rater, seed in (("q1", 1), ("q2", 2)):
        session, item = arena.queued_session(rater, "agree", seed=seed)
        assert sorted(session.variants) == ["base", "ft"] and session.turns == 0
        list(session.ask(item.question, item.id))
        with pytest.raises(ArenaError, match="opens a conversation"):
            next(session.ask(item.question, item.id))
        seen[rater] = (item.id, {v: session.columns[session.order.index(v)].text for v in session.order})
        session.rate(stars={"A": 4, "B": 2}, vote="A")
    (first, texts1), (second, texts2) = seen["q1"], seen["q2"]
    assert first == second  # the second rater is served what the first rated: their ratings overlap
    assert texts1 == texts2  # greedy and batch invariant: the same answers, whatever the column order
    turns = {r["turn_id"]: r["queue_question_id"] for r in arena.store.ratings("demo") if r["rater"] in ("q1", "q2")}
    assert set(turns.values()) == {first}
    progress = arena.queues()[0]
    assert (progress["questions"], progress["complete"], progress["votes"]) == (2, 1, 2)
    with pytest.raises(QueueError, match="no queue 'nope'"):
        arena.queued_session("q1", "nope")


def test_bad_requests_are_clear_errors(arena):
    with pytest.raises(ArenaError, match="2 to 4"):
        arena.session("r5", ["base"])
    with pytest.raises(ArenaError, match="nope cannot answer"):
        arena.session("r5", ["base", "nope"])
    session = arena.session("r5", ["base", "ft"])
    with pytest.raises(ArenaError, match="question"):
        next(session.ask("   "))


def test_questions_and_histories_are_bounded_and_a_rater_has_one_question_in_flight(arena, monkeypatch):
    limits = LimitsConfig(question_chars=40, history_turns=2, asks_per_rater=1)
    monkeypatch.setattr(arena.config, "limits", limits)
    session = arena.session("r6", ["base", "ft"])
    with pytest.raises(ArenaError, match="41 characters; at most 40"):
        next(session.ask("x" * 41))
    for turn in range(4):
        list(session.ask(f"Question number {turn}?"))
    assert all(len(history) == 2 * 2 for history in session.histories.values())  # the last two turns only
    assert [question for question, _ in session.past] == ["Question number 1?", "Question number 2?"]
    arena.begin_ask("r6")
    with pytest.raises(ArenaError, match="still being answered"):
        arena.begin_ask("r6")
    arena.begin_ask("r7")  # another rater is not held up
    arena.end_ask("r6")
    arena.begin_ask("r6")
    monkeypatch.setattr("workbench.session.time.monotonic", lambda: 1e12)  # an ask that never ended expires
    arena.begin_ask("r6")


def test_references_are_the_runs_qa_pairs_by_normalised_question(arena):
    references = load_references("demo", arena.home)
    assert normalise_question("  who FOUNDED Marrowgate Systems,  and when and where was it founded ") in references
    pair = json.loads((DEMO / "qa.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert references[normalise_question(pair["question"])]["reference"] == pair["answer"]


def test_columns_render_model_and_corpus_text_inert_and_name_the_variant_only_when_told():
    markup = '<img src=x onerror="alert(1)"><script>alert(2)</script> ${value} {{x}}'
    column = Column(
        "B",
        text=f"It is 45 days. {markup}",
        done=True,
        ttft_s=0.2,
        total_s=1.0,
        tokens_out=9,
        sources=[Source("doc#0", "Title <b>", markup, 0.5)],
        judges={"token_f1": 0.25, "embedding": None},
        claims=[
            {
                "text": "It is 45 days.",
                "score": 0.9,
                "supported": False,
                "evidence": [{"chunk_id": "doc#0", "text": markup, "score": 0.4}],
            }
        ],
    )
    page = column_html(column, question=markup, history=[(markup, markup)])
    assert "<img" not in page and "<script" not in page and "Title <b>" not in page
    assert "${" not in page and "{{" not in page  # nor Gradio template syntax
    assert page.count("&lt;script&gt;") == 6  # text, question, history (2), source, evidence
    assert (
        'title="claim 1: likely unsupported, score 0.90"' in page
        and "Token F1 0.25" in page
        and "embedding" not in page  # a judge that could not score is left out
    )
    assert "wb-name" not in page and "= rag" in column_html(column, variant="rag")
