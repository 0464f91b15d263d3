"""A corrupt adapter or index costs only the variants that need it, with a message that names the file, the reason
and the command that builds it again; `ask`, the engine and the arena keep serving the healthy variants.

A 2-layer random Llama with a random LoRA adapter, over a two-document run indexed with the packaged embedder.
"""

import re
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from workbench.cli import main
from workbench.config import load_config
from workbench.data.prepare import prepare
from workbench.engine import Engine
from workbench.models import fresh_causal_lm
from workbench.retrieval.index import build_index
from workbench.session import Arena, ArenaError
from workbench.variants import VariantUnavailable
from workbench.workspace import index_paths, run_paths

QUESTION = "How fast does the pump run?"
FINETUNE = "run `workbench finetune --name pumps` to train it again"
INDEX = "run `workbench index --name pumps` to build it again"


def write_adapter(spec: str, folder) -> None:
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(fresh_causal_lm(spec)[0], lora).save_pretrained(folder)


@pytest.fixture(scope="module")
def healthy(tiny_llama_folder, tmp_path_factory):
    """(home, config file): run `pumps` prepared, indexed and with an adapter; tests break copies of it."""
    root = tmp_path_factory.mktemp("broken")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pump\nThe pump runs at 40 litres per minute on weekdays.")
    (corpus / "hub.md").write_text("# Hub\nThe hub restarts itself every night at two in the morning.")
    home = root / "home"
    prepare("pumps", [corpus], home=home, progress=False)
    build_index("pumps", home=home, progress=False)
    write_adapter(str(tiny_llama_folder), run_paths("pumps", home).adapter)
    config = root / "tiny.yaml"
    config.write_text(f"model:\n  base: {tiny_llama_folder}\nchat:\n  max_new_tokens: 2\n")
    return home, config


def damaged(healthy, tmp_path, *files, content: bytes | None = None) -> Path:
    """A copy of the healthy workspace with each of `files` (relative to it) cut to half its size, or replaced by
    `content`."""
    home = tmp_path / "home"
    shutil.copytree(healthy[0], home)
    for file in files:
        path = home / file
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if content is None else content)
    return home


def answered(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("== ")]


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("not answering")]


ADAPTER = "runs/pumps/adapters/default/adapter/"
BROKEN = [  # (file, its new content (None: cut in half), the variants it costs, what their message says)
    (ADAPTER + "adapter_model.safetensors", None, {"ft", "ft_rag"}, "unreadable (Error while deserializing header"),
    (ADAPTER + "adapter_model.safetensors", b"garbage", {"ft", "ft_rag"}, "unreadable (Error while deserializing"),
    (ADAPTER + "adapter_config.json", None, {"ft", "ft_rag"}, "not valid JSON"),
    (ADAPTER + "adapter_config.json", b"[]", {"ft", "ft_rag"}, "not a PEFT adapter config"),
    ("indexes/pumps/index.faiss", None, {"rag", "ft_rag"}, "missing or changed since the index was built"),
    ("indexes/pumps/chunks.jsonl", None, {"rag", "ft_rag"}, "missing or changed since the index was built"),
    ("indexes/pumps/manifest.json", None, {"rag", "ft_rag"}, "not valid JSON"),
    ("indexes/pumps/manifest.json", b"{}", {"rag", "ft_rag"}, "not an index manifest"),
]


@pytest.mark.parametrize(
    "file, content, lost, reason", BROKEN, ids=[f"{b[0].rsplit('/', 1)[1]}={b[1]}" for b in BROKEN]
)
def test_a_broken_file_costs_only_the_variants_that_need_it(healthy, tmp_path, file, content, lost, reason):
    home = damaged(healthy, tmp_path, file, content=content)
    engine = Engine(load_config(healthy[1]), "pumps", home)
    assert set(engine.missing) == lost | {"prompt"}  # prepared without a QA set: no examples to show `prompt`
    command = FINETUNE if file.startswith(ADAPTER) else INDEX
    for variant in lost:
        assert f"{home / file}: {reason}" in engine.missing[variant] and command in engine.missing[variant]
    healthy_variants = [v for v in ("base", "ft", "rag", "ft_rag") if v not in lost]
    assert engine.local_variants() == healthy_variants
    answers = engine.answer(QUESTION)
    assert list(answers) == healthy_variants and not any(a.error for a in answers.values())
    with pytest.raises(VariantUnavailable, match="variant ft_rag is not available: .*" + re.escape(command)):
        engine.answer(QUESTION, ["ft_rag"])


def test_ask_answers_the_healthy_variants_and_says_why_not_the_others(healthy, tmp_path, capsys):
    home = damaged(healthy, tmp_path, ADAPTER + "adapter_model.safetensors")
    ask = ["ask", "--name", "pumps", "--home", str(home), "--config", str(healthy[1])]
    assert main([*ask, QUESTION]) == 0
    out, err = capsys.readouterr()
    weights = home / ADAPTER / "adapter_model.safetensors"
    assert [note.split(":")[0] for note in notes(err)] == ["not answering with ft", "not answering with ft_rag"]
    assert all(f"{weights}: unreadable (" in note and note.endswith(FINETUNE) for note in notes(err))
    assert answered(out) == ["base", "rag"]

    assert main([*ask, "--variants", "base,ft", QUESTION]) == 0  # asked for by name: the same
    out, err = capsys.readouterr()
    assert answered(out) == ["base"]
    assert len(notes(err)) == 1 and notes(err)[0].startswith(f"not answering with ft: {weights}: unreadable (")

    assert main([*ask, "--variants", "ft,ft_rag", QUESTION]) == 2  # nothing left to answer
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines()[-1] == "workbench ask: error: none of the variants ft, ft_rag can answer here (see above)"


def test_ask_base_needs_neither_adapter_nor_index(healthy, tmp_path, capsys):
    home = damaged(healthy, tmp_path, ADAPTER + "adapter_model.safetensors", "indexes/pumps/index.faiss")
    ask = ["ask", "--name", "pumps", "--home", str(home), "--config", str(healthy[1])]
    assert main([*ask, "--variants", "base", QUESTION]) == 0
    out, err = capsys.readouterr()
    assert answered(out) == ["base"] and notes(err) == []
    assert main([*ask, QUESTION]) == 0
    out, err = capsys.readouterr()
    assert answered(out) == ["base"]
    ft_rag = next(note for note in notes(err) if note.startswith("not answering with ft_rag"))
    assert FINETUNE + " and " in ft_rag and ft_rag.endswith(INDEX)  # both reasons, adapter first


def test_a_broken_raft_adapter_costs_ft_rag_alone(healthy, tmp_path, tiny_llama_folder):
    home = tmp_path / "home"
    shutil.copytree(healthy[0], home)
    raft = run_paths("pumps", home, "raft").adapter
    write_adapter(str(tiny_llama_folder), raft)
    (raft / "adapter_model.safetensors").write_bytes(b"not safetensors")
    engine = Engine(load_config(healthy[1]), "pumps", home)
    # ft_rag does not fall back to the default adapter; asked for by name, the default one still answers with sources
    assert engine.local_variants() == ["base", "ft", "rag", "ft_rag:default"]
    assert engine.missing["ft_rag"].endswith(
        "run `workbench finetune --name pumps` with `finetune.recipe: raft` to train it again"
    )


def test_the_arena_serves_the_healthy_columns_and_refuses_a_broken_one_saying_why(healthy, tmp_path):
    home = damaged(healthy, tmp_path, "indexes/pumps/chunks.jsonl")
    arena = Arena(load_config(healthy[1]), "pumps", home)
    try:
        assert arena.choices() == ["base", "ft"] and arena.defaults() == ["base", "ft"]
        session = arena.session("r1", ["base", "ft"], seed=0)
        columns = list(session.ask(QUESTION))[-2:]
        assert all(c.done and c.checked and c.error is None for c in columns)
        chunks = index_paths("pumps", home).chunks
        with pytest.raises(ArenaError, match=re.escape(f"rag cannot answer here (rag: {chunks}: missing or changed")):
            arena.session("r1", ["base", "rag"])
    finally:
        arena.store.close()
