"""Whole-step atomicity: a prepare or an index build that fails anywhere, a full disk included, leaves the previous
run or index byte for byte and no staging folder; a re-prepare keeps the run's files it does not own."""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench.config import Config
from workbench.data.prepare import prepare
from workbench.retrieval.index import build_index
from workbench.workspace import index_paths, read_json, run_paths

PREPARE_WRITES = 7
"""Files one prepare writes: three splits, documents, quality.json, quality.md, manifest."""
INDEX_WRITES = 8
"""Files one index build writes: index.faiss, chunks.jsonl, BM25's five (three arrays, vocabulary, parameters),
manifest."""

SPLIT_ALL = Config(prepare={"split": {"train": 0.4, "val": 0.3, "test": 0.3}})
"""Every split gets questions, so each split file differs between two versions of the corpus."""

NOT_OWNED = {
    "adapters/default/adapter/adapter_model.safetensors": b"weights",
    "adapters/default/checkpoint/state.pt": b"state",
    "adapters/default/metrics.csv": b"step,train_loss\n1,2.0\n",
    "adapters/default/events.jsonl": b'{"step": 1}\n',
    "adapters/default/manifest.json": b'{"outcome": "completed"}',
    "adapters/raft/adapter/adapter_config.json": b"{}",
    "data/notes.txt": b"kept by hand",
}
"""Files other steps (or a user) put in a run folder; prepare must leave them alone."""


def _corpus(folder: Path, version: int) -> tuple[Path, Path]:
    """A two-document corpus and its QA set; `version` changes the text, so two versions differ byte for byte."""
    folder.mkdir(exist_ok=True)
    (folder / "pump.md").write_text(f"# Pump\nThe X200 pump runs at {40 + version} litres per minute, all week.\n")
    (folder / "returns.md").write_text(f"# Returns\nAny order can be returned within {30 + version} days for cash.\n")
    qa = folder.parent / f"qa{version}.jsonl"
    pairs = [
        {"question": question, "answer": f"{40 + version} litres a minute.", "doc_id": "pump"}
        for question in ("How fast does the X200 run?", "What flow rate does it reach?", "Which speed is it rated at?")
    ] + [
        {"question": question, "answer": f"{30 + version} days.", "doc_id": "returns"}
        for question in ("How long is the return window?", "When does my refund period end?", "Deadline to send back?")
    ]
    qa.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return folder, qa


def _prepare(name: str, corpus_and_qa: tuple[Path, Path], home: Path) -> dict:
    corpus, qa = corpus_and_qa
    return prepare(name, [corpus], qa, SPLIT_ALL, home=home, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden(root: Path) -> list[Path]:
    """Staging or set-aside folders and temporary files left under `root` (every one starts with a dot). The
    embedded chunks a failed index build keeps for its resume (`indexes/.NAME.embedding/`) are meant to stay, but
    only as whole files: a temporary file inside it still counts."""
    return [p for p in root.rglob(".*") if not (p.parent.name == "indexes" and p.name.endswith(".embedding"))]


def _full_disk_at(monkeypatch, n: int) -> None:
    """Make the nth file write fail as a full disk does: every artifact write ends in `os.fsync`, where delayed
    allocation reports ENOSPC, with the file's bytes already written to clean up."""
    count = iter(range(1, 10_000))
    real = os.fsync

    def fsync(fd):
        if next(count) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _rename_fails_into(monkeypatch, target: Path) -> None:
    """Make the first rename of a new file or folder to `target` fail, as a full directory block can."""
    real, failed = os.replace, []

    def replace(src, dst):
        if Path(dst) == target and not failed:
            failed.append(dst)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.fixture
def prepared(home, tmp_path):
    """Run `r` prepared from version 1 of the corpus, with files of other steps beside prepare's; and version 2."""
    _prepare("r", _corpus(tmp_path / "v1", 1), home)
    assert all(run_paths("r", home).split(name).stat().st_size for name in ("train", "val", "test"))
    root = run_paths("r", home).root
    for name, data in NOT_OWNED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    manifest = read_json(root / "manifest.json") | {"default_adapter": "raft"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root, _corpus(tmp_path / "v2", 2)


@pytest.mark.parametrize("n", range(1, PREPARE_WRITES + 1))
def test_a_full_disk_at_any_prepare_write_leaves_the_previous_run(prepared, home, monkeypatch, n):
    root, v2 = prepared
    before = _files(root)
    _full_disk_at(monkeypatch, n)
    with pytest.raises(OSError, match="No space left"):
        _prepare("r", v2, home)
    assert _files(root) == before
    assert _hidden(home) == []


@pytest.mark.parametrize("last", ["data/test.jsonl", "manifest.json", "quality.md"])
def test_a_prepare_whose_switch_fails_puts_every_old_file_back(prepared, home, monkeypatch, last):
    root, v2 = prepared
    before = _files(root)
    _rename_fails_into(monkeypatch, root / last)  # files are switched in name order: first, middle, last
    with pytest.raises(OSError, match="No space left"):
        _prepare("r", v2, home)
    assert _files(root) == before
    assert _hidden(home) == []


def test_a_re_prepare_replaces_its_own_files_and_keeps_the_others(prepared, home):
    root, v2 = prepared
    before = _files(root)
    _prepare("r", v2, home)
    after = _files(root)
    owned = {"data/train.jsonl", "data/val.jsonl", "data/test.jsonl", "documents.jsonl", "quality.json", "quality.md"}
    assert {name: after[name] for name in NOT_OWNED} == NOT_OWNED
    assert set(after) == set(before) and all(after[name] != before[name] for name in owned | {"manifest.json"})
    manifest = read_json(root / "manifest.json")
    assert manifest["default_adapter"] == "raft" and "pump.md" in str(manifest["prepare"]["inputs"])
    assert b"42 litres" in after["documents.jsonl"]
    assert _hidden(home) == []


def test_a_first_prepare_that_fails_leaves_no_run_folder(home, tmp_path, monkeypatch):
    _full_disk_at(monkeypatch, 3)
    with pytest.raises(OSError, match="No space left"):
        _prepare("new", _corpus(tmp_path / "c", 1), home)
    assert not run_paths("new", home).root.exists() and _hidden(home) == []


@pytest.fixture(scope="module")
def indexed_once(tmp_path_factory):
    """A workspace whose run `r` was indexed from version 1 of the corpus, then prepared from version 2."""
    folder = tmp_path_factory.mktemp("indexed")
    _prepare("r", _corpus(folder / "v1", 1), folder / "home")
    build_index("r", home=folder / "home", progress=False)
    _prepare("r", _corpus(folder / "v2", 2), folder / "home")
    return folder / "home"


@pytest.fixture
def indexed(indexed_once, tmp_path) -> Path:
    """A copy of `indexed_once` to build in."""
    return Path(shutil.copytree(indexed_once, tmp_path / "home"))


@pytest.mark.parametrize("n", range(1, INDEX_WRITES + 1))
def test_a_full_disk_at_any_index_write_leaves_the_previous_index(indexed, monkeypatch, n):
    index = index_paths("r", indexed).root
    before = _files(index)
    _full_disk_at(monkeypatch, n)
    with pytest.raises(OSError, match="No space left"):
        build_index("r", home=indexed, update=True, progress=False)
    assert _files(index) == before
    assert _hidden(indexed) == []


def test_an_index_whose_switch_fails_keeps_the_previous_one(indexed, monkeypatch):
    index = index_paths("r", indexed).root
    before = _files(index)
    _rename_fails_into(monkeypatch, index)
    with pytest.raises(OSError, match="No space left"):
        build_index("r", home=indexed, update=True, progress=False)
    assert _files(index) == before
    assert _hidden(indexed) == []
    monkeypatch.undo()
    build_index("r", home=indexed, update=True, progress=False)
    assert b"42 litres" in (index / "chunks.jsonl").read_bytes() and _hidden(indexed) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs to fill for real; skips where mounting is not allowed (not root, or no CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=False, capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _fill(folder: Path) -> None:
    """Write to `folder` until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as fh, pytest.raises(OSError) as full:
        while True:
            fh.write(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC


def test_a_real_full_disk_leaves_the_previous_run_and_index(small_disk, tmp_path):
    home = small_disk / "home"
    _prepare("r", _corpus(tmp_path / "v1", 1), home)
    build_index("r", home=home, progress=False)
    run, index = run_paths("r", home).root, index_paths("r", home).root
    before = _files(run), _files(index)
    _fill(small_disk)
    with pytest.raises(OSError) as failure:
        _prepare("r", _corpus(tmp_path / "v2", 2), home)
    assert failure.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as failure:
        build_index("r", home=home, update=True, progress=False)
    assert failure.value.errno == errno.ENOSPC
    assert any(entry.name == "_write_faiss" for entry in failure.traceback)  # faiss's own writer passes over it
    assert (_files(run), _files(index)) == before
    assert _hidden(home) == []
