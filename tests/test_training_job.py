import json
import shutil

import pytest
from conftest import DEMO

from workbench.config import Config
from workbench.data.prepare import prepare
from workbench.training_job import JobRunning, train_in_background, training_job
from workbench.workspace import read_events, read_metrics, run_paths


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    return home


def _run(home, name: str) -> str:
    """A fresh copy of the prepared demo run, so each test has its own job and files."""
    shutil.copytree(run_paths("demo", home).root, run_paths(name, home).root)
    return name


def _config(tiny_llama_folder, **finetune):
    """Short examples, small batches and a short forgetting probe: a few seconds per run on 2 cores."""
    probe = tiny_llama_folder.parent / "probe.txt"
    probe.write_text("Plain general prose for the forgetting probe. It has only a couple of sentences.\n")
    settings = {"batch_size": 8, "max_length": 128, "eval_every": 2, "checkpoint_every": 2, "general_text": str(probe)}
    return Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "finetune": settings | finetune})


def test_background_training_finishes_with_an_adapter_and_calls_the_hook(prepared_home, tiny_llama_folder):
    name = _run(prepared_home, "full")
    job = training_job(name, prepared_home)
    assert training_job(name, str(prepared_home)) is job and job.status().state == "idle"
    ended = []
    job.on_finish(ended.append)

    assert train_in_background(name, _config(tiny_llama_folder, max_steps=4), prepared_home) is job
    assert job.status().state == "running"
    assert job.wait(120)

    status = job.status()
    assert status.state == "finished" and status.has_adapter and status.error is None
    assert status.step == status.total == status.summary["total_steps"] == 4 and status.elapsed_s > 0
    assert (job.paths.adapter / "adapter_model.safetensors").exists()
    assert [row["step"] for row in job.curves()] == [1, 2, 3, 4]
    assert 0 < job.curves()[1]["val_loss"] < 20 and job.curves()[0]["val_loss"] is None
    assert "best" in {event["kind"] for event in job.alerts()}
    assert [s.state for s in ended] == ["finished"]

    train_in_background(name, _config(tiny_llama_folder, max_steps=4), prepared_home)  # trained already: no-op
    assert job.status().state == "finished" and len(ended) == 1

    job.start(_config(tiny_llama_folder, max_steps=2))  # a new run hides the last run's curves until it writes its own
    assert job.curves() == [] and job.alerts() == [] and job.status().step is None
    assert job.wait(120) and [row["step"] for row in job.curves()] == [1, 2] and len(ended) == 2


def test_stop_request_ends_cleanly_and_a_second_start_is_refused(prepared_home, tiny_llama_folder):
    name = _run(prepared_home, "stopped")
    job = training_job(name, prepared_home)
    config = _config(tiny_llama_folder, max_steps=6)
    job.start(config)
    with pytest.raises(JobRunning, match="already training"):
        training_job(name, prepared_home).start(config)
    assert job.stop() and job.status().stop_requested
    assert job.wait(120)

    status = job.status()
    assert status.state == "stopped" and status.has_adapter and not status.stop_requested
    assert status.summary["outcome"] == "stopped" and status.step == status.summary["steps"] < 6
    assert (job.paths.adapter / "adapter_model.safetensors").exists()
    assert "stopped" in {event["kind"] for event in job.alerts()}
    assert not job.stop(), "nothing to stop once ended"


def test_a_failure_is_captured_with_its_message(tmp_path, tiny_llama_folder):
    job = training_job("never-prepared", tmp_path)
    job.start(_config(tiny_llama_folder, max_steps=2))
    assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and not status.has_adapter and status.summary is None
    assert "no prepared data; run `workbench prepare --name never-prepared" in status.error
    assert status.step is None and job.curves() == [] and job.alerts() == []


def test_readers_skip_a_partly_written_last_line(tmp_path):
    metrics = tmp_path / "metrics.csv"
    header = "step,train_loss,val_loss,val_perplexity,lr,tokens_per_s,elapsed_s\n"
    metrics.write_text(header + "1,2.5,,,0.001,900,1.5\n2,2.25,2.4,11.02,0.001,910,3.0\n3,2.1,,")
    assert read_metrics(metrics) == [
        {"step": 1, "train_loss": 2.5, "val_loss": None, "val_perplexity": None, "lr": 0.001}
        | {"tokens_per_s": 900.0, "elapsed_s": 1.5},
        {"step": 2, "train_loss": 2.25, "val_loss": 2.4, "val_perplexity": 11.02, "lr": 0.001}
        | {"tokens_per_s": 910.0, "elapsed_s": 3.0},
    ]
    metrics.write_text(header[:20])
    assert read_metrics(metrics) == [] and read_metrics(tmp_path / "missing.csv") == []

    events = tmp_path / "events.jsonl"
    spike = {"step": 3, "kind": "spike", "message": "train loss 9.1 at step 3 is 3.0x its moving average"}
    events.write_text(json.dumps(spike) + "\n" + '{"step": 4, "kind": "ove')
    assert read_events(events) == [spike] and read_events(tmp_path / "missing.jsonl") == []
