import pytest
import torch

from workbench import models
from workbench.models import ModelNotAvailable, resolve


def test_packaged_short_names_resolve_without_importing_their_packages():
    source = resolve("smollm2-135m-instruct")
    assert source.kind == "gguf" and source.weights_file.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert source.weights_file.is_file()
    embedder = resolve("all-minilm-l6-v2")
    assert embedder.kind == "folder" and (embedder.path / "modules.json").is_file()


def test_unknown_specs_fail_with_what_to_do(tmp_path):
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="packaged short name"):
        resolve("./missing-folder")
    assert resolve("some-org/some-model").kind == "hub"
    with pytest.raises(ModelNotAvailable, match="is a packaged embedder, not a causal_lm; use smollm2-135m-instruct"):
        models.load_causal_lm("all-minilm-l6-v2")
    with pytest.raises(ModelNotAvailable, match="(?s)some-org/some-model: could not load.*packaged short name"):
        models.load_causal_lm("some-org/some-model")


def test_cpu_is_fp32_and_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert models.pick_device("auto") == ("cpu", torch.float32)
    with pytest.raises(ModelNotAvailable, match="no CUDA GPU"):
        models.pick_device("cuda")


def test_local_folder_loads_once_per_process_and_generates(tiny_llama_folder):
    model, tokenizer = models.load_causal_lm(str(tiny_llama_folder))
    again, _ = models.load_causal_lm(str(tiny_llama_folder))
    assert again is model and not model.training and tokenizer.padding_side == "left"
    reply = models.chat([{"role": "user", "content": "hi"}], str(tiny_llama_folder), max_new_tokens=5)
    assert isinstance(reply, str)


def test_packaged_model_answers_offline(monkeypatch):
    """End to end on the real packaged model, with the hub switched off."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reply = models.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}], max_new_tokens=12
    )
    assert "Paris" in reply
    cached = models._dequantised_folder(resolve("smollm2-135m-instruct"))
    assert (cached / "model.safetensors").is_file() and not list(cached.glob("*.bin"))


def test_packaged_embedder_gives_normalisable_vectors():
    embedder = models.load_embedder("all-minilm-l6-v2")
    vectors = embedder.encode(["Skylark S2 price", "How much is the Skylark S2?", "bread rises with yeast"])
    assert vectors.shape == (3, 384)
    similar = vectors[0] @ vectors[1] / (sum(vectors[0] ** 2) * sum(vectors[1] ** 2)) ** 0.5
    different = vectors[0] @ vectors[2] / (sum(vectors[0] ** 2) * sum(vectors[2] ** 2)) ** 0.5
    assert similar > different
