import csv
import json
import re
import threading

import pytest
import torch
from conftest import DEMO
from peft import PeftModel
from safetensors.torch import load_file

from workbench.config import Config
from workbench.data.prepare import prepare
from workbench.finetune import METRIC_COLUMNS, finetune
from workbench.models import fresh_causal_lm
from workbench.train_data import (
    IGNORE,
    collate,
    encode,
    length_grouped_batches,
    length_pieces,
    masked_lm_loss,
    recipe_conversations,
)
from workbench.workspace import read_json, read_metrics, run_paths


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    return home


def _config(tiny_llama_folder, **finetune):
    settings = {"batch_size": 16, "eval_every": 2, "checkpoint_every": 2, "learning_rate": 5e-3} | finetune
    return Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "finetune": settings})


def test_labels_mask_every_prompt_token(tiny_llama_folder):
    _, tokenizer = fresh_causal_lm(str(tiny_llama_folder))
    conversation = [
        {"role": "user", "content": "What does the Skylark S2 cost?"},
        {"role": "assistant", "content": "It costs €1,240."},
    ]
    item = encode(conversation, tokenizer, "Be brief.", max_length=512)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, conversation[0]],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert item.labels[: len(prompt)] == [IGNORE] * len(prompt)
    reply = item.labels[len(prompt) :]
    assert IGNORE not in reply and tokenizer.decode(reply).startswith("It costs €1,240.<|im_end|>")
    with pytest.raises(ValueError, match="must end with an assistant message"):
        encode(conversation[:1], tokenizer, None, 512)


def test_masked_loss_equals_the_models_own_loss(tiny_llama_folder):
    model, tokenizer = fresh_causal_lm(str(tiny_llama_folder))
    items = [
        encode([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenizer, "Be brief.", 512)
        for q, a in [("Price of the S2?", "€1,240."), ("Who is the CEO of Marrowgate Systems?", "Ilse Varnhold.")]
    ]
    batch = collate(items, tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(masked_lm_loss(model, batch), model(**batch).loss, atol=1e-5)


def test_length_pieces_split_a_batch_at_the_least_cost():
    import itertools
    import random

    def cost(pieces, lengths, piece_cost):
        return sum(len(p) * max(lengths[i] for i in p) + piece_cost for p in pieces)

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(20, 300) for _ in range(rng.randint(1, 9))]
        piece_cost = rng.choice([0, 16, 64, 400])
        pieces = length_pieces(lengths, piece_cost)
        assert sorted(i for p in pieces for i in p) == list(range(len(lengths)))
        flat = [lengths[i] for p in pieces for i in p]
        assert flat == sorted(lengths)  # pieces run shortest first, each of neighbouring lengths
        ordered = sorted(lengths)
        cheapest = min(  # every way to cut the sorted batch into consecutive pieces
            sum(len(ordered[a:b]) * ordered[b - 1] + piece_cost for a, b in zip((0, *cuts), (*cuts, len(ordered))))
            for k in range(len(ordered))
            for cuts in itertools.combinations(range(1, len(ordered)), k)
        )
        assert cost(pieces, lengths, piece_cost) == cheapest
    assert length_pieces([50, 300, 60, 290], 0) == [[0], [2], [3], [1]]
    assert length_pieces([50, 300, 60, 290], 10_000) == [[0, 2, 3, 1]]
    assert length_pieces([50, 300, 60, 290]) == [[0, 2], [3, 1]]


def test_a_batch_run_in_pieces_has_the_gradient_of_the_whole_batch(tiny_llama_folder):
    from peft import get_peft_model

    from workbench.finetune import _share_backward, lora_config
    from workbench.parallel import SOLO

    model, tokenizer = fresh_causal_lm(str(tiny_llama_folder))
    settings = Config().finetune.model_copy(update={"lora_dropout": 0.0})  # the same function both ways
    model = get_peft_model(model, lora_config(settings))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; nonzero so every LoRA weight gets a gradient
            torch.nn.init.normal_(param, std=0.02)
    words = ["the", "S2", "costs", "1,240", "euros", "and", "ships", "from", "the", "depot", "in", "ten", "days"]
    items = [
        encode(
            [
                {"role": "user", "content": " ".join(words[: n % 7 + 2])},
                {"role": "assistant", "content": " ".join((words * 4)[:n])},
            ],
            tokenizer,
            "Be brief.",
            512,
        )
        for n in (2, 44, 3, 40, 4, 36, 1, 48)
    ]
    assert len(length_pieces([len(item.input_ids) for item in items])) > 1
    trainable = [p for p in model.parameters() if p.requires_grad]

    def gradients(run):
        model.zero_grad()
        loss = run()
        return loss, [p.grad.clone() for p in trainable]

    def whole_batch() -> float:
        loss = masked_lm_loss(model, collate(items, tokenizer.pad_token_id))
        loss.backward()
        return loss.item()

    loss, expected = gradients(whole_batch)
    pieced_loss, pieced = gradients(lambda: _share_backward(model, items, SOLO, tokenizer.pad_token_id, 1))
    assert pieced_loss == pytest.approx(loss, rel=1e-5)
    for got, want in zip(pieced, expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    assert sum(float(g.norm()) for g in expected) > 0


def test_length_grouped_batches_cover_everything_once_and_group_lengths():
    lengths = [(i * 37) % 200 + 10 for i in range(500)]
    batches = length_grouped_batches(lengths, 8, seed=3)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    assert batches == length_grouped_batches(lengths, 8, seed=3) != length_grouped_batches(lengths, 8, seed=4)
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert padding < 0.1 * sum(lengths)
    # smaller windows trade padding for batches whose lengths mix; 0 is a plain shuffle
    shares = {}
    for window in (32, 4, 0):
        batches = length_grouped_batches(lengths, 8, seed=3, window=window)
        assert sorted(i for batch in batches for i in batch) == list(range(500))
        padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        shares[window] = sum(lengths) / padded
    assert shares[32] > shares[4] > shares[0]
    assert length_grouped_batches(lengths, 8, seed=3, window=0) == length_grouped_batches(lengths, 8, 3, 0)


def test_recipes_expand_only_the_train_split(prepared_home):
    paths = run_paths("demo", prepared_home)
    qa = recipe_conversations(paths, "train", "qa")
    paraphrase = recipe_conversations(paths, "train", "paraphrase")
    docs = recipe_conversations(paths, "train", "qa+docs")
    assert len(paraphrase) == 3 * len(qa) and len(docs) > len(qa)
    assert recipe_conversations(paths, "val", "paraphrase") == recipe_conversations(paths, "val", "qa")


def test_tiny_model_trains_lora_only_and_writes_its_outputs(prepared_home, tiny_llama_folder):
    summary = finetune("demo", _config(tiny_llama_folder), prepared_home, max_steps=4, progress=False)
    paths = run_paths("demo", prepared_home)
    assert summary["steps"] == 4 and summary["outcome"] == "completed" and summary["best_step"] in (2, 4)
    adapter = paths.root / "adapters" / "default"
    assert {p.name for p in (adapter / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    rows = list(csv.DictReader((adapter / "metrics.csv").open()))
    assert list(rows[0]) == METRIC_COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["val_loss"] and not rows[0]["val_loss"]
    assert read_json(adapter / "manifest.json")["trainable_params"] == summary["trainable_params"] > 0
    assert summary["forgetting"]["base_perplexity"] > 0

    base, _ = fresh_causal_lm(str(tiny_llama_folder))
    trained = PeftModel.from_pretrained(base, paths.adapter)
    untouched, _ = fresh_causal_lm(str(tiny_llama_folder))
    original = dict(untouched.named_parameters())
    base_weights = {
        n.replace(".base_layer", ""): w for n, w in trained.get_base_model().named_parameters() if "lora_" not in n
    }
    assert base_weights.keys() == original.keys()
    for name, weight in base_weights.items():
        assert torch.equal(weight, original[name]), f"base weight {name} changed"
    lora_b = [w for name, w in load_file(paths.adapter / "adapter_model.safetensors").items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: it moved
    output = trained.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert output.shape == (1, 6)


def test_stop_request_ends_cleanly_and_resume_reaches_the_same_step(prepared_home, tiny_llama_folder):
    config = _config(tiny_llama_folder)
    stop = threading.Event()
    stop.set()
    first = finetune("demo", config, prepared_home, max_steps=6, stop=stop, progress=False)
    assert first["outcome"] == "stopped" and first["steps"] == 1
    paths = run_paths("demo", prepared_home)
    assert (paths.adapter / "adapter_model.safetensors").exists()
    resumed = finetune("demo", config, prepared_home, max_steps=6, resume=True, progress=False)
    assert resumed["steps"] == 6 and resumed["outcome"] == "completed"
    steps = [int(r["step"]) for r in csv.DictReader(paths.metrics.open())]
    assert steps == [1, 2, 3, 4, 5, 6]
    kinds = [json.loads(line)["kind"] for line in paths.events.read_text().splitlines()]
    assert kinds.count("stopped") == 1


def test_finetune_needs_prepared_data_and_a_checkpoint_to_resume(tmp_path, tiny_llama_folder, prepared_home):
    from workbench.data.loaders import BadInputError

    with pytest.raises(BadInputError, match="no prepared data; run `workbench prepare --name nope"):
        finetune("nope", _config(tiny_llama_folder), tmp_path, progress=False)
    fresh = tmp_path / "h"
    prepare("r", [DEMO / "corpus"], DEMO / "qa.jsonl", home=fresh, progress=False)
    with pytest.raises(BadInputError, match="no checkpoint to resume from"):
        finetune("r", _config(tiny_llama_folder), fresh, resume=True, progress=False)


def test_a_run_without_training_examples_is_a_clear_error_naming_the_split_file(tmp_path, tiny_llama_folder):
    """What prepare wrote before it refused a corpus without examples: three empty splits."""
    from workbench.data.loaders import BadInputError

    paths = run_paths("empty", tmp_path)
    paths.data.mkdir(parents=True)
    for name in ("train", "val", "test"):
        paths.split(name).write_text("")
    message = rf"run 'empty': {re.escape(str(paths.split('train')))} has no training examples; add a QA set \(--qa\)"
    with pytest.raises(BadInputError, match=message + r".*re-run `workbench prepare --name empty"):
        finetune("empty", _config(tiny_llama_folder), tmp_path, progress=False)


def test_packaged_model_finetunes_end_to_end_from_the_cli(prepared_home, capsys):
    """Two real steps on the packaged model through the CLI: adapter, curves and forgetting figures appear."""
    from workbench.cli import main

    config = prepared_home / "two-steps.yaml"
    config.write_text("finetune: {eval_every: 2, batch_size: 4}\n")
    assert (
        main(["finetune", "--name", "demo", "--home", str(prepared_home), "--max-steps", "2", "--config", str(config)])
        == 0
    )
    assert "finetuned demo, adapter default: completed after 2 steps" in capsys.readouterr().out
    summary = read_json(run_paths("demo", prepared_home).adapter_manifest)
    assert summary["base_model"] == "smollm2-135m-instruct" and len(summary["base_model_sha256"]) == 64
    assert 1 < summary["forgetting"]["base_perplexity"] < 100 and summary["best_val_loss"] < 10


def test_sigkill_then_resume_ends_at_the_same_step_with_a_comparable_loss(tmp_path, tiny_llama_folder):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    settings = {"batch_size": 16, "eval_every": 8, "checkpoint_every": 4, "learning_rate": 5e-3}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({"model": {"base": str(tiny_llama_folder)}, "finetune": settings}))
    homes = {kind: tmp_path / kind for kind in ("killed", "straight")}
    for home in homes.values():
        prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "finetune",
        "--name",
        "demo",
        "--max-steps",
        "40",
        "--config",
        str(config_file),
        "--home",
    ]
    metrics = run_paths("demo", homes["killed"]).metrics
    process = subprocess.Popen(command + [str(homes["killed"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 9):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = len(metrics.read_text().splitlines()) - 1
    assert 8 <= rows_at_kill < 24, "the run should have been killed part-way"

    config = Config.model_validate(yaml.safe_load(config_file.read_text()))
    resumed = finetune("demo", config, homes["killed"], max_steps=24, resume=True, progress=False)
    straight = finetune("demo", config, homes["straight"], max_steps=24, progress=False)
    assert resumed["steps"] == straight["steps"] == 24
    steps = [int(r["step"]) for r in csv.DictReader(metrics.open())]
    assert steps == list(range(1, 25))
    assert abs(resumed["best_val_loss"] - straight["best_val_loss"]) < 0.05 * straight["best_val_loss"]


def test_raft_examples_show_the_gold_chunk_among_distractors_in_the_engines_prompt(demo_index):
    from workbench.retrieval.index import Retriever
    from workbench.train_data import raft_conversations

    home, _ = demo_index
    settings = Config().finetune.model_copy(update={"raft_distractors": 2, "raft_no_gold_share": 0.25})
    paths = run_paths("demo", home)
    retriever = Retriever.load("demo", Config(), home)
    rows = [json.loads(line) for line in paths.split("train").read_text().splitlines()]
    conversations = raft_conversations(paths, "train", retriever, settings)
    assert conversations == raft_conversations(paths, "train", retriever, settings)  # seeded
    with_gold = 0
    gold_texts = {}
    for chunk in retriever.chunks:
        gold_texts.setdefault(chunk.doc_id, []).append(chunk.text.strip())
    for row, conversation in zip(rows, conversations):
        prompt = conversation[0]["content"]
        assert prompt.startswith("Sources:") and prompt.endswith(f"Question: {row['question']}")
        assert re.findall(r"\n\[(\d)\] ", prompt) == ["1", "2", "3"]  # the gold chunk and two distractors
        assert conversation[1] == row["messages"][-1]
        docs = row.get("doc_ids") or ([row["doc_id"]] if row.get("doc_id") else [])
        with_gold += any(text in prompt for d in docs for text in gold_texts.get(d, []))
    answerable = sum(bool(r.get("doc_ids") or r.get("doc_id")) for r in rows)
    assert 0.6 * answerable < with_gold < 0.9 * answerable  # about 1 - no_gold_share of them see their gold chunk


def test_raft_trains_its_own_adapter_beside_the_default_one(demo_index, tiny_llama_folder, tmp_path):
    import shutil

    from workbench.data.loaders import BadInputError

    home = tmp_path / "home"
    shutil.copytree(demo_index[0], home)
    config = _config(tiny_llama_folder, recipe="raft", max_length=1024)
    summary = finetune("demo", config, home, max_steps=2, progress=False)
    ft, raft = run_paths("demo", home), run_paths("demo", home, "raft")
    assert summary["recipe"] == "raft" and summary["adapter"] == "raft"
    assert (raft.adapter / "adapter_model.safetensors").is_file() and raft.metrics.is_file()
    assert read_json(raft.adapter_manifest)["recipe"] == "raft"
    assert not ft.adapter.exists() and not ft.metrics.exists() and not ft.adapter_manifest.exists()

    shutil.rmtree(home / "indexes")
    with pytest.raises(BadInputError, match="workbench index --name demo"):
        finetune("demo", config, home, max_steps=1, progress=False)


def test_examples_whose_answer_would_be_cut_off_are_a_clear_error(prepared_home, tiny_llama_folder):
    from workbench.data.loaders import BadInputError

    with pytest.raises(BadInputError, match="finetune.max_length=24: .* lose their whole answer"):
        finetune("demo", _config(tiny_llama_folder, max_length=24), prepared_home, max_steps=1, progress=False)


def test_two_launched_processes_train_the_adapter_one_process_would(tmp_path, tiny_llama_folder):
    """torchrun (what `accelerate launch` starts) on CPU with gloo: each process takes half of every batch, the
    gradients are summed, and the run matches the single-process one; one process writes, one summary prints."""
    import subprocess
    import sys

    import yaml

    settings = {"batch_size": 16, "eval_every": 2, "checkpoint_every": 2, "learning_rate": 5e-3, "lora_dropout": 0.0}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({"model": {"base": str(tiny_llama_folder)}, "finetune": settings}))
    homes = {kind: tmp_path / kind for kind in ("two", "one")}
    for home in homes.values():
        prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = ["-m", "workbench.cli", "finetune", "--name", "demo", "--max-steps", "4", "--config", str(config_file)]
    done = subprocess.run(
        launcher + command + ["--home", str(homes["two"])], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finetuned demo,") == 1, done.stdout

    config = Config.model_validate(yaml.safe_load(config_file.read_text()))
    finetune("demo", config, homes["one"], max_steps=4, progress=False)
    runs = {kind: run_paths("demo", home) for kind, home in homes.items()}
    curves = {kind: list(csv.DictReader(paths.metrics.open())) for kind, paths in runs.items()}
    assert [int(r["step"]) for r in curves["two"]] == [1, 2, 3, 4], "one writer: no duplicated rows"
    for two, one in zip(curves["two"], curves["one"]):
        assert float(two["train_loss"]) == pytest.approx(float(one["train_loss"]), rel=1e-3)
        assert (two["val_loss"] == "") == (one["val_loss"] == "")
        if one["val_loss"]:
            assert float(two["val_loss"]) == pytest.approx(float(one["val_loss"]), rel=1e-3)
    weights = {kind: load_file(paths.adapter / "adapter_model.safetensors") for kind, paths in runs.items()}
    assert weights["two"].keys() == weights["one"].keys()
    moved = sum(float(w.norm()) for k, w in weights["one"].items() if "lora_B" in k)
    differ = sum(float((weights["two"][k] - w).norm()) for k, w in weights["one"].items() if "lora_B" in k)
    assert moved > 0 and differ < 0.02 * moved
    assert read_json(runs["two"].adapter_manifest)["steps"] == 4


def test_replay_mixes_general_prose_into_training_and_the_probe_measures_on_prose_never_replayed(
    prepared_home, tiny_llama_folder, tmp_path, monkeypatch
):
    import workbench.finetune as finetune_module
    from workbench.data.loaders import BadInputError

    seen = {}
    real = finetune_module.length_grouped_batches

    def spy(lengths, batch_size, seed, window):
        seen.setdefault("lengths", list(lengths))
        return real(lengths, batch_size, seed, window)

    monkeypatch.setattr(finetune_module, "length_grouped_batches", spy)
    config = _config(tiny_llama_folder, replay_share=0.2, max_length=256)
    summary = finetune("demo", config, prepared_home, max_steps=2, progress=False, adapter="replay")
    examples = summary["train_examples"]
    assert summary["replay"] == {"share": 0.2, "examples": round(0.25 * examples), "text": None}
    assert len(seen["lengths"]) == examples + summary["replay"]["examples"]  # the windows are in the batches
    assert summary["replay"]["examples"] > 0 and seen["lengths"].count(256) >= summary["replay"]["examples"]
    assert summary["forgetting"]["text"].endswith("general.txt (second half)")

    without = finetune("demo", _config(tiny_llama_folder), prepared_home, max_steps=1, progress=False)
    assert without["replay"] is None and without["forgetting"]["text"].endswith("general.txt")
    with pytest.raises(BadInputError, match="finetune.replay_text: .* is not a file"):
        config = _config(tiny_llama_folder, replay_share=0.1, replay_text=str(tmp_path / "missing.txt"))
        finetune("demo", config, prepared_home, max_steps=1, progress=False)


def test_with_tensorboard_installed_the_curves_and_events_also_go_to_event_files(prepared_home, tiny_llama_folder):
    pytest.importorskip("tensorboard", reason="TensorBoard files are written only when tensorboard is installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    finetune("demo", _config(tiny_llama_folder), prepared_home, max_steps=4, progress=False, adapter="board")
    paths = run_paths("demo", prepared_home, "board")
    board = EventAccumulator(str(paths.tensorboard)).Reload()
    assert [e.step for e in board.Scalars("loss/train")] == [1, 2, 3, 4]
    assert [e.step for e in board.Scalars("loss/val")] == [2, 4]
    assert {round(e.value, 4) for e in board.Scalars("loss/val")} == {
        round(r["val_loss"], 4) for r in read_metrics(paths.metrics) if r["val_loss"]
    }
