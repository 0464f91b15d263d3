"""`workbench synth`: synthetic QA pairs from a prepared run, checked, reviewed and added to the splits.

The fast tests drive generation with a scripted generator (no model); one slow test runs the packaged model.
"""

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import DEMO

from workbench.cli import main
from workbench.config import Config
from workbench.data import synth
from workbench.data.loaders import BadInputError
from workbench.data.prepare import prepare
from workbench.records import read_split
from workbench.workspace import file_sha256, read_json, run_paths

NAMES = [
    "Alderbrook Hydrant", "Birchwood Sprayer", "Cedarvale Mister", "Dunmore Fogger", "Elmstead Dripper",
    "Fernhill Valve", "Glenrock Nozzle", "Hawthorn Pump", "Ivybridge Timer", "Juniper Sensor",
]  # fmt: skip
"""Products whose questions are not alike across documents (templated questions about `Device 1` and `Device 2`
would count as near copies of one another, as the split's leakage check is meant to find)."""
DOCS = len(NAMES)
NAME = re.compile("|".join(NAMES))
FACT = re.compile(rf"The (?P<name>{NAME.pattern}) (?P<verb>costs|weighs)")


def _document(n: int) -> str:
    name = NAMES[n]
    return (
        f"# {name}\n\nThe {name} is a pump for small greenhouses.\n\n"
        f"The {name} costs €{100 + n}. The {name} weighs {20 + n} kilograms.\n"
    )


def _prepare(root, questions, order=range(DOCS)) -> None:
    """Prepare run `tiny` under `root/home` from the `DOCS` documents and a QA set of `questions(name)`, its rows
    in `order`."""
    corpus = root / "corpus"
    corpus.mkdir(exist_ok=True)
    for n in range(DOCS):
        (corpus / f"d{n}.md").write_text(_document(n), encoding="utf-8")
    qa = root / "qa.jsonl"
    rows = [
        {"id": f"Q{n}", "question": questions(name), "answer": f"{20 + n} kg", "doc_id": f"d{n}", "type": "numeric"}
        for n, name in ((n, NAMES[n]) for n in order)
    ]
    qa.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    prepare("tiny", [corpus], qa, home=root / "home", progress=False)


class ScriptedGenerator:
    """Answers the three synth prompts from the fact sentence in them; `wrong_weights` answers weight questions with
    a figure the documents do not give; `fail_on_call` raises on that call (1-based)."""

    name = "scripted"

    def __init__(self, wrong_weights: bool = True, fail_on_call: int | None = None):
        self.wrong_weights, self.fail_on_call, self.calls = wrong_weights, fail_on_call, 0

    def replies(self, prompts: list[str], max_new_tokens: int, seed: int | None = None) -> list[str]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("generator crashed")
        return [self._reply(prompt) for prompt in prompts]

    def _reply(self, prompt: str) -> str:
        if prompt.startswith("List "):
            name = NAME.search(prompt).group(0)
            return f"1. How much does the {name} cost?\n2. What is the price of the {name}?\n3. Sure, here you go"
        if "Write a question about this sentence" in prompt:
            fact = FACT.search(prompt.split("this sentence:", 1)[1])
            if fact is None:
                return "The passage describes a pump."  # no question: dropped
            if fact["verb"] == "costs":
                return f"Question: How much does the {fact['name']} cost?"
            return f"How heavy is the {fact['name']}?"
        question = prompt.rsplit("Question: ", 1)[1]
        name = NAME.search(question).group(0)
        number = NAMES.index(name)
        if "cost" in question:
            return f"The {name} costs €{100 + number}."
        return f"The {name} weighs {999 if self.wrong_weights else 20 + number} kilograms."


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A run of `DOCS` small documents with a QA set (one weight question per document)."""
    root = tmp_path_factory.mktemp("synth")
    _prepare(root, lambda name: f"What mass does the {name} have?")
    return root / "home"


@pytest.fixture
def home(prepared, tmp_path):
    """A fresh copy of the prepared run for each test (in place of conftest's empty workspace)."""
    copy = tmp_path / "home"
    shutil.copytree(prepared, copy)
    return copy


def _synthetic(home) -> dict[str, list]:
    paths = run_paths("tiny", home)
    return {s: [e for e in read_split(paths.split(s)) if e.origin == "synthetic"] for s in ("train", "val", "test")}


def test_synth_keeps_supported_pairs_only_and_records_their_checks(home):
    summary = synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=2)
    pairs = synth.read_pairs(synth.pairs_file("tiny", home))
    # Every document: the cost pair is kept; the weight answer (999 kg) is not in the passage and is dropped.
    assert len(pairs) == DOCS and all("cost" in p.question for p in pairs)
    assert summary["totals"]["dropped"]["fact_not_in_passage"] == DOCS
    assert summary["totals"]["dropped"]["no_question"] == DOCS  # "is a pump ..." got no question
    assert summary["totals"]["answers"] == {"verbatim": 1.0, "key_facts": 1.0, "content_words_only": 0.0}
    assert summary["documents"]["d3"]["kept"] == 1 and summary["generator"] == "scripted"
    pair = next(p for p in pairs if p.doc_id == "d3")
    assert pair.question == "How much does the Dunmore Fogger cost?" and pair.answer == "The Dunmore Fogger costs €103."
    assert pair.origin == "synthetic" and pair.status == "pending" and pair.verbatim and pair.key_facts
    assert pair.chunk_id.startswith("d3:") and "costs €103" in pair.context and pair.facts == ["€103"]
    assert pair.paraphrases == ["What is the price of the Dunmore Fogger?"]  # the repeat and the non-question dropped
    assert json.loads(synth.summary_file("tiny", home).read_text())["pairs_file"]["by_status"] == {"pending": DOCS}


def test_a_paraphrase_is_never_another_pair_s_question(home):
    """Two questions about one price, the generator rewording one as the other: no pair takes another's question
    (or a paraphrase another pair took) as a paraphrase, so a training row never repeats."""

    class TwoWordings(ScriptedGenerator):
        def _reply(self, prompt):
            if self.seed == 1 and "Write a question about this sentence" in prompt:
                fact = FACT.search(prompt.split("this sentence:", 1)[1])
                return f"How much does the {fact['name']} cost in euros?" if fact and fact["verb"] == "costs" else ""
            return super()._reply(prompt)

        def replies(self, prompts, max_new_tokens, seed=None):
            self.seed = seed
            return super().replies(prompts, max_new_tokens, seed)

    synth.synthesize("tiny", home=home, generator=TwoWordings(wrong_weights=False), per_fact=2, paraphrases=2)
    pairs = [p for p in synth.read_pairs(synth.pairs_file("tiny", home)) if p.doc_id == "d0"]
    questions = {p.question for p in pairs}
    assert {
        "How much does the Alderbrook Hydrant cost?",
        "How much does the Alderbrook Hydrant cost in euros?",
    } <= questions
    wordings = [p.question for p in pairs] + [x for p in pairs for x in p.paraphrases]
    assert len(wordings) == len(set(wordings))


def test_checks_drop_junk_questions_and_unsupported_answers():
    passage = "The Skylark S2 costs €1,240 and controls up to 6 zones. It carries a 3-year warranty."
    assert synth.parse_question("Q: How many zones does the Skylark S2 control?", passage)[0]
    assert synth.parse_question("The Skylark S2 is a controller.", passage) == (None, "no_question")
    assert synth.parse_question("What is the answer to this question?", passage)[1] == "points_at_passage"
    assert synth.parse_question("What is the purpose of the Eiffel Tower?", passage)[1] == "off_passage"
    copied = "Is it true that the Skylark S2 costs €1,240 and controls up to 6 zones?"
    assert synth.parse_question(copied, passage)[1] == "copied_from_passage"
    question = "How many zones does the Skylark S2 control?"
    assert synth.check_answer(question, "It controls up to 6 zones.", passage).supported
    assert synth.check_answer(question, "It controls up to 8 zones.", passage).reason == "fact_not_in_passage"
    assert synth.check_answer(question, "The Skylark S2 can control zones.", passage).reason == "restates_question"
    assert synth.check_answer(question, "The passage does not say.", passage).reason == "abstains"
    invented = "It controls zones through a cloud dashboard with machine learning."
    assert synth.check_answer(question, invented, passage).reason == "words_not_in_passage"


def test_apply_puts_each_document_in_one_split_and_pending_pairs_never_in_test(home):
    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=1)
    report = synth.apply_pairs("tiny", home=home)
    split_of = synth.document_splits([doc.id for doc in synth.load_run_documents("tiny", home)], _settings(home))
    tested = [doc for doc, name in split_of.items() if name == "test"]
    assert tested, "the seeded document split should give the test split a document"
    rows = _synthetic(home)
    for name, examples in rows.items():
        assert all(split_of[e.doc_id] == name for e in examples)  # every pair of a document in its one split
        assert all(e.paraphrases for e in examples)  # paraphrases travel with their question
    assert rows["test"] == [] and report["held_back_pending"] == len(tested)
    assert report["added"]["train"] + report["added"]["val"] == DOCS - len(tested)

    synth.accept_pairs(
        "tiny", [p.id for p in synth.read_pairs(synth.pairs_file("tiny", home)) if p.doc_id in tested], home
    )
    report = synth.apply_pairs("tiny", home=home)
    rows = _synthetic(home)
    assert {e.doc_id for e in rows["test"]} == set(tested) and report["held_back_pending"] == 0
    assert all(e.fields == {"review": "accepted"} for e in rows["test"])


def _settings(home):
    from workbench.config import PrepareConfig

    return PrepareConfig.model_validate(read_json(run_paths("tiny", home).manifest)["prepare"]["config"]["prepare"])


def test_apply_again_replaces_instead_of_duplicating_and_keeps_the_manifest_true(home):
    paths = run_paths("tiny", home)
    qa_rows = {s: [e.id for e in read_split(paths.split(s))] for s in ("train", "val", "test")}
    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=1)
    first = synth.apply_pairs("tiny", home=home)
    contents = {s: paths.split(s).read_bytes() for s in ("train", "val", "test")}
    second = synth.apply_pairs("tiny", home=home)
    assert {s: paths.split(s).read_bytes() for s in ("train", "val", "test")} == contents
    assert second["replaced"] == sum(first["added"].values()) and second["added"] == first["added"]
    for s in ("train", "val", "test"):  # the QA rows are untouched, in their order
        assert [e.id for e in read_split(paths.split(s)) if e.origin == "qa"] == qa_rows[s]
    manifest = read_json(paths.manifest)
    assert all(manifest["prepare"]["outputs"][f"data/{s}.jsonl"] == file_sha256(paths.split(s)) for s in contents)
    assert manifest["synth"]["pairs_sha256"] == file_sha256(synth.pairs_file("tiny", home))
    inputs = manifest["prepare"]  # preparing again writes splits without synthetic rows, and says so
    prepare("tiny", [Path(p) for p in inputs["corpus"]], Path(inputs["qa"]), home=home, progress=False)
    assert "synth" not in read_json(paths.manifest)
    assert not [e for s in contents for e in read_split(paths.split(s)) if e.origin == "synthetic"]
    # No synthetic question sits in one split while a near copy of it sits in another.
    examples = {s: read_split(paths.split(s)) for s in contents}
    for s, rows in examples.items():
        others = {e.question for t in contents if t != s for e in examples[t]}
        assert not {e.question for e in rows if e.origin == "synthetic"} & others


def test_apply_leaves_out_a_pair_that_would_leak_into_another_split(tmp_path):
    # The very questions synth will write, in another order, so that the QA split differs from the documents' one.
    _prepare(tmp_path, lambda name: f"How much does the {name} cost?", order=reversed(range(DOCS)))
    home = tmp_path / "home"
    paths = run_paths("tiny", home)
    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=0)
    synth.accept_pairs("tiny", [p.id for p in synth.read_pairs(synth.pairs_file("tiny", home))], home)
    report = synth.apply_pairs("tiny", home=home)
    qa_split = {e.question: s for s in ("train", "val", "test") for e in read_split(paths.split(s))}
    split_of = synth.document_splits([doc.id for doc in synth.load_run_documents("tiny", home)], _settings(home))
    pairs = synth.read_pairs(synth.pairs_file("tiny", home))
    leaking = {p.id for p in pairs if qa_split[p.question] != split_of[p.doc_id]}
    assert leaking and set(report["left_out_for_leakage"]) == leaking
    assert {e.id for rows in _synthetic(home).values() for e in rows} == {p.id for p in pairs} - leaking


def test_review_accepts_edits_and_rejects_by_id_and_a_rerun_keeps_reviews(home):
    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=0)
    pairs = synth.read_pairs(synth.pairs_file("tiny", home))
    accepted, edited, rejected = pairs[0].id, pairs[1].id, pairs[2].id
    synth.accept_pairs("tiny", [accepted], home)
    changed = synth.edit_pair("tiny", edited, home, answer="It costs €999.")
    assert changed.status == "edited" and not changed.key_facts  # recorded, not refused: a person decided
    synth.reject_pairs("tiny", [rejected], home)
    with pytest.raises(BadInputError, match="no pair with id 'syn-nope'"):
        synth.accept_pairs("tiny", ["syn-nope"], home)
    with pytest.raises(BadInputError, match="question is empty"):
        synth.edit_pair("tiny", edited, home, question="  ")

    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=0)  # the same pairs again
    status = {p.id: p.status for p in synth.read_pairs(synth.pairs_file("tiny", home))}
    assert len(status) == DOCS
    assert (status[accepted], status[edited], status[rejected]) == ("accepted", "edited", "rejected")
    assert (
        next(p for p in synth.read_pairs(synth.pairs_file("tiny", home)) if p.id == edited).answer == "It costs €999."
    )
    report = synth.apply_pairs("tiny", home=home)
    applied = {e.id for rows in _synthetic(home).values() for e in rows}
    assert rejected not in applied and report["rejected"] == 1


def test_a_failed_run_leaves_the_previous_pairs_and_summary(home):
    synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), paraphrases=1)
    folder = synth.synth_folder("tiny", home)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for call in (1, 2, 3):  # questions, answers, paraphrases of the first batch
        with pytest.raises(RuntimeError, match="generator crashed"):
            synth.synthesize("tiny", home=home, generator=ScriptedGenerator(wrong_weights=False, fail_on_call=call))
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing half-written, nothing staged


def test_bad_input_names_the_run_and_what_to_do(home, capsys):
    with pytest.raises(BadInputError, match=r"no prepared run 'nope' \(prepared runs: tiny\).*workbench prepare"):
        synth.synthesize("nope", home=home, generator=ScriptedGenerator())
    with pytest.raises(BadInputError, match="no synthetic pairs.*workbench synth --name tiny"):
        synth.apply_pairs("tiny", home=home)
    with pytest.raises(BadInputError, match="--per-fact 0"):
        synth.synthesize("tiny", home=home, generator=ScriptedGenerator(), per_fact=0)
    with pytest.raises(BadInputError, match="generator 'remote:x'.*no remote configured"):
        synth.synthesize("tiny", home=home, generator="remote:x")
    synth.pairs_file("tiny", home).parent.mkdir(parents=True)
    synth.pairs_file("tiny", home).write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"pairs.jsonl:1: missing field 'question'"):
        synth.apply_pairs("tiny", home=home)

    assert main(["synth", "--name", "nope", "--home", str(home)]) == 2
    assert "workbench synth: error:" in capsys.readouterr().err
    assert main(["synth", "--name", "tiny", "--home", str(home), "--apply", "--limit-docs", "2"]) == 2
    assert "--limit-docs generate pairs" in capsys.readouterr().err


@pytest.fixture
def endpoint():
    """An OpenAI-compatible endpoint streaming `ScriptedGenerator`'s reply to each request's last message; yields
    (base URL, the request bodies it got). A request whose message holds "Fogger" gets HTTP 500."""
    scripted, bodies = ScriptedGenerator(wrong_weights=False), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            prompt = body["messages"][-1]["content"]
            if "Fogger" in prompt:
                self.send_error(500, "model overloaded")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            reply = scripted._reply(prompt)
            for piece in (reply[: len(reply) // 2], reply[len(reply) // 2 :]):
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    server.shutdown()
    server.server_close()


def test_a_remote_generator_writes_pairs_through_its_endpoint_and_a_failure_names_it(home, endpoint):
    url, bodies = endpoint
    config = Config.model_validate({"chat": {"remotes": {"big": {"base_url": url, "model": "big-model"}}}})
    summary = synth.synthesize("tiny", config, home, generator="remote:big", paraphrases=1, limit_docs=3)
    pairs = synth.read_pairs(synth.pairs_file("tiny", home))
    assert summary["generator"] == "remote:big" and {p.generator for p in pairs} == {"remote:big"}
    assert len(pairs) == 6 and all(p.verbatim or p.key_facts for p in pairs)  # cost and weight, 3 documents
    assert all(len(p.paraphrases) == 1 for p in pairs if "cost" in p.question)
    assert {b["model"] for b in bodies} == {"big-model"} and all(b["stream"] for b in bodies)
    sampled = [b for b in bodies if b["temperature"] > 0]  # one question per fact: only a rewording asked again
    assert sampled and all(b["messages"][-1]["content"].startswith("List ") for b in sampled)
    before = synth.pairs_file("tiny", home).read_bytes()
    with pytest.raises(BadInputError, match=r"generator remote:big: http://127.0.0.1:\d+/v1 failed \(HTTP 500"):
        synth.synthesize("tiny", config, home, generator="remote:big")  # the fourth document, the Fogger, fails
    assert synth.pairs_file("tiny", home).read_bytes() == before


@pytest.mark.slow
def test_cli_synth_with_the_packaged_model_on_a_demo_document(tmp_path, capsys):
    """The real local model through `workbench synth` on one demo document, then review and apply."""
    home, corpus = tmp_path / "home", tmp_path / "corpus"
    corpus.mkdir()  # the document's first half: the model's time grows with the facts it is asked about
    lines = (DEMO / "corpus" / "skylark-s2.md").read_text(encoding="utf-8").splitlines(keepends=True)
    (corpus / "skylark-s2.md").write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    prepare("demo1", [corpus], home=home, progress=False)
    command = ["synth", "--name", "demo1", "--home", str(home), "--per-fact", "1", "--paraphrases", "1"]
    assert main(command) == 0
    assert "synthesized demo1 with local:smollm2-135m-instruct" in capsys.readouterr().out
    summary = json.loads(synth.summary_file("demo1", home).read_text())
    pairs = synth.read_pairs(synth.pairs_file("demo1", home))
    totals = summary["totals"]
    assert totals["documents"] == 1 and totals["facts"] > 10 and totals["questions"] > 0
    assert totals["kept"] == len(pairs) > 0, summary
    for pair in pairs:  # whatever the model wrote, what was kept passes the checks
        assert pair.question.endswith("?") and pair.doc_id == "skylark-s2" and pair.status == "pending"
        assert synth.check_answer(pair.question, pair.answer, pair.context, pair.fact, pair.title).supported
    assert main(["synth", "--name", "demo1", "--home", str(home), "--accept", pairs[0].id, "--apply"]) == 0
    added = [e for s in ("train", "val", "test") for e in read_split(run_paths("demo1", home).split(s))]
    assert {e.id for e in added if e.origin == "synthetic"} == {p.id for p in pairs}
