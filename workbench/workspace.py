"""The workspace contract: where runs, indexes and the store live, and how artifacts are written.

`--home DIR` (default: `WORKBENCH_HOME`, else the current directory) holds `runs/NAME/`, `indexes/NAME/` and
`workbench.db`. Every artifact is written to a temporary file in the same folder and renamed into place, so a
crash never leaves a half-written file behind; a step that writes several files (prepare, index) writes them all
into a staging folder first and switches them in together (`staged_version`), so a failed step, a full disk
included, leaves the previous version whole.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def resolve_home(home: str | Path | None = None) -> Path:
    return Path(home or os.environ.get("WORKBENCH_HOME") or ".").resolve()


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(
            f"invalid run name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


DEFAULT_ADAPTER = "default"
"""The adapter `finetune` trains without `--adapter` (any recipe but raft), and the one `ft` means until another is
promoted."""
RAFT_ADAPTER = "raft"
"""The adapter the raft recipe trains without `--adapter`; `ft_rag` means it when the run has one."""


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder, `HOME/runs/NAME/`; `training` is one adapter's folder,
    `runs/NAME/adapters/ADAPTER/`, holding its PEFT files (`adapter/`), checkpoint, curves, events and manifest, so
    adapters never overwrite each other's files."""

    root: Path
    training: Path | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        return self.data / f"{name}.jsonl"

    @property
    def documents(self) -> Path:
        return self.root / "documents.jsonl"

    @property
    def quality_json(self) -> Path:
        return self.root / "quality.json"

    @property
    def quality_md(self) -> Path:
        return self.root / "quality.md"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def adapter_name(self) -> str:
        return self._training.name

    @property
    def adapter(self) -> Path:
        """The PEFT folder (`adapter_config.json`, `adapter_model.safetensors`): what PEFT and vLLM load."""
        return self._training / "adapter"

    @property
    def checkpoint(self) -> Path:
        return self._training / "checkpoint"

    @property
    def metrics(self) -> Path:
        return self._training / "metrics.csv"

    @property
    def events(self) -> Path:
        return self._training / "events.jsonl"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files of the curves (written when `tensorboard` is installed)."""
        return self._training / "tensorboard"

    @property
    def adapter_manifest(self) -> Path:
        """The adapter's own manifest: recipe, hyperparameters, data hashes, timings, versions."""
        return self._training / "manifest.json"

    @property
    def _training(self) -> Path:
        return self.training or self.adapters / DEFAULT_ADAPTER


def run_paths(name: str, home: str | Path | None = None, adapter: str = DEFAULT_ADAPTER) -> RunPaths:
    """Run `name`'s files, with adapter `adapter`'s folder. A run folder from before named adapters (`adapter/`,
    `checkpoint/`, curves at the top, `raft/`) is moved to `adapters/default/` and `adapters/raft/` first."""
    root = resolve_home(home) / "runs" / check_name(name)
    _migrate_adapters(root)
    return RunPaths(root, root / "adapters" / check_adapter_name(adapter))


def check_adapter_name(adapter: str) -> str:
    if not _NAME.match(adapter or ""):
        raise ValueError(
            f"invalid adapter name {adapter!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit"
        )
    return adapter


def adapter_names(name: str, home: str | Path | None = None) -> list[str]:
    """The adapters of run `name` that training has written (best weights saved), by name."""
    folder = run_paths(name, home).adapters
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "adapter" / "adapter_config.json").is_file())


def default_adapter(name: str, home: str | Path | None = None) -> str:
    """The adapter variant `ft` means: the one promoted last (`sweep --promote`), else `default`."""
    paths = run_paths(name, home)
    promoted = read_json(paths.manifest).get("default_adapter") if paths.manifest.is_file() else None
    return promoted or DEFAULT_ADAPTER


def adapter_aliases(name: str, home: str | Path | None = None) -> dict[str, str]:
    """The adapters the variants `ft` and `ft_rag` answer with: `ft` the default adapter; `ft_rag` the raft-trained
    one when the run has it, else the default one shown the sources."""
    default = default_adapter(name, home)
    return {"ft": default, "ft_rag": RAFT_ADAPTER if RAFT_ADAPTER in adapter_names(name, home) else default}


_OLD_LAYOUT = ("adapter", "checkpoint", "metrics.csv", "events.jsonl")


def _migrate_adapters(root: Path) -> None:
    """Move a run's adapters from the layout before named adapters: the `ft` adapter's files from the run folder to
    `adapters/default/`, the raft adapter's `raft/` to `adapters/raft/`, and their manifest sections (`finetune`,
    `finetune_rag`) into each adapter's own manifest. Each adapter moves in one rename, so a reader sees it whole."""
    raft = root / "raft"
    moves = [
        (DEFAULT_ADAPTER, "finetune", [root / part for part in _OLD_LAYOUT if (root / part).exists()]),
        (RAFT_ADAPTER, "finetune_rag", list(raft.iterdir()) if raft.is_dir() else []),
    ]
    if not any(sources for _, _, sources in moves):
        return
    manifest_file = root / "manifest.json"
    manifest = read_json(manifest_file) if manifest_file.is_file() else {}
    for adapter, section, sources in moves:
        target = root / "adapters" / adapter
        if not sources or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{adapter}.", dir=target.parent))
        if section in manifest:
            write_json_atomic(staging / "manifest.json", manifest[section] | {"adapter": adapter})
        for part in sources:
            os.replace(part, staging / part.name)
        os.replace(staging, target)
        if section in manifest:
            del manifest[section]
            write_json_atomic(manifest_file, manifest)
    if raft.is_dir() and not any(raft.iterdir()):
        raft.rmdir()


@dataclass(frozen=True)
class IndexPaths:
    """The files of one retrieval index, `HOME/indexes/NAME/`."""

    root: Path

    @property
    def faiss(self) -> Path:
        return self.root / "index.faiss"

    @property
    def chunks(self) -> Path:
        return self.root / "chunks.jsonl"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def bm25(self) -> Path:
        """The chunks' BM25 for hybrid search (bm25s' arrays and vocabulary)."""
        return self.root / "bm25"


def index_paths(name: str, home: str | Path | None = None) -> IndexPaths:
    return IndexPaths(resolve_home(home) / "indexes" / check_name(name))


def write_text_atomic(path: Path, text: str, private: bool = False) -> None:
    """Write `text` to `path` through a temporary sibling and an atomic rename; `private` keeps it readable by its
    owner only (0600) from the first byte, as for secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if not private:  # mkstemp makes 0600; an artifact gets the permissions any file gets
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (`os.umask` can only be read by setting it, racing threads)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def staged_version(target: Path, keep_others: bool = False) -> Iterator[Path]:
    """A staging folder to write the next version of folder `target` into, switched in when the block succeeds.

    The staging folder replaces `target` whole, or, with `keep_others`, only the files written into it replace
    theirs in `target` and every other file there (a run's adapters, checkpoints, curves) stays as it is. On any
    failure, while writing or while switching, the staging folder is removed and `target` keeps its previous
    version byte for byte: a failed step leaves the previous one usable.
    """
    keep_others = keep_others and target.exists()  # a new folder has nothing to keep: switch it in whole
    parent = target if keep_others else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        yield staging
        (_replace_files if keep_others else replace_folder)(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(staging: Path, target: Path) -> None:
    """Replace folder `target` with `staging` (a sibling) so that readers see either the old or the new one whole;
    the old one is renamed aside and removed only after the switch, or renamed back if the switch fails."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _replace_files(staging: Path, target: Path) -> None:
    """Move every file of `staging` to its place in `target`, each old one renamed aside first; if a move fails,
    the new files are taken out and the old ones put back (renames write no file data, so this works on a full
    disk). The old files are removed only once every new one is in place."""
    aside = Path(tempfile.mkdtemp(prefix=".old.", dir=target))
    moved: list[tuple[Path, Path | None]] = []  # (place in target, its old file set aside or None)
    try:
        for number, file in enumerate(sorted(p for p in staging.rglob("*") if p.is_file())):
            place = target / file.relative_to(staging)
            old = aside / str(number) if place.exists() else None
            if old is not None:
                os.replace(place, old)
            moved.append((place, old))
            place.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, place)
    except BaseException:
        for place, old in reversed(moved):
            if old is None:
                place.unlink(missing_ok=True)
            else:
                os.replace(old, place)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_metrics(path: Path) -> list[dict]:
    """`metrics.csv` as dicts: `step` an int, every other column a float or None (val columns off eval steps)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    complete = [line for line in lines if line.endswith("\n")]
    rows = []
    for row in csv.DictReader(complete):
        if None in row or None in row.values():  # a row with too many or too few fields
            continue
        try:
            rows.append({k: int(v) if k == "step" else (float(v) if v else None) for k, v in row.items()})
        except ValueError:
            continue
    return rows


def read_events(path: Path) -> list[dict]:
    """`events.jsonl` as dicts (step, kind, message), skipping a line still being written."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n") or not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_file_sha256(path: Path) -> str:
    """`file_sha256`, computed once per file version (path, size, mtime): model weights are hashed on every load."""
    stat = path.stat()
    return _sha256_of_version(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of_version(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def package_versions(*packages: str) -> dict[str, str]:
    """Versions of Python and the given packages, for manifests that must say what produced them."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine(device=None) -> dict:
    """What a step ran on, for manifests the report prices: `kind` (`cpu` or `gpu`), `name`, `cores`, and the
    process's peak memory so far (`peak_memory_mb`: resident set on CPU, allocated device memory on a GPU)."""
    kind = "gpu" if device is not None and getattr(device, "type", str(device)).startswith("cuda") else "cpu"
    found = {"kind": kind, "name": _cpu_name(), "cores": os.cpu_count()}
    found["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    if kind == "gpu":
        import torch  # only when a GPU ran the step, so manifests stay writable without torch

        found["name"] = torch.cuda.get_device_name(device)
        found["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return found


def _cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
