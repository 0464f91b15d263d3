"""`make run`'s own path, end to end: the `workbench demo` command builds the UI and trains in the background, and the
fine-tuned variants join the arena's choices by themselves."""

import shutil
import socket
import subprocess
import sys
import time

import httpx
import yaml

from workbench.workspace import read_json, run_paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workbench_demo_trains_in_the_background_while_the_app_serves_and_then_offers_ft(
    demo_index, tiny_llama_folder, tmp_path
):
    from gradio_client import Client

    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)  # prepared and indexed: the demo skips both, as on a second `make run`
    probe = tmp_path / "probe.txt"
    probe.write_text("Plain general prose for the forgetting probe. It has only a couple of sentences.\n")
    settings = {"max_steps": 3, "batch_size": 4, "max_length": 128, "eval_every": 3, "general_text": str(probe)}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({"model": {"base": str(tiny_llama_folder)}, "finetune": settings}))
    port = _free_port()
    command = [sys.executable, "-m", "workbench.cli", "demo", "--home", str(home), "--config", str(config_file)]
    demo = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client, deadline = None, time.monotonic() + 120
        while client is None and time.monotonic() < deadline:
            assert demo.poll() is None, demo.stdout.read()
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except (OSError, httpx.HTTPError):  # not serving yet
                time.sleep(1)
        assert client is not None, "the app did not start"
        choices, training, deadline = [], "", time.monotonic() + 180
        while "ft" not in choices and time.monotonic() < deadline:
            _, variants, *rest = client.predict("", api_name="/on_load")
            choices = [value for _, value in variants["choices"]]
            training = next((o for o in rest if isinstance(o, str) and "fine-tuned variants" in o.lower()), "")
            time.sleep(1)
        assert {"base", "rag", "ft", "ft_rag"} <= set(choices), (training, (home / ".jobs" / "demo.log").read_text())
        assert "Fine-tuned variants ready" in training
        summary = read_json(run_paths("demo", home).adapter_manifest)
        assert summary["outcome"] == "completed" and summary["steps"] == 3
    finally:
        demo.terminate()
        demo.wait(60)
