"""Attention that treats each batch row on its own, so a row's decoding step does not depend on its batch.

Decoding several variants in one batch left-pads their KV caches to a common width. Attention over a padded row
with a mask gives the same value in exact arithmetic, but not in floating point: the row's keys sit at other
offsets, so the kernels' vector lanes and blocks sum them in another order, and a greedy answer can change at a
near-tie (seen on a CPU with AMX: "2.5 hours" alone, "24 hours" in a 4-way batch). Here each row attends over
exactly its own keys, with the same call it gets when it decodes alone.

The engine registers `ROW_ATTENTION` as the model's attention implementation and passes `row_lengths` (the valid
cache length of each row, 0 for a padding row) with each decoding step; without it (a prefill, which the engine
runs one unpadded row at a time) this is transformers' own SDPA attention.
"""

from __future__ import annotations

from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ROW_ATTENTION = "workbench_rows"


def row_attention(module, query, key, value, attention_mask, scaling=None, row_lengths=None, **kwargs):
    """SDPA per row over the last `row_lengths[b]` cache positions of row b; see the module docstring."""
    if row_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    width, grouped = key.shape[-2], query.shape[1] != key.shape[1]
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], query.shape[3])  # padding rows: zeros
    for b, length in enumerate(row_lengths):
        if length:
            keys, values = key[b : b + 1, :, width - length :], value[b : b + 1, :, width - length :]
            attended = F.scaled_dot_product_attention(query[b : b + 1], keys, values, scale=scaling, enable_gqa=grouped)
            out[b] = attended[0].transpose(0, 1)
    return out, None


AttentionInterface.register(ROW_ATTENTION, row_attention)
