"""Embedded chunks kept while an index builds, so a build that was interrupted resumes where it stopped.

Embedding is most of a build (about 4.5 hours for a million chunks on 2 cores), so `build_index` embeds in parts of
`PART_CHUNKS` and saves each part here, in `indexes/.NAME.embedding/`, before the next: one `.npy` of vectors and
one `.json` of the hashes of the texts they embed, each written to a temporary file and renamed into place. The
next build of the same run takes every vector whose text it still has from here and embeds only the rest. The
folder records the embedder's identity; a checkpoint of another embedder is dropped. A finished build removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from workbench.workspace import write_json_atomic

PART_CHUNKS = 4096
"""Chunks embedded between two saves: about a minute of work on 2 cores (62 chunks/s), the most an interruption
loses."""


def checkpoint_folder(index_root: Path) -> Path:
    """Where the embedded chunks of the index at `index_root` are kept while it builds."""
    return index_root.with_name(f".{index_root.name}.embedding")


class EmbeddingCheckpoint:
    """The vectors a build has embedded so far, by the hash of the text each embeds."""

    def __init__(self, folder: Path, identity: dict):
        self.folder, self.identity = folder, identity
        identity_file = folder / "embedder.json"
        if folder.is_dir() and (not identity_file.is_file() or json.loads(identity_file.read_text()) != identity):
            shutil.rmtree(folder)  # another embedder's vectors, or a folder this code did not write

    def load(self, texts: list[str]) -> dict[int, np.ndarray]:
        """{position in `texts`: its saved vector} for every text a saved part embedded."""
        wanted: dict[str, list[int]] = {}
        for position, text in enumerate(texts):
            wanted.setdefault(_digest(text), []).append(position)
        found: dict[int, np.ndarray] = {}
        for hashes_file in sorted(self.folder.glob("part-*.json")) if self.folder.is_dir() else []:
            vectors_file = hashes_file.with_suffix(".npy")
            if not vectors_file.is_file():
                continue
            hashes = json.loads(hashes_file.read_text())
            vectors = np.load(vectors_file, allow_pickle=False)
            if len(vectors) != len(hashes):
                continue  # cannot happen with atomic writes; a damaged part is embedded again
            for digest, vector in zip(hashes, vectors):
                for position in wanted.get(digest, ()):
                    found[position] = vector
        return found

    def save(self, texts: list[str], vectors: np.ndarray) -> None:
        """Keep one embedded part: its vectors first, then the hashes that make it count."""
        if not self.folder.is_dir():  # the first part: nothing is written for a build with nothing to embed
            self.folder.mkdir(parents=True)
            write_json_atomic(self.folder / "embedder.json", self.identity)
        number = len(list(self.folder.glob("part-*.json")))
        stem = self.folder / f"part-{number:06d}"
        fd, tmp = tempfile.mkstemp(prefix=".part.", suffix=".npy", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, stem.with_suffix(".npy"))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        write_json_atomic(stem.with_suffix(".json"), [_digest(text) for text in texts])

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
