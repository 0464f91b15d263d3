import torch

from workbench.generate import greedy_replies
from workbench.models import fresh_causal_lm


def test_batched_replies_equal_one_at_a_time(tiny_llama_folder):
    model, tokenizer = fresh_causal_lm(str(tiny_llama_folder))
    torch.manual_seed(0)
    conversations = [
        [{"role": "user", "content": "What does the Skylark S2 cost?"}],
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Which probes pair with the Hub MH-1 and how long is the pairing window?"}],
    ]
    model.train()
    batched = greedy_replies(model, tokenizer, conversations, "Be brief.", max_new_tokens=8, batch_size=3)
    alone = [greedy_replies(model, tokenizer, [c], "Be brief.", max_new_tokens=8)[0] for c in conversations]
    assert batched == alone and all(isinstance(reply, str) for reply in batched)
    assert model.training  # generation runs in eval mode and restores the caller's mode
