"""The `prompt` variant: the base model shown the training pairs closest to the question, as earlier turns, with
nothing from the val or test splits; its answer is the same batched as alone, and the report sets fine-tuning
against it."""

import shutil

import pytest

from workbench.config import Config
from workbench.engine import Engine
from workbench.fewshot import ExamplePicker, training_pairs
from workbench.records import read_split
from workbench.report.quality import comparisons_to_make
from workbench.variants import Decoding
from workbench.workspace import run_paths


@pytest.fixture(scope="module")
def prompt_engine(demo_index, tiny_llama_folder, tmp_path_factory):
    home = tmp_path_factory.mktemp("fewshot") / "home"
    shutil.copytree(demo_index[0], home)
    config = Config.model_validate({"model": {"base": str(tiny_llama_folder)}, "chat": {"prompt_examples": 2}})
    return Engine(config, "demo", home), home


def test_the_closest_training_questions_are_picked_and_never_the_question_itself(demo_index):
    home = demo_index[0]
    train = training_pairs("demo", home)
    held_out = {e.question for s in ("val", "test") for e in read_split(run_paths("demo", home).split(s))}
    assert train and all(e.origin in ("qa", "synthetic") for e in train)
    assert not {e.question for e in train} & held_out  # only the train split is ever shown
    picker = ExamplePicker(train, Config().model.embedder, k=3)
    asked = train[5]
    picked = picker.pick(asked.question)
    assert len(picked) == 3 and asked not in picked  # a training question asked is not its own example
    words = set(asked.question.lower().split())
    overlap = [len(words & set(e.question.lower().split())) for e in picked]
    typical = sorted(len(words & set(e.question.lower().split())) for e in train)[len(train) // 2]
    assert min(overlap) >= typical  # closer than the median training question, by shared words too
    assert picker.pick(asked.question) == picked  # the same pick every time


def test_the_prompt_variant_shows_its_examples_as_earlier_turns_and_answers_alike_batched(prompt_engine):
    engine, home = prompt_engine
    question = "How long is the return window for the Skylark S3 Pro?"
    decoding = Decoding(max_new_tokens=8)
    alone = engine.answer(question, ["prompt"], decoding=decoding)["prompt"]
    roles = [m["role"] for m in alone.prompt]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert alone.prompt[-1]["content"] == question and alone.chunk_ids == [] and alone.adapter_id is None
    train = {e.question: e.answer for e in training_pairs("demo", home)}
    shown = alone.prompt[1:-1]
    assert all(train[q["content"]] == a["content"] for q, a in zip(shown[::2], shown[1::2]))
    base = engine.answer(question, ["base"], decoding=decoding)["base"]
    assert alone.tokens_in > base.tokens_in + 20  # the examples really are in the prompt
    batched = engine.answer_batch([question, "Who makes the Skylark S3 Pro?"], ["base", "prompt"], decoding)
    assert batched[0]["prompt"].text == alone.text and batched[0]["prompt"].prompt == alone.prompt


def test_without_training_questions_prompt_says_what_to_do(prompt_engine, tmp_path):
    _, home = prompt_engine
    bare = tmp_path / "home"
    shutil.copytree(home, bare)
    run_paths("demo", bare).split("train").write_text("")
    engine = Engine(Config.model_validate({"model": {"base": prompt_engine[0].config.model.base}}), "demo", bare)
    assert "prompt" not in engine.local_variants()
    assert "no training questions: prepare demo with a QA set" in engine.missing["prompt"]


def test_the_report_sets_fine_tuning_against_showing_examples():
    pairs = comparisons_to_make(["base", "prompt", "ft", "rag"], {"ft": 0.3, "rag": 0.4, "prompt": 0.2})
    assert ("ft", "prompt", "fine-tuning against showing examples") in pairs
    assert ("prompt", "base", "against the base model") in pairs


def test_the_number_of_examples_is_part_of_an_eval_setup_only_when_prompt_answers():
    """Other evals keep their setup (and so resume) whatever `chat.prompt_examples` says."""
    from workbench.eval.runner import answer_settings

    five = Config.model_validate({"chat": {"prompt_examples": 5}})
    assert answer_settings(five) == answer_settings(Config())
