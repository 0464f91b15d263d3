"""Data-parallel fine-tuning across the processes `torchrun` or `accelerate launch` starts (one per GPU).

Every process builds the same batches from the same seed and takes its share of each batch's examples. Each share's
loss is weighted by its share of the batch's answer tokens, and the LoRA gradients are summed across processes,
so a step equals the single-process step on the whole batch: `batch_size` is the global batch however many
processes run. Only the first process writes files; evaluation is split the same way and summed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes; a group of one does no communication."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that writes adapters, checkpoints, curves and the manifest."""
        return self.rank == 0

    def share(self, items: list) -> list:
        """This process's examples of a batch (or of an evaluation set)."""
        return items[self.rank :: self.size]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes of a few numbers."""
        if self.size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_gradients(self, parameters: list[torch.Tensor]) -> None:
        """Add up each parameter's gradient across processes (a process without examples contributes zeros)."""
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for p, g in zip(parameters, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p).clone()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop request must end all of them at the same step)."""
        return bool(self.sum([float(flag)])[0])


SOLO = Group()
"""A single process: the default everywhere."""


def join() -> Group:
    """The group described by the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK), joined on first use."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SOLO
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def leave() -> None:
    """Tear down the process group at the end of a launched run (a no-op otherwise)."""
    if dist.is_initialized():
        dist.destroy_process_group()
