"""`workbench eval`: every (question, variant) answered once, scored and stored; resumable; a changed setup refused.

Most tests run a tiny random-init model (fast, meaningless text: what matters is which rows exist and that the
texts equal the engine's answers alone); the kill-and-resume test runs the packaged model in a real process.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_engine import random_adapter

from workbench.config import Config
from workbench.engine import Engine
from workbench.eval import EvalError, run_eval
from workbench.eval.runner import gold_rank, load_questions
from workbench.serve_api import make_server
from workbench.store import Store
from workbench.workspace import run_paths

VARIANTS = ["base", "ft", "rag", "ft_rag"]


@pytest.fixture(scope="module")
def tiny_home(demo_index, tiny_llama_folder, tmp_path_factory):
    """The indexed demo with a random adapter for the tiny model."""
    home = tmp_path_factory.mktemp("eval") / "home"
    shutil.copytree(demo_index[0], home)
    random_adapter(str(tiny_llama_folder), run_paths("demo", home).adapter, strength=0.5)
    return home


@pytest.fixture(scope="module")
def tiny_config(tiny_llama_folder):
    return Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 12}})


@pytest.fixture(scope="module")
def tiny_engine(tiny_config, tiny_home):
    return Engine(tiny_config, "demo", tiny_home)


def _fresh(home, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    return copy


def test_every_question_and_variant_is_answered_scored_and_stored_as_the_engine_answers_alone(
    tiny_config, tiny_home, tiny_engine, tmp_path
):
    home = _fresh(tiny_home, tmp_path)
    result = run_eval("demo", tiny_config, home, limit=3, engine=tiny_engine, workers=2, progress=False)
    assert result["finished"] and result["stored"] == result["total"] == 12 and result["answered"] == 12
    questions = {q.id: q for q in load_questions("demo", "test", home, limit=3)}
    with Store.open(home=home) as store:
        record = store.eval(result["eval_id"])
        answers = store.answers(eval_id=result["eval_id"])
        judgements = store.judgements(eval_id=result["eval_id"])
        claims = store.claim_flags(eval_id=result["eval_id"])
    assert record["finished_at"] and record["counts"]["answers"] == 12 and record["questions"] == 3
    assert record["variants"] == VARIANTS and record["index_id"] and set(record["adapter_ids"]) == {"ft", "ft_rag"}
    assert {(a["qa_id"], a["variant"]) for a in answers} == {(q, v) for q in questions for v in VARIANTS}
    for a in answers:
        assert a["eval_id"] == result["eval_id"] and a["turn_id"] is None and a["run"] == "demo"
        alone = tiny_engine.answer(questions[a["qa_id"]].question, [a["variant"]])[a["variant"]]
        assert a["text"] == alone.text, (a["qa_id"], a["variant"])  # the batch changes nothing
        if a["variant"] in ("rag", "ft_rag"):  # every demo question names its gold documents
            assert a["chunk_ids"] and a["gold_rank"] is not None
        else:
            assert not a["chunk_ids"] and a["gold_rank"] is None
    judged = {(j["answer_id"], j["judge"]) for j in judgements}
    assert all((a["id"], "token_f1") in judged for a in answers)
    assert claims and {c["answer_id"] for c in claims} <= {a["id"] for a in answers}  # the detector's claims


def test_a_rerun_fills_in_only_the_missing_answers(tiny_config, tiny_home, tiny_engine, tmp_path, monkeypatch):
    from workbench.eval import runner

    home = _fresh(tiny_home, tmp_path)
    real_store, calls = runner._store, []

    def interrupted(*args, **kwargs):  # Ctrl-C arrives while the fifth answer is being stored
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_store(*args, **kwargs)

    monkeypatch.setattr(runner, "_store", interrupted)
    first = run_eval("demo", tiny_config, home, limit=3, engine=tiny_engine, progress=False)
    assert first["stopped"] and not first["finished"] and first["stored"] == 4
    with Store.open(home=home) as store:
        kept = {a["id"]: (a["qa_id"], a["variant"], a["text"]) for a in store.answers(eval_id=first["eval_id"])}
        assert store.eval(first["eval_id"])["finished_at"] is None
    monkeypatch.setattr(runner, "_store", real_store)
    second = run_eval("demo", tiny_config, home, limit=3, engine=tiny_engine, progress=False)
    assert second["eval_id"] == first["eval_id"] and second["answered"] == 8 and second["finished"]
    with Store.open(home=home) as store:
        answers = store.answers(eval_id=first["eval_id"])
    assert len(answers) == 12
    assert kept.items() <= {a["id"]: (a["qa_id"], a["variant"], a["text"]) for a in answers}.items()
    third = run_eval("demo", tiny_config, home, limit=3, engine=tiny_engine, progress=False)
    assert third["answered"] == 0 and third["finished"]


def test_a_changed_setup_under_the_same_eval_id_is_refused_and_the_default_id_follows_it(
    tiny_config, tiny_home, tiny_engine, tmp_path
):
    home = _fresh(tiny_home, tmp_path)
    run_eval("demo", tiny_config, home, limit=1, eval_id="e1", engine=tiny_engine, progress=False)
    longer = tiny_config.model_copy(deep=True)
    longer.chat.max_new_tokens = 20
    with pytest.raises(EvalError, match="eval e1 was started with another config"):
        run_eval("demo", longer, home, limit=1, eval_id="e1", engine=tiny_engine, progress=False)
    with pytest.raises(EvalError, match="another variants"):
        run_eval("demo", tiny_config, home, limit=1, eval_id="e1", variants=["base"], engine=tiny_engine)
    random_adapter(str(tiny_config.model.base), run_paths("demo", home).adapter, seed=9, strength=0.5)
    retrained = Engine(tiny_config, "demo", home)
    with pytest.raises(EvalError, match="another adapter"):
        run_eval("demo", tiny_config, home, limit=1, eval_id="e1", engine=retrained, progress=False)
    first = run_eval("demo", tiny_config, home, limit=1, engine=tiny_engine, progress=False)
    again = run_eval("demo", tiny_config, home, limit=1, engine=tiny_engine, progress=False)
    other = run_eval("demo", tiny_config, home, limit=1, engine=retrained, progress=False)
    assert first["eval_id"] == again["eval_id"] != other["eval_id"] and other["answered"] == 4


def test_remote_variants_answer_beside_the_local_batch(tiny_config, tiny_home, tiny_engine, tmp_path):
    server = make_server(tiny_engine, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = tiny_config.model_copy(deep=True)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config.chat.remotes = {"served": {"base_url": url, "model": "ft"}}
        home = _fresh(tiny_home, tmp_path)
        client = Engine(config, "demo", home)
        result = run_eval("demo", config, home, limit=2, variants=["base", "remote:served"], engine=client)
    finally:
        server.shutdown()
        server.server_close()
    assert result["finished"] and result["stored"] == 4
    with Store.open(home=home) as store:
        answers = store.answers(eval_id=result["eval_id"])
    questions = {q.id: q.question for q in load_questions("demo", "test", home, limit=2)}
    for a in (a for a in answers if a["variant"] == "remote:served"):
        assert a["error"] is None and a["text"] == tiny_engine.answer(questions[a["qa_id"]], ["ft"])["ft"].text


def test_bad_requests_are_clear_errors(tiny_config, tiny_home, tiny_engine, tmp_path):
    with pytest.raises(EvalError, match="--variants: remote:nope is not a configured endpoint"):
        run_eval("demo", tiny_config, tiny_home, variants=["base", "remote:nope"], engine=tiny_engine)
    with pytest.raises(EvalError, match="--judges: unknown judge 'vibes'"):
        run_eval("demo", tiny_config, tiny_home, judges=["vibes"], engine=tiny_engine, limit=1)
    with pytest.raises(EvalError, match="pairwise compares two answers"):
        run_eval("demo", tiny_config, tiny_home, judges=["pairwise"], engine=tiny_engine, limit=1)
    with pytest.raises(EvalError, match="--eval-id"):
        run_eval("demo", tiny_config, tiny_home, eval_id="../x", engine=tiny_engine, limit=1)
    corpus_only = tmp_path / "c.jsonl"
    corpus_only.write_text("")
    with pytest.raises(Exception, match="c.jsonl"):
        load_questions("demo", str(corpus_only), tiny_home)
    with pytest.raises(EvalError, match="no val split"):
        load_questions("nothing", "val", tmp_path)


def test_gold_rank_tells_retrieval_misses_from_generation_failures():
    assert gold_rank(["a", "b", "c"], ("b",)) == 2
    assert gold_rank(["a", "b"], ("z",)) == 0  # shown sources, none from a gold document: retrieval missed
    assert gold_rank([], ("a",)) is None  # closed-book answer
    assert gold_rank(["a"], ()) is None  # the question names no gold document


@pytest.mark.slow
def test_cli_eval_killed_midway_and_run_again_completes_only_the_missing_rows(demo_index, tmp_path):
    """The packaged model in a real `workbench eval` process, killed (SIGKILL) once some answers are stored."""
    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    random_adapter("smollm2-135m-instruct", run_paths("demo", home).adapter, strength=0.5)
    config = tmp_path / "short.yaml"
    config.write_text("chat:\n  max_new_tokens: 24\n")
    command = [sys.executable, "-m", "workbench.cli", "eval", "--name", "demo", "--home", str(home)]
    command += ["--config", str(config), "--limit", "6", "--eval-id", "killed"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    stored, deadline = 0, time.monotonic() + 300
    try:
        while stored < 3 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            if (home / "workbench.db").exists():
                with Store.open(home=home) as store:
                    stored = len(store.eval_keys("killed")) if store.eval("killed") else 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert 3 <= stored < 24, stored
    with Store.open(home=home) as store:
        before = {a["id"] for a in store.answers(eval_id="killed")}
        assert store.eval("killed")["finished_at"] is None
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "eval killed of run demo (test, 6 questions): finished" in done.stdout
    with Store.open(home=home) as store:
        answers = store.answers(eval_id="killed")
        judged = {j["answer_id"] for j in store.judgements(eval_id="killed")}
    assert len(answers) == 24 and before <= {a["id"] for a in answers}  # the earlier rows kept, not redone
    assert judged == {a["id"] for a in answers}


def test_a_stop_request_ends_after_the_answer_in_progress_and_training_settings_keep_the_eval(
    tiny_config, tiny_home, tiny_engine, tmp_path
):
    class StopAfterFirst:
        def __init__(self):
            self.checks = 0

        def is_set(self) -> bool:  # checked as each answer ends
            self.checks += 1
            return self.checks > 1

    home = _fresh(tiny_home, tmp_path)
    stopped = run_eval("demo", tiny_config, home, limit=3, engine=tiny_engine, stop=StopAfterFirst(), progress=False)
    assert stopped["stopped"] and 0 < stopped["stored"] < 12
    retrained_longer = tiny_config.model_copy(deep=True)
    retrained_longer.finetune.max_steps = 7  # shapes answers only through the adapter, whose id is checked
    resumed = run_eval("demo", retrained_longer, home, limit=3, engine=tiny_engine, progress=False)
    assert resumed["eval_id"] == stopped["eval_id"] and resumed["answered"] == 12 - stopped["stored"]


def test_cli_eval_refuses_an_empty_variant_list_and_a_bad_split(tiny_home, capsys):
    from workbench.cli import main

    assert main(["eval", "--name", "demo", "--home", str(tiny_home), "--variants", ""]) == 2
    assert "--variants '': give comma-separated names" in capsys.readouterr().err
    assert main(["eval", "--name", "demo", "--home", str(tiny_home), "--split", "train"]) == 2
    assert "--split train: use test, val or a QA file" in capsys.readouterr().err
