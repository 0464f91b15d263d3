"""Batched greedy replies of a local chat model, for evaluation over many questions at once.

Prompts are rendered with the same chat template and system prompt that training used, left-padded so every row
continues from its own last token.
"""

from __future__ import annotations

import torch


def greedy_replies(
    model,
    tokenizer,
    conversations: list[list[dict]],
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """The model's greedy reply to each conversation (a list of user/assistant messages ending with a user turn)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompts = [
        tokenizer.apply_chat_template(system + c, add_generation_prompt=True, tokenize=True, return_dict=False)
        for c in conversations
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    replies: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in rows)
            ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]) :] = 1
            output = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            for r, i in enumerate(rows):
                replies[i] = tokenizer.decode(output[r, width:], skip_special_tokens=True).strip()
    model.train(was_training)
    return replies
