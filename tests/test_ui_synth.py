"""Synthetic QA in the Data tab: generate, review in the table, apply, driven through the handlers with a scripted
generator (no model), and refused to a rater."""

import shutil
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.helpers import special_args
from test_synth import DOCS, ScriptedGenerator, _prepare

from workbench.auth import Users, add_user
from workbench.config import Config
from workbench.data import synth
from workbench.records import read_split
from workbench.session import Arena
from workbench.ui.access import Access
from workbench.ui.app import build_app
from workbench.ui.synth_panel import COLUMNS, SynthPanel
from workbench.workspace import read_json, run_paths


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Run `tiny`: test_synth's `DOCS` small documents with a QA set."""
    root = tmp_path_factory.mktemp("ui-synth")
    _prepare(root, lambda name: f"What mass does the {name} have?")
    return root / "home"


@pytest.fixture
def home(prepared, tmp_path):
    shutil.copytree(prepared, tmp_path / "home")
    return tmp_path / "home"


def _panel(home, generator=None, applied=None) -> SynthPanel:
    with gr.Blocks():
        run = gr.Dropdown(["tiny"], value="tiny")
        return SynthPanel(
            home,
            Config(),
            run,
            on_applied=applied.append if applied is not None else None,
            make_generator=lambda spec, config: generator or ScriptedGenerator(),
        )


def _select(panel: SynthPanel, row: list) -> dict:
    """What a click on `row` of the table does: Gradio passes the row to the select handler."""
    return panel.on_select("tiny", gr.SelectData(panel.table, {"index": [0, 2], "value": row[2], "row_value": row}))


def _synthetic_rows(home) -> dict[str, dict]:
    paths = run_paths("tiny", home)
    return {e.id: e for s in ("train", "val", "test") for e in read_split(paths.split(s)) if e.origin == "synthetic"}


def test_generate_review_in_the_table_and_apply_to_the_splits(home):
    applied = []
    panel = _panel(home, applied=applied)
    assert "No QA pairs for <b>tiny</b> yet" in panel.on_show("tiny", "all")[panel.counts]

    out = panel.on_generate("tiny", "local", 1, 1, 0, "all")
    assert f"kept {DOCS} of {2 * DOCS} question(s)" in out[panel.message] and "scripted" in out[panel.message]
    # the scripted weights are wrong: dropped by the checks, said in words
    assert "answer states a fact the passage does not: 10" in out[panel.message]
    table = out[panel.table]
    assert list(table.columns) == COLUMNS and len(table) == DOCS and set(table["status"]) == {"pending"}
    row = table[table["document"] == "Dunmore Fogger (d3)"].iloc[0]
    assert (
        row["question"] == "How much does the Dunmore Fogger cost?"
        and row["answer"] == "The Dunmore Fogger costs €103."
    )
    assert (
        row["verbatim"] == "yes" and row["key facts"] == "€103" and row["paraphrases"].startswith("What is the price")
    )
    assert f"{DOCS} pair(s), {DOCS} pending" in out[panel.counts]

    rows = table.values.tolist()
    accepted, rejected, edited = rows[0][0], rows[1][0], rows[2][0]
    chosen = _select(panel, rows[0])
    assert chosen[panel.pair_id] == accepted and chosen[panel.question] == rows[0][2]
    assert "Passage:" in chosen[panel.source] and "kilograms" in chosen[panel.source]  # the chunk to check against
    done = panel.on_accept("tiny", chosen[panel.pair_id], "all")
    assert f"Accepted 1 pair(s): {accepted}" in done[panel.reviewed]
    assert "Rejected 1" in panel.on_reject("tiny", rejected, "all")[panel.reviewed]
    loaded = panel.on_load("tiny", edited)  # by id, as typed
    answer = loaded[panel.answer].replace(".", " before VAT.")
    saved = panel.on_edit("tiny", edited, loaded[panel.question], answer, "all")
    assert f"Saved pair {edited} as edited" in saved[panel.reviewed] and saved[panel.answer] == answer
    assert "1 accepted, 1 rejected, 1 edited" in saved[panel.counts]
    assert panel.on_show("tiny", "rejected")[panel.table]["id"].tolist() == [rejected]
    assert {p.id: p.status for p in synth.read_pairs(synth.pairs_file("tiny", home))}[edited] == "edited"

    message = panel.on_apply("tiny")
    assert "Applied the synthetic pairs of <b>tiny</b>" in message and "Fine-tune again" in message
    assert "1 rejected pair(s) left out" in message and applied == ["tiny"]
    written = _synthetic_rows(home)
    assert accepted in written and edited in written and rejected not in written
    assert written[edited].answer == answer and written[edited].fields["review"] == "edited"
    report = read_json(run_paths("tiny", home).manifest)["synth"]
    added, held = report["added"], report["held_back_pending"]
    assert f"train {added['train']}, val {added['val']}, test {added['test']}" in message
    assert f"{held} pending pair(s) of test documents held back" in message
    assert sum(added.values()) == len(written) == DOCS - 1 - held  # all but the rejected (no leakage here)
    assert "test split still holds no question" not in message  # the QA set's test questions are there
    run_paths("tiny", home).split("test").write_text("")
    assert "test split still holds no question, so Eval has nothing to ask" in panel.on_apply("tiny")


def test_stop_ends_a_generation_and_leaves_the_pairs_as_they_were(home):
    class StopsAfterFirstCall(ScriptedGenerator):
        def replies(self, prompts, max_new_tokens, seed=None):
            panel.on_stop("tiny")  # the Stop button, pressed while the generator works
            return super().replies(prompts, max_new_tokens, seed)

    panel = _panel(home, generator=StopsAfterFirstCall())
    assert "Nothing is generating for tiny" in panel.on_stop("tiny")
    out = panel.on_generate("tiny", "local", 1, 1, 0, "all")
    assert "Stopped: no pairs written" in out[panel.message]
    assert not synth.pairs_file("tiny", home).exists() and len(out[panel.table]) == 0
    assert "Nothing is generating" in panel.on_stop("tiny")  # the stop is not left armed for the next run


def test_messages_escape_what_they_quote_and_bad_options_say_what_to_do(home):
    panel = _panel(home)
    panel.on_generate("tiny", "local", 1, 0, 2, "all")
    hostile = "<img/src=x/onerror=alert(1)>"
    refused = panel.on_accept("tiny", hostile, "all")[panel.reviewed]
    assert "<img" not in refused and "&lt;img" in refused and "nothing was changed" in refused
    assert "Not generated: --per-fact 0" in panel.on_generate("tiny", "local", 0, 0, 0, "all")[panel.message]
    assert "no prepared run &#x27;nope&#x27;" in panel.on_generate("nope", "local", 1, 0, 0, "all")[panel.message]
    assert "Select a row or type pair ids" in panel.on_reject("tiny", "", "all")[panel.reviewed]
    assert "Type the new question or answer" in panel.on_edit("tiny", "syn-1", "", " ", "all")[panel.reviewed]


def test_before_any_pairs_and_after_a_run_change_the_panel_says_what_to_do_next(home):
    panel = _panel(home)
    first = "<p>No QA pairs for <b>tiny</b> yet: press <b>Generate QA pairs</b> first.</p>"
    assert panel.on_apply("tiny") == first
    assert panel.on_accept("tiny", "syn-1", "all")[panel.reviewed] == first
    assert panel.on_edit("tiny", "syn-1", "Why?", "", "all")[panel.reviewed] == first
    assert not synth.pairs_file("tiny", home).exists()  # nothing written by asking

    synth.pairs_file("tiny", home).parent.mkdir(parents=True)
    synth.pairs_file("tiny", home).write_text('{"id": "a"}\n', encoding="utf-8")
    broken = panel.on_show("tiny", "all")[panel.counts]
    assert "runs/tiny/synth/pairs.jsonl:1: missing field" in broken and str(home) not in broken  # workspace-relative

    cleared = panel.on_run()  # another run picked: the previous run's messages and pair fields go
    assert set(cleared) == {*panel.messages, panel.pair_id, panel.question, panel.answer, panel.source}
    assert set(cleared.values()) == {""}


def test_a_rater_is_refused_every_synth_action_and_an_admin_gets_the_select_event(home):
    users_file = home.parent / "users.json"
    add_user(users_file, "rita", "rater", "rita-pass-1")
    add_user(users_file, "ada", "admin", "ada-pass-12")
    arena = Arena(Config(), "tiny", home)
    app = build_app(home, "tiny", Config(), arena=arena, access=Access(Users.load(users_file)))
    fns = {fn.api_name: fn.fn for fn in app.fns.values() if (fn.api_name or "").startswith("synth_")}
    calls = {
        "synth_generate": ["tiny", "local", 1, 0, 0, "all"],
        "synth_stop": ["tiny"],
        "synth_load": ["tiny", "syn-1"],
        "synth_accept": ["tiny", "syn-1", "all"],
        "synth_reject": ["tiny", "syn-1", "all"],
        "synth_edit": ["tiny", "syn-1", "Why?", "Because.", "all"],
        "synth_apply": ["tiny"],
    }
    assert set(fns) == {*calls, "synth_pairs", "synth_select"}
    rater, admin = SimpleNamespace(username="rita"), SimpleNamespace(username="ada")
    for name, args in calls.items():
        with pytest.raises(gr.Error, match="only an admin"):
            fns[name](*args, request=rater)
    assert fns["synth_pairs"]("tiny", "all", request=rater) == gr.skip()  # the quiet refresh changes nothing
    assert "No QA pairs" in str(fns["synth_pairs"]("tiny", "all", request=admin))
    assert not synth.pairs_file("tiny", home).exists()

    # Gradio passes the row a click selected to the guarded select handler, as it does to an unguarded one.
    event = gr.EventData(None, {"index": [0, 0], "value": "x", "row_value": ["syn-x", "pending"]})
    for who in (rater, admin):
        inputs, *_ = special_args(fns["synth_select"], ["tiny"], request=who, event_data=event)
        assert isinstance(inputs[1], gr.SelectData) and inputs[2] is who
    with pytest.raises(gr.Error, match="only an admin"):
        fns["synth_select"](*special_args(fns["synth_select"], ["tiny"], request=rater, event_data=event)[0])
    shown = fns["synth_select"](*special_args(fns["synth_select"], ["tiny"], request=admin, event_data=event)[0])
    assert "syn-x" in shown.values() and "No pair with id 'syn-x' in tiny." in shown.values()
    arena.store.close()
