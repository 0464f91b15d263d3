"""LoRA adapters chosen per batch row, at close to the cost of the base model alone.

The engine answers one question with several variants in one batch: some rows with an adapter, some without.
peft can do that (`adapter_names=`), but on a CPU its unmerged LoRA layers add about 30% per decoding step, mostly
in the many small operations around each low-rank product. Here each adapted linear layer keeps its base weight
and the adapters' down-projections stacked in one matrix, so one matrix product gives both the base output and
every adapter's low-rank activations; a per-row gate (1 for the rows that use an adapter, 0 for the others) then
selects which up-projections are added, in one more product. Base rows therefore add exact zeros.

Adapters are read from the standard PEFT folder (`adapter_config.json`, `adapter_model.safetensors`).
"""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from workbench.data.loaders import BadInputError
from workbench.packed_linear import PackedMatmul

PREFIX = "base_model.model."


class AdapterUnusable(BadInputError):
    """An adapter folder this engine cannot serve; the message names the file and what to do."""


class MultiLoraLinear(nn.Module):
    """A linear layer with any number of LoRA adapters, each switched on or off per batch row by `gate`."""

    def __init__(self, base: nn.Linear, downs: list[torch.Tensor], ups: list[torch.Tensor], scales: list[float]):
        super().__init__()
        self.out_features = base.out_features
        weight = base.weight.detach()
        stacked = torch.cat([weight] + [down.to(weight) for down in downs])  # (out + sum(r)) x in
        self.stacked = nn.Parameter(stacked, requires_grad=False)
        self.bias = base.bias
        up = torch.cat([u.to(weight) * s for u, s in zip(ups, scales)], dim=1)  # out x sum(r), scale folded in
        self.up_t = nn.Parameter(up.t().contiguous(), requires_grad=False)
        self.ranks = [down.shape[0] for down in downs]
        self._gates = threading.local()  # each decoding thread chooses its own rows' adapters
        self.packed: PackedMatmul | None = None

    @property
    def gate(self) -> torch.Tensor | None:
        """(batch, 1, sum(r)) of 0/1 for the calling thread's batch, set by `AdapterBank.set_rows`; None: no row
        uses an adapter."""
        return getattr(self._gates, "value", None)

    @gate.setter
    def gate(self, value: torch.Tensor | None) -> None:
        self._gates.value = value

    def pack(self, dtype: torch.dtype) -> None:
        """Hold the stacked weights packed for oneDNN instead (see `packed_linear`)."""
        self.packed = PackedMatmul(self.stacked, dtype)
        self.stacked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            both = self.packed(x)
            base = both[..., : self.out_features]
            out = (
                base.contiguous()
                if self.gate is None
                else base + (both[..., self.out_features :] * self.gate) @ self.up_t
            )
        elif self.gate is None:  # no row uses an adapter: exactly the base layer
            out = F.linear(x, self.stacked[: self.out_features])
        else:
            both = F.linear(x, self.stacked)
            out = both[..., : self.out_features] + (both[..., self.out_features :] * self.gate) @ self.up_t
        return out if self.bias is None else out + self.bias


class AdapterBank:
    """The adapters attached to one model, and the switch that chooses them per row."""

    def __init__(self, model: nn.Module, adapters: dict[str, Path], strict: bool = True):
        """Replace the adapted linear layers of `model` (in place) with `MultiLoraLinear` layers.

        An adapter that cannot be served raises `AdapterUnusable`; with `strict=False` it is left out and its reason
        kept in `unusable`, so that one broken folder costs only the variants that use it.
        """
        modules = dict(model.named_modules())
        self.unusable: dict[str, str] = {}
        read = {}
        for name, folder in adapters.items():
            try:
                read[name] = _read_adapter(Path(folder), modules)
            except AdapterUnusable as exc:
                if strict:
                    raise
                self.unusable[name] = str(exc)
        self.names = list(read)
        self._chosen = threading.local()  # per thread: the rows whose gates are set
        per_module: dict[str, list] = {}
        for position, layers in enumerate(read.values()):
            for module_name, down, up, scale in layers:
                per_module.setdefault(module_name, [None] * len(read))[position] = (down, up, scale)
        self.layers: list[MultiLoraLinear] = []
        self.offsets: list[list[tuple[int, int]]] = []  # per layer, per adapter: slice of the gate
        for module_name, parts in per_module.items():
            base = modules[module_name]
            present = [(i, p) for i, p in enumerate(parts) if p is not None]
            layer = MultiLoraLinear(
                base, [p[0] for _, p in present], [p[1] for _, p in present], [p[2] for _, p in present]
            )
            parent_name, _, child = module_name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, child, layer)
            slices, start = [(0, 0)] * len(read), 0
            for (i, _), rank in zip(present, layer.ranks):
                slices[i] = (start, start + rank)
                start += rank
            self.layers.append(layer)
            self.offsets.append(slices)

    def set_rows(self, rows: list[str | None]) -> None:
        """Choose the adapter of each batch row (None: the base model) for the calling thread's following forward
        passes; threads decoding side by side on the same model each keep their own choice."""
        rows = list(rows)
        if rows == getattr(self._chosen, "rows", None):  # decoding steps repeat the same rows: keep the gates
            return
        unknown = {r for r in rows if r is not None and r not in self.names}
        if unknown:
            raise KeyError(f"no adapter named {sorted(unknown)}; loaded: {self.names}")
        self._chosen.rows = rows
        if all(r is None for r in rows):
            for layer in self.layers:
                layer.gate = None
            return
        for layer, slices in zip(self.layers, self.offsets):
            gate = torch.zeros(len(rows), 1, layer.up_t.shape[0], dtype=layer.up_t.dtype, device=layer.up_t.device)
            for row, name in enumerate(rows):
                if name is not None:
                    start, end = slices[self.names.index(name)]
                    gate[row, 0, start:end] = 1
            layer.gate = gate


def _read_adapter(folder: Path, modules: dict[str, nn.Module]) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(module name, down, up, scale) for each adapted layer of a PEFT LoRA folder, after checking that it is readable,
    uses only what this bank serves, and fits the base model's `modules`."""
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise AdapterUnusable(f"{needed}: missing; a PEFT adapter folder needs adapter_config.json and safetensors")
    try:
        config = json.loads(config_file.read_bytes())
    except ValueError as exc:  # not JSON, or not text at all
        raise AdapterUnusable(f"{config_file}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise AdapterUnusable(f"{config_file}: not a PEFT adapter config (a JSON object)")
    unsupported = {
        "peft_type": config.get("peft_type") not in (None, "LORA"),
        "use_dora": bool(config.get("use_dora")),
        "modules_to_save": bool(config.get("modules_to_save")),
        "bias": config.get("bias", "none") != "none",
        "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
        "layer_replication": bool(config.get("layer_replication")),
    }
    if any(unsupported.values()):
        fields = ", ".join(k for k, bad in unsupported.items() if bad)
        raise AdapterUnusable(f"{config_file}: {fields} not supported here; train a plain LoRA adapter")
    try:
        weights = load_file(weights_file)
    except SafetensorError as exc:  # truncated or not safetensors at all
        raise AdapterUnusable(f"{weights_file}: unreadable ({exc})") from None
    layers = []
    for module_name in sorted({key.rsplit(".lora_", 1)[0] for key in weights if ".lora_" in key}):
        down, up = weights.get(f"{module_name}.lora_A.weight"), weights.get(f"{module_name}.lora_B.weight")
        if down is None or up is None:
            raise AdapterUnusable(f"{weights_file}: {module_name} lacks lora_A or lora_B weights")
        name = module_name.removeprefix(PREFIX)
        base = modules.get(name)
        if not isinstance(base, nn.Linear):
            raise AdapterUnusable(f"{weights_file}: module {name} is not a linear layer of this base model")
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features:
            raise AdapterUnusable(
                f"{weights_file}: weights for {name} do not fit the base model "
                f"({tuple(up.shape[0:1]) + tuple(down.shape[1:])} vs "
                f"{(base.out_features, base.in_features)}): was it trained on another base?"
            )
        rank = down.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, name, config.get("lora_alpha", rank))
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        layers.append((name, down, up, scale))
    if not layers:
        raise AdapterUnusable(f"{weights_file}: holds no LoRA weights")
    return layers


def _pattern_value(patterns: dict, module_name: str, default):
    """PEFT's per-module overrides: a key matches a module name ending in it."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module_name):
            return value
    return default
