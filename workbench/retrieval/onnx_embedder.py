"""The sentence embedder under ONNX Runtime, for the small embeddings a search makes (one query, a few claims).

A query is a dozen tokens, and ONNX Runtime embeds it in 8.7 ms p50 against 20.0 ms through PyTorch on one thread
of a 2-core AMD EPYC (bench/embedding_runtimes.py). The graph is the whole
sentence-transformers model (transformer, pooling, normalisation) exported once per weights and module
configuration into the cache folder, and its vectors match the PyTorch model's (cosine >= 0.9999, tested). Bulk
embedding for index builds stays on PyTorch: there the matrix products dominate and the two runtimes measured
alike in fp32 (0.94x), and int8 dynamic quantisation, 1.25x in bulk and 3.9x for a query, fell below the quality
bar (cosine 0.983 to the fp32 vectors of a chunk, 0.988 of a query; the bar is 0.99).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from workbench.models import ModelNotAvailable, cache_root, load_embedder

OPSET = 17
EXPORT_FORMAT = 1
"""Part of the cache key: a change to how the graph is exported makes new exports instead of reusing old ones."""
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""Tokenizer outputs the graph may take (a model's tokenizer gives some or all of them)."""
QUERY_THREADS = 1
"""ONNX Runtime threads per call: a query is too small to share between cores, and a spare core is left to the
chat engine beside it (busy machines turn waiting threads into stalls: see `workbench.threads`)."""


class OnnxEmbedder:
    """The `encode` / `get_embedding_dimension` surface of a sentence-transformers model, run by ONNX Runtime."""

    def __init__(self, model, path: Path, threads: int = QUERY_THREADS):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        # a private tokenizer, used under a lock: a fast tokenizer's padding state is not safe to share between
        # threads, and searches of several sessions run at once
        self.tokenizer = copy.deepcopy(model.tokenizer)
        self._lock = threading.Lock()
        self.max_seq_length = model.max_seq_length
        self.dimension = model.get_embedding_dimension()
        self.path = path

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int = 32, **_) -> np.ndarray:
        """Normalised float32 rows, `batch_size` texts per run (padding only within a batch)."""
        rows = [np.zeros((0, self.dimension), dtype=np.float32)]
        for start in range(0, len(texts), batch_size):
            with self._lock:
                tokens = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="np",
                )
            feed = {name: tokens[name].astype(np.int64) for name in self.inputs}
            rows.append(self.session.run(None, feed)[0])
        return np.concatenate(rows).astype(np.float32, copy=False)


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def onnx_embedder(spec: str) -> OnnxEmbedder:
    """The embedder `spec` under ONNX Runtime on the CPU, exported on first use and reused from the cache after."""
    if not onnx_available():
        raise ModelNotAvailable(
            "model.embedder_runtime is onnx but onnxruntime is not installed: pip install onnxruntime onnx, "
            "or set model.embedder_runtime: torch"
        )
    model = load_embedder(spec, "cpu")
    target = cache_root() / "onnx" / _export_key(model)
    if not (target / "model.onnx").is_file():
        _export(model, target)
    return OnnxEmbedder(model, target / "model.onnx")


def _export_key(model) -> str:
    """Hash of the parameters and the module stack (pooling and normalisation settings are in the graph too)."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}/{OPSET}/{model!r}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def _export(model, target: Path) -> None:
    """Export into a temporary folder beside `target`, then rename: a crash leaves no half-written export, and two
    processes exporting at once both end with the same complete folder."""
    sample = model.tokenizer(["an example query", "two"], padding=True, return_tensors="pt")
    names = [name for name in sample if name in INPUTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and its own deprecations
            torch.onnx.export(
                SentenceGraph(model, names).eval(),
                tuple(sample[name] for name in names),
                str(staging / "model.onnx"),
                dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, one more dependency
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names} | {"sentence_embedding": {0: "batch"}},
                opset_version=OPSET,
            )
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: its export is the same graph
            if not (target / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class SentenceGraph(torch.nn.Module):
    """The sentence-transformers model as a function of token tensors, the form an exporter traces."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors):
        return self.model(dict(zip(self.names, tensors)))["sentence_embedding"]
