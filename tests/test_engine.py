import itertools
import json
import shutil
import threading
import urllib.error
import urllib.request

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from workbench.config import Config
from workbench.engine import Engine
from workbench.models import fresh_causal_lm
from workbench.multi_lora import AdapterBank, AdapterUnusable
from workbench.packed_linear import pack_linears
from workbench.serve_api import make_server
from workbench.variants import Decoding, VariantUnavailable
from workbench.workspace import run_paths

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTION = "How long is the return window for the Skylark S3 Pro?"


def random_adapter(spec: str, folder, seed: int = 0, rank: int = 8, strength: float = 0.05) -> None:
    """A LoRA adapter with small random weights in both factors, so it changes the model's output."""
    torch.manual_seed(seed)
    base, _ = fresh_causal_lm(spec)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=16, target_modules=MODULES, init_lora_weights=False))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.mul_(strength)
    model.save_pretrained(folder)


def _logits(model, ids, mask=None):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits


def test_adapter_rows_match_peft_and_base_rows_match_the_base_model(tiny_llama_folder, tmp_path):
    spec = str(tiny_llama_folder)
    random_adapter(spec, tmp_path / "a", seed=1)
    random_adapter(spec, tmp_path / "b", seed=2, rank=4)
    ids = torch.tensor([[5, 17, 230, 4000, 12, 9], [7, 7, 300, 1, 2, 3], [11, 12, 13, 14, 15, 16]])

    plain, _ = fresh_causal_lm(spec)
    expected_base = _logits(plain, ids)
    expected = {}
    for name in ("a", "b"):
        peft_model = PeftModel.from_pretrained(fresh_causal_lm(spec)[0], tmp_path / name)
        expected[name] = _logits(peft_model, ids)

    model, _ = fresh_causal_lm(spec)
    bank = AdapterBank(model, {"a": tmp_path / "a", "b": tmp_path / "b"})
    bank.set_rows([None, None, None])
    assert torch.equal(_logits(model, ids), expected_base)  # no adapter in the batch: exactly the base layers
    for packed in (False, True):
        if packed:  # the same with oneDNN-packed fp32 weights (bf16 is checked end to end below)
            assert pack_linears(model, torch.float32) > 0
        bank.set_rows(["a", None, "b"])
        mixed = _logits(model, ids)
        torch.testing.assert_close(mixed[0], expected["a"][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mixed[1], expected_base[1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mixed[2], expected["b"][2], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(expected["a"], expected_base, atol=1e-3)  # the adapters really change the output


def test_packed_linear_matches_the_dense_layer():
    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 48)
    model = torch.nn.Sequential(dense)
    x = torch.randn(3, 5, 64)
    expected = dense(x).detach()
    pack_linears(model, torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_unusable_adapters_are_clear_errors(tiny_llama_folder, tmp_path):
    model, _ = fresh_causal_lm(str(tiny_llama_folder))
    with pytest.raises(AdapterUnusable, match="adapter_config.json"):
        AdapterBank(model, {"ft": tmp_path})
    random_adapter(str(tiny_llama_folder), tmp_path / "dora")
    config_file = tmp_path / "dora" / "adapter_config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"use_dora": True}))
    with pytest.raises(AdapterUnusable, match="use_dora"):
        AdapterBank(model, {"ft": tmp_path / "dora"})


@pytest.fixture(scope="module")
def engine_home(demo_index, tmp_path_factory):
    """The indexed demo with a random adapter standing in for a fine-tuned one."""
    home = tmp_path_factory.mktemp("engine") / "home"
    shutil.copytree(demo_index[0], home)
    random_adapter("smollm2-135m-instruct", run_paths("demo", home).adapter, strength=0.5)
    return home


@pytest.fixture(scope="module")
def engine(engine_home):
    config = Config.model_validate({"chat": {"max_new_tokens": 24}})
    return Engine(config, "demo", engine_home)


def test_batched_turn_equals_each_variant_alone_and_streams_growing_text(engine):
    texts: dict[str, list[str]] = {}
    answers = {}
    for event in engine.stream(QUESTION):
        texts.setdefault(event.variant, []).append(event.text)
        if event.done:
            answers[event.variant] = event.answer
    assert list(answers) and set(answers) == {"base", "ft", "rag", "ft_rag"}
    for name, seen in texts.items():
        for before, after in itertools.pairwise(seen[:-1]):
            assert after.startswith(before) and after != before, name  # the text only grows
    for name, answer in answers.items():
        alone = engine.answer(QUESTION, [name])[name]
        assert alone.text == answer.text, name
        assert alone.tokens_out == answer.tokens_out
    assert answers["base"].text != answers["ft"].text  # the ft row really runs the adapter, base rows do not
    assert answers["rag"].text != answers["base"].text


QUESTIONS = [QUESTION, "What does the Verdance Cloud Pro plan cost per month?", "Who makes the Skylark S3 Pro?"]


@pytest.fixture(scope="module")
def fp32_engine(engine_home):
    """The fp32 path, forced (on a CPU with native bf16 the default engine packs bf16 weights)."""
    config = Config.model_validate({"chat": {"max_new_tokens": 16}, "model": {"cpu_precision": "fp32"}})
    return Engine(config, "demo", engine_home)


@pytest.mark.parametrize(
    "precision, decoding",
    [
        ("auto", Decoding(max_new_tokens=16)),
        ("auto", Decoding(max_new_tokens=16, temperature=0.9, top_p=0.95, seed=3)),
        ("fp32", Decoding(max_new_tokens=16)),
    ],
    ids=["native-greedy", "native-seeded-sampling", "fp32-greedy"],
)
def test_answers_are_identical_alone_in_turns_of_2_and_4_and_in_a_12_row_batch_on_2_threads(
    engine, fp32_engine, precision, decoding
):
    chosen = engine if precision == "auto" else fp32_engine
    if precision == "fp32":
        assert chosen.precision.startswith("float32")
    variants = ["base", "ft", "rag", "ft_rag"]
    # 3 questions x 4 variants on 2 threads, each decoding a group whose free slots the waiting rows take
    twelve = chosen.answer_batch(QUESTIONS, variants, decoding, workers=2)
    # a 4-way and a 2-way turn answer as the batch did; every variant answers alone as the batch did on another
    # question (alone on every question would cost as much again and check the same rows)
    four = chosen.answer(QUESTIONS[0], variants, decoding=decoding)
    two = chosen.answer(QUESTIONS[0], ["ft_rag", "base"], decoding=decoding)
    for name in variants:
        assert four[name].text == twelve[0][name].text and twelve[0][name].question == QUESTIONS[0], name
        if name in two:
            assert two[name].text == twelve[0][name].text, name
    for question, batched, names in zip(QUESTIONS[1:], twelve[1:], [["ft", "rag"], ["ft_rag", "base"]]):
        for name in names:
            alone = chosen.answer(question, [name], decoding=decoding)[name]
            assert alone.text == batched[name].text and alone.tokens_out == batched[name].tokens_out, (question, name)
            assert batched[name].question == question
    assert len({answers["ft"].text for answers in twelve}) > 1  # the rows really answer different questions


def test_the_engine_computes_on_its_own_fixed_thread_count_whatever_the_process_uses(engine):
    """A different thread count changes near-ties (seen: a RAG answer with or without a trailing "[1] ..."), so the
    engine pins its threads; answers are then the same on a quiet and on a busy machine."""
    from workbench.engine import ENGINE_THREADS

    answers = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        answers[threads] = {k: a.text for k, a in engine.answer(QUESTION).items()}
        assert torch.get_num_threads() == ENGINE_THREADS
    assert answers[1] == answers[2]


def test_row_attention_gives_each_row_exactly_its_unpadded_attention():
    from types import SimpleNamespace

    from workbench.row_attention import row_attention

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=2, is_causal=True, training=False)
    lengths, width = [5, 0, 9, 1], 9
    query, key, value = torch.randn(4, 4, 1, 8), torch.randn(4, 2, width, 8), torch.randn(4, 2, width, 8)
    out, _ = row_attention(module, query, key, value, None, row_lengths=lengths, scaling=0.3, dropout=0.0)
    for b, length in enumerate(lengths):
        if length == 0:
            assert torch.count_nonzero(out[b]) == 0  # a padding row
            continue
        start = width - length
        alone, _ = row_attention(
            module,
            query[b : b + 1],
            key[b : b + 1, :, start:].clone(),
            value[b : b + 1, :, start:].clone(),
            None,
            row_lengths=[length],
            scaling=0.3,
        )
        assert torch.equal(out[b : b + 1], alone)
        weights = torch.softmax(query[b] @ key[b, :, start:].repeat_interleave(2, 0).transpose(-1, -2) * 0.3, -1)
        torch.testing.assert_close(out[b].transpose(0, 1), weights @ value[b, :, start:].repeat_interleave(2, 0))


def test_answers_record_what_produced_them(engine):
    answers = engine.answer(QUESTION, ["base", "rag", "ft_rag"])
    base, rag, ft_rag = answers["base"], answers["rag"], answers["ft_rag"]
    assert base.chunk_ids == [] and base.adapter_id is None and base.index_id is None
    assert len(rag.chunk_ids) == engine.config.chat.rag_chunks == len(rag.chunk_scores)
    assert rag.chunk_ids == ft_rag.chunk_ids and rag.index_id and ft_rag.adapter_id
    assert any("skylark" in chunk_id for chunk_id in rag.chunk_ids)
    assert "Sources:" in rag.prompt[-1]["content"] and rag.prompt[-1]["content"].endswith(QUESTION)
    assert base.prompt[-1]["content"] == QUESTION and base.prompt[0] == rag.prompt[0]  # same system prompt
    for answer in answers.values():
        assert answer.tokens_in > 0 and 0 < answer.tokens_out <= 24
        assert 0 < answer.ttft_s <= answer.total_s
        assert answer.finish_reason in {"stop", "length"}
        assert answer.decoding == Decoding.from_config(engine.config.chat).to_dict()
        assert answer.model_id.startswith("smollm2-135m-instruct@") and answer.precision == engine.precision
    assert rag.tokens_in > base.tokens_in + 200


def test_sampling_is_seeded_per_variant(engine):
    sampled = Decoding(max_new_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    together = engine.answer(QUESTION, ["base", "ft"], decoding=sampled)
    alone = engine.answer(QUESTION, ["ft"], decoding=sampled)
    assert together["ft"].text == alone["ft"].text


def test_history_is_kept_per_variant(engine):
    first = engine.answer("What is the Skylark S3 Pro?", ["base"])["base"]
    history = [{"role": "user", "content": first.question}, {"role": "assistant", "content": first.text}]
    second = engine.answer("And its return window?", ["base"], histories={"base": history})["base"]
    assert second.prompt[1:3] == history and second.tokens_in > first.tokens_in


def test_unavailable_variants_say_what_to_build(tmp_path, engine):
    bare = Engine(Config(), None, tmp_path)
    assert bare.available() == ["base"]
    with pytest.raises(VariantUnavailable, match="workbench finetune"):
        bare.answer(QUESTION, ["ft"])
    with pytest.raises(VariantUnavailable, match="workbench index"):
        bare.answer(QUESTION, ["rag"])
    with pytest.raises(VariantUnavailable, match="remote:NAME"):
        engine.answer(QUESTION, ["gpt"])


@pytest.fixture(scope="module")
def api(engine):
    server = make_server(engine, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_remote_variant_answers_through_the_api_like_the_local_one(engine, api):
    config = engine.config.model_copy(deep=True)
    config.chat.remotes = {"served": {"base_url": api, "model": "ft"}}
    client = Engine(config)  # only the base model locally; ft comes over HTTP, streamed
    events = list(client.stream(QUESTION, ["base", "remote:served"]))
    remote = [e for e in events if e.variant == "remote:served"]
    assert len(remote) > 2 and remote[-1].done
    answer = remote[-1].answer
    assert answer.error is None and answer.tokens_out > 0 and answer.ttft_s < answer.total_s
    assert answer.text == engine.answer(QUESTION, ["ft"])["ft"].text


def test_api_completions_models_and_errors(engine, api):
    models = json.loads(urllib.request.urlopen(f"{api}/models", timeout=30).read())
    assert {m["id"] for m in models["data"]} == {"base", "prompt", "ft", "rag", "ft_rag"}
    reply = _post(f"{api}/chat/completions", {"model": "rag", "messages": [{"role": "user", "content": QUESTION}]})
    assert reply["choices"][0]["message"]["content"] == engine.answer(QUESTION, ["rag"])["rag"].text
    assert reply["workbench"]["chunk_ids"] and reply["usage"]["completion_tokens"] > 0
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(f"{api}/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert info.value.code == 400 and "model must be one of" in info.value.read().decode()


def test_unreachable_remote_is_recorded_as_an_error(engine):
    config = Config.model_validate({"chat": {"remotes": {"gone": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}}})
    answer = Engine(config).answer(QUESTION, ["remote:gone"])["remote:gone"]
    assert answer.finish_reason == "error" and "127.0.0.1:9" in answer.error and answer.text == ""


def test_cli_ask_prints_every_variant(engine_home, tmp_path, capsys):
    from workbench.cli import main

    config_file = tmp_path / "short.yaml"
    config_file.write_text("chat:\n  max_new_tokens: 8\n")
    args = ["ask", "--name", "demo", "--home", str(engine_home), "--config", str(config_file)]
    assert main([*args, "--variants", "base,rag", QUESTION]) == 0
    out = capsys.readouterr().out
    assert "== base" in out and "== rag" in out and "; sources " in out and "skylark" in out
    assert main([*args, "--variants", "gpt", QUESTION]) == 2
    assert "unknown variant 'gpt'" in capsys.readouterr().err


def test_growing_cache_layer_keeps_each_placed_row_as_the_stock_layer_would():
    from transformers.cache_utils import DynamicLayer

    from workbench.engine import DECODE_ROWS, _GrowingLayer

    torch.manual_seed(0)
    growing, stock = _GrowingLayer(), [DynamicLayer() for _ in range(DECODE_ROWS)]
    live: list[int] = []

    def place(slot: int, length: int) -> None:
        keys, values = torch.randn(1, 2, length, 8), torch.randn(1, 2, length, 8)
        growing.place(slot, keys, values)
        stock[slot] = DynamicLayer()
        stock[slot].update(keys, values)
        live.append(slot)

    def steps(count: int) -> None:
        for _ in range(count):
            keys, values = torch.randn(DECODE_ROWS, 2, 1, 8), torch.randn(DECODE_ROWS, 2, 1, 8)
            growing.update(keys, values)
            for slot in live:
                stock[slot].update(keys[slot : slot + 1], values[slot : slot + 1])

    place(0, 300)
    steps(5)
    place(2, 500)  # longer than the layer: every row moves right
    steps(3)
    place(1, 40)  # shorter: it ends with the others
    steps(300)  # past the first spare room
    for slot in live:
        length = stock[slot].get_seq_length()
        assert torch.equal(growing.keys[slot : slot + 1, :, -length:], stock[slot].keys), slot
        assert torch.equal(growing.values[slot : slot + 1, :, -length:], stock[slot].values), slot
    assert growing.get_seq_length() == 500 + 303


def test_named_adapters_answer_side_by_side_and_more_adapters_change_no_answer(engine, engine_home, tmp_path):
    """`ft_rag` takes the raft-trained adapter, `ft:A` any adapter by name; attaching more adapters to the engine
    leaves every other variant's answer as it was (a sweep's new adapters never change a stored answer's meaning)."""
    home = tmp_path / "home"
    shutil.copytree(engine_home, home)
    random_adapter("smollm2-135m-instruct", run_paths("demo", home, "raft").adapter, seed=5, strength=0.5)
    random_adapter("smollm2-135m-instruct", run_paths("demo", home, "trial-1").adapter, seed=6, strength=0.5)
    served = Engine(Config.model_validate({"chat": {"max_new_tokens": 24}}), "demo", home)
    assert served.aliases == {"ft": "default", "ft_rag": "raft"}
    assert set(served.local_variants()) >= {"ft:raft", "ft:trial-1", "ft_rag:default", "ft_rag:trial-1"}
    assert "ft:default" not in served.local_variants()  # that is `ft`
    chosen = ["base", "ft", "ft:trial-1", "ft_rag"]
    answers = served.answer(QUESTION, chosen)
    assert answers["ft_rag"].adapter_id == served.adapter_ids["raft"] != served.adapter_ids["default"]
    assert answers["ft:trial-1"].adapter_id == served.adapter_ids["trial-1"]
    assert answers["ft:trial-1"].text != answers["ft"].text
    alone = engine.answer(QUESTION, ["base", "ft", "rag"])  # the engine with the default adapter only
    assert alone["ft"].text == answers["ft"].text and alone["base"].text == answers["base"].text
    assert alone["rag"].text == served.answer(QUESTION, ["rag"])["rag"].text
    with pytest.raises(VariantUnavailable, match="no adapter 'nope' .*its adapters: default, raft, trial-1"):
        served.answer(QUESTION, ["ft:nope"])


def test_an_answer_ends_at_a_repeated_sentence_or_line():
    from workbench.engine import _without_repeat

    looped = "The sources do not contain the answer. The sources do not contain the answer. The"
    assert _without_repeat(looped) == "The sources do not contain the answer."
    numbered = "Versions:\n1. Canopy OS 4.7.2\n2. Canopy OS 4.7.2\n3."
    assert _without_repeat(numbered) == "Versions:\n1. Canopy OS 4.7.2"  # list numbers aside, the line repeats
    assert _without_repeat("It is 45 days. It is") is None  # the repeat is not complete yet
    assert _without_repeat("Yes. Yes. No") is None  # too short to call a loop
    assert _without_repeat("Step 1. Open the lid. Step 2. Open the lid gently.") is None


def test_a_temperature_too_small_to_divide_by_decodes_greedily():
    from workbench.engine import _Row
    from workbench.variants import Decoding

    logits = torch.tensor([1.0, 30.0, -5.0, 29.5])
    for temperature in (1e-38, 1e-45):
        row = _Row(None, "q", [], [], None, Decoding(temperature=temperature), [], "t")
        assert row.next_token(logits) == 1
