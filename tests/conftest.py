import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty workspace, also set as WORKBENCH_HOME."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory):
    """A 2-layer random-init Llama saved as safetensors with the packaged model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.models import _dequantised_folder, resolve

    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(_dequantised_folder(resolve("smollm2-135m-instruct")))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    """(home, manifest): the demo prepared and indexed once per session; tests that change it work on copies."""
    from workbench.data.prepare import prepare
    from workbench.retrieval.index import build_index

    home = tmp_path_factory.mktemp("indexed")
    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    manifest = build_index("demo", home=home, progress=False)
    return home, manifest


def launch_locally(app, **launch) -> str:
    """Serve a Gradio app on a free loopback port without blocking; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch)
    return url
