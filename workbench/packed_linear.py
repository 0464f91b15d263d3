"""Linear layers with their weights packed once for oneDNN, for decoding several rows at once on a CPU.

With PyTorch's default CPU kernels, a decoding step for 4 rows cost 1.6-2.0x one row on 2 cores (SmolLM2-135M):
past one row the matrix product repacks every weight matrix on every call. Packed once up front, 4 rows cost
1.2-1.3x one row. On CPUs with native bf16 dot products (AVX512-BF16, AMX) the packed weights are bf16, which
also halves prefill time and weight memory; activations, norms, attention and the KV cache stay fp32, and on the
demo's test questions greedy answers scored the same token F1 as fp32 (0.187 vs 0.188).
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.models import cpu_has_bf16


def packing_dtype(model: nn.Module, precision: str = "auto") -> torch.dtype | None:
    """The dtype to pack `model`'s weights in (`precision`: auto, fp32 or bf16), or None where packing does not
    apply (GPU, no oneDNN)."""
    if next(model.parameters()).device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    if precision == "auto":
        precision = "bf16" if cpu_has_bf16() else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


class PackedMatmul:
    """`x @ weight.T` with `weight` held in oneDNN's packed layout; inputs and outputs are ordinary tensors."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype):
        self.out_features = weight.shape[0]
        self.dtype = dtype
        self.weight = weight.detach().to_mkldnn(dtype)  # no dense bf16 copy on the way: less heap churn

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(self.dtype).to_mkldnn()
        out = torch._C._nn.mkldnn_linear(flat, self.weight, None).to_dense().to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


class PackedLinear(nn.Module):
    """Drop-in for an `nn.Linear` at inference time."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.matmul = PackedMatmul(linear.weight, dtype)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.matmul(x)
        return out if self.bias is None else out + self.bias


def pack_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Pack every linear layer of `model` in place (layers with a `pack` method pack themselves); returns the count."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, PackedLinear(child, dtype))
                count += 1
            elif hasattr(child, "pack"):
                child.pack(dtype)
                count += 1
    # The remaining tensors (embeddings, norms) may still point into the memory-mapped weights file, which keeps
    # every page of it that packing read resident: own copies let the mapping go (about 400 MB for SmolLM2-135M).
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
    return count
