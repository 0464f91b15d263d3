"""Training data for fine-tuning: recipes over a prepared run, tokenisation with loss masks, batches and their pieces.

Loss is computed on assistant tokens only: every prompt token (system, user, template markup) is labelled -100.
Batches are shuffled (or grouped by length: `finetune.length_window`), and each batch runs as pieces of similar
length, so little compute goes to padding without packing across examples or changing the gradient.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from workbench.config import FinetuneConfig
from workbench.data.examples import corpus_examples
from workbench.records import Document, read_split
from workbench.variants import user_message
from workbench.workspace import RunPaths, read_jsonl

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def recipe_conversations(paths: RunPaths, split: str, recipe: str, passage_words: int = 180) -> list[list[dict]]:
    """User/assistant conversations for a split under a recipe (`qa`, `qa+docs`, `paraphrase`).

    Only the train split is expanded: val and test stay as they were prepared, so val loss stays comparable.
    """
    if recipe == "raft":
        raise ValueError("RAFT examples need the run's index: build them with `raft_conversations`")
    examples = read_split(paths.split(split))
    conversations = [example.messages for example in examples]
    if split != "train":
        return conversations
    if recipe == "paraphrase":
        for example in examples:
            for question in example.paraphrases:
                conversations.append([{"role": "user", "content": question}, example.messages[-1]])
    elif recipe == "qa+docs":
        for n, row in enumerate(read_jsonl(paths.documents)):
            doc = Document(row["id"], row["title"], row["text"], row["source"], row["format"])
            conversations += [e.messages for e in corpus_examples(doc, passage_words, n) if e.kind == "continuation"]
    return conversations


def raft_conversations(paths: RunPaths, split: str, retriever, settings: FinetuneConfig) -> list[list[dict]]:
    """Each pair's question in the RAG prompt, shown its best gold chunk among `raft_distractors` retrieved chunks
    of other documents, or, for a seeded `raft_no_gold_share` of the pairs, distractors only (RAFT).

    The sources block is the engine's own (`variants.user_message`), so the adapter trains on the prompt it serves.
    Val is built the same way, so val loss measures the task the adapter is for.
    """
    examples = read_split(paths.split(split))
    shown_count = settings.raft_distractors + 1
    results = retriever.search_many([example.question for example in examples], shown_count + 10)
    conversations = []
    for example, hits in zip(examples, results):
        rng = random.Random(f"{settings.seed}:{example.id}")
        gold_docs = set(example.gold_doc_ids)
        gold = [hit.chunk for hit in hits if hit.chunk.doc_id in gold_docs][:1]
        if rng.random() < settings.raft_no_gold_share:
            gold = []
        others = [hit.chunk for hit in hits if hit.chunk.doc_id not in gold_docs]
        shown = gold + others[: shown_count - len(gold)]
        rng.shuffle(shown)
        conversations.append([{"role": "user", "content": user_message(example.question, shown)}, example.messages[-1]])
    return conversations


def encode(conversation: list[dict], tokenizer, system_prompt: str | None, max_length: int) -> Encoded:
    """Token ids of the chat-formatted conversation and labels that keep only the final assistant reply."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + conversation
    if messages[-1]["role"] != "assistant":
        raise ValueError("a training conversation must end with an assistant message")
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True, return_dict=False)
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template renders the prompt differently with and without the reply")
    labels = [IGNORE] * len(prompt) + full[len(prompt) :]
    return Encoded(full[:max_length], labels[:max_length])


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, window: int = 32) -> list[list[int]]:
    """Shuffled batches of indices whose lengths are close: sorted within shuffled windows of `window` batches
    (0: shuffled, no grouping)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if window == 0:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# A forward and backward pass costs about as much as this many padded tokens on top of its tokens: measured on the
# demo's examples with SmolLM2-135M on 2 CPU cores (a batch of 8 as 1, 2, 4 and 8 pieces: 93, 116, 112, 86 tokens/s).
PIECE_COST_TOKENS = 64


def length_pieces(lengths: list[int], piece_cost: int = PIECE_COST_TOKENS) -> list[list[int]]:
    """Indices of one batch split into pieces of similar length that cost the least to run: padded tokens plus
    `piece_cost` per piece. The pieces' losses, weighted by their answer tokens, add up to the batch's loss, so the
    gradient is the batch's; only the padding goes."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)  # best[j]: cost of order[:j]
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[order[end - 1]] + piece_cost
            if cost < best[end]:
                best[end], cut[end] = cost, start
    pieces, end = [], len(order)
    while end:
        pieces.append(order[cut[end] : end])
        end = cut[end]
    return pieces[::-1]


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def masked_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token loss over labelled positions, projecting only those hidden states onto the vocabulary.

    Equal to the model's own loss, but the vocabulary projection (a large share of a small model's compute) runs
    on the answer tokens only instead of every position: about 1.5x faster training on CPU for the demo.
    """
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = core.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = core.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])
