"""Files uploaded in the app: land them in the workspace, then prepare them exactly as `workbench prepare` does.

An upload is a list of files, each under the name the browser gave it, any of them a `.zip` (unpacked, keeping its
folders), and an optional QA file. They land in a fresh folder `HOME/uploads/NAME/STAMP/` (`corpus/`, `qa/`),
written first under a hidden name beside it and renamed into place only when every file is in, so a refused or
failed upload leaves nothing behind. Nothing lands anywhere else: a name that is absolute or climbs out (`../x`,
a zip slip), holds a NUL or control character, or names a link or a folder instead of a file refuses the whole
upload, and so does one file, or the upload as a whole, over `limits.upload_file_bytes`, `limits.upload_total_bytes`
or `limits.upload_files` (a .zip counted unpacked, so a zip bomb stops there, checked on the bytes really written,
not on what the archive claims). Each refusal is a `BadInputError` naming the file and what to do.

A file of a type prepare cannot read is not refused: it lands (within the limits) and prepare lists it with the
reason among the skipped files of the quality report, as it does for a corpus folder. `prepare_upload` runs the same
`prepare` as the CLI, so the report is the one `workbench prepare` writes; a failed prepare removes its upload, and a
successful one removes the run's earlier uploads (the new manifest names only the new one).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from workbench.config import Config, LimitsConfig
from workbench.data.loaders import QA_SUFFIXES, BadInputError
from workbench.data.prepare import prepare
from workbench.workspace import check_name, resolve_home

ARCHIVE_SUFFIX = ".zip"
_BLOCK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class Upload:
    """Where an upload landed: `root` (HOME/uploads/NAME/STAMP), its `corpus` folder, the QA file if one came, and
    the corpus files landed (paths relative to `corpus`, in upload order) with the bytes written in all."""

    root: Path
    corpus: Path
    qa: Path | None = None
    files: list[str] = field(default_factory=list)
    bytes: int = 0


def uploads_folder(name: str, home: str | Path | None = None) -> Path:
    """`HOME/uploads/NAME`: the uploads of run `name`."""
    return resolve_home(home) / "uploads" / check_name(name)


def prepare_upload(
    name: str,
    files: Iterable[str | Path],
    qa: str | Path | None = None,
    config: Config | None = None,
    home: str | Path | None = None,
    skip_bad_rows: bool = False,
    progress: bool = True,
) -> tuple[Upload, dict]:
    """Land the uploaded `files` (and `qa`) for run `name` and prepare it; returns the upload and the quality report.

    `name` is checked as the CLI checks `--name`; every problem, the upload's or prepare's, is a `BadInputError`,
    and leaves the workspace as it was (the run's previous outputs, and its previous upload, intact)."""
    config = config or Config()
    upload = land_upload(name, files, qa, home, config.limits)
    try:
        report = prepare(name, [upload.corpus], upload.qa, config, home, skip_bad_rows=skip_bad_rows, progress=progress)
    except BaseException:
        _remove(upload.root)
        raise
    for earlier in upload.root.parent.iterdir():
        if earlier != upload.root and not earlier.name.startswith("."):  # a hidden one is an upload landing now
            shutil.rmtree(earlier, ignore_errors=True)
    return upload, report


def land_upload(
    name: str,
    files: Iterable[str | Path],
    qa: str | Path | None = None,
    home: str | Path | None = None,
    limits: LimitsConfig | None = None,
) -> Upload:
    """Copy `files` (each landed under its own file name; a `.zip` unpacked) and `qa` into a new folder of
    `HOME/uploads/NAME/`, all or nothing. Refusals are `BadInputError`s naming the file and what to do."""
    if not name:
        raise BadInputError("no run name: name the run first (e.g. support-docs)")
    try:
        check_name(name)
    except ValueError as exc:
        raise BadInputError(f"run name {str(exc).removeprefix('invalid run name ')}") from None
    limits = limits or LimitsConfig()
    files = [Path(f) for f in files]
    if not files:
        raise BadInputError("no files uploaded: choose your documents (.md .txt .html .pdf .jsonl .csv) or a .zip")
    parent = uploads_folder(name, home)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".landing-", dir=parent))
    try:
        lander = _Lander(staging / "corpus", limits)
        for path in files:
            if path.name.lower().endswith(ARCHIVE_SUFFIX):
                lander.unzip(path)
            else:
                lander.copy_file(path, path.name)
        qa_name = None
        if qa is not None:
            qa = Path(qa)
            if not qa.name.lower().endswith(QA_SUFFIXES):
                raise BadInputError(
                    f"{qa.name}: a QA set must be a .jsonl or .csv file with question,answer rows; choose such a file"
                )
            qa_name = lander.copy_file(qa, qa.name, into=staging / "qa")
        (staging / "corpus").mkdir(exist_ok=True)
        root = _place(staging, parent)
    except BaseException:
        _remove(staging)
        raise
    return Upload(root, root / "corpus", root / "qa" / qa_name if qa_name else None, lander.landed, lander.total)


def landed_name(raw: str, where: str) -> PurePosixPath:
    """The uploaded name `raw` as a relative path inside the upload (backslashes read as folder separators), or a
    `BadInputError` saying why it cannot land there (`where` names it in the message)."""
    if "\x00" in raw or any(ord(ch) < 32 for ch in raw):
        raise BadInputError(f"{where}: the name holds a NUL or control character; rename the file")
    text = raw.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise BadInputError(f"{where}: an absolute path; files must land inside the upload, give a relative name")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BadInputError(f"{where}: the name climbs out of its folder ('..'); rename it or make the .zip again")
    if not parts:
        raise BadInputError(f"{where}: no file name; rename the file")
    return PurePosixPath(*parts)


class _Lander:
    """Writes the files of one upload under `corpus`, counting files and bytes against the limits."""

    def __init__(self, corpus: Path, limits: LimitsConfig):
        self.corpus, self.limits = corpus, limits
        self.landed: list[str] = []
        self.total = 0
        self.count = 0
        self._taken: set[PurePosixPath] = set()  # landed files and the folders above them
        self._files: set[PurePosixPath] = set()

    def copy_file(self, path: Path, raw_name: str, into: Path | None = None) -> str:
        """Land the uploaded file `path` as `raw_name` (under `corpus`, or `into`); returns the name it landed as."""
        shown = raw_name or str(path)
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise BadInputError(f"{shown}: cannot be read ({exc.strerror or exc}); upload it again") from None
        if not stat.S_ISREG(info.st_mode):
            raise BadInputError(
                f"{shown}: not a plain file (a folder or a link); upload the files themselves or a .zip"
            )
        relative = self._name(raw_name, shown)
        self._check_size(info.st_size, shown)
        with open(path, "rb", opener=_no_follow) as source:  # a link swapped in after the check is not followed
            self._write(source, relative, shown, into)
        return relative.as_posix()

    def unzip(self, path: Path) -> None:
        """Land every member of the .zip `path` under its own path, after checking all of them."""
        shown = path.name
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                raise BadInputError(f"{shown}: not a plain file (a folder or a link); upload the .zip itself")
            self._check_size(info.st_size, shown, counted=False)
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise BadInputError(
                f"{shown}: not a readable .zip ({exc}); make the archive again or upload the files"
            ) from None
        with archive:
            members = archive.infolist()
            if self.count + len(members) > self.limits.upload_files:
                raise BadInputError(
                    f"{shown}: {len(members)} entries; an upload may hold at most {self.limits.upload_files} files "
                    "(limits.upload_files); upload fewer files at once, or run `workbench prepare` on the machine"
                )
            declared = sum(member.file_size for member in members)
            if self.total + declared > self.limits.upload_total_bytes:
                raise BadInputError(
                    f"{shown}: unpacks to {declared:,} bytes; an upload may hold at most "
                    f"{self.limits.upload_total_bytes:,} (limits.upload_total_bytes); upload less at once, or run "
                    "`workbench prepare` on the machine"
                )
            checked = []
            for member in members:  # every name and kind first: a bad member refuses the archive before any write
                where = f"{shown}: member {member.filename!r}"
                relative = self._name(member.filename, where)
                mode = member.external_attr >> 16
                if stat.S_ISLNK(mode) or (stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
                    raise BadInputError(f"{where}: a link or special file; make the .zip of plain files and folders")
                if not member.is_dir():
                    self._check_size(member.file_size, where, counted=False)
                    checked.append((member, relative, where))
            for member, relative, where in checked:
                try:
                    with archive.open(member) as source:
                        self._write(source, relative, where)
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
                    raise BadInputError(
                        f"{where}: cannot be unpacked ({exc}); make the .zip again without a password"
                    ) from None

    def _name(self, raw: str, where: str) -> PurePosixPath:
        return landed_name(raw, where)

    def _check_size(self, size: int, where: str, counted: bool = True) -> None:
        if size > self.limits.upload_file_bytes:
            raise BadInputError(
                f"{where}: {size:,} bytes; a file may hold at most {self.limits.upload_file_bytes:,} "
                "(limits.upload_file_bytes); split it, or put it on the machine and run `workbench prepare`"
            )
        if counted and self.total + size > self.limits.upload_total_bytes:
            self._too_much(where)

    def _too_much(self, where: str) -> None:
        raise BadInputError(
            f"{where}: the upload would exceed {self.limits.upload_total_bytes:,} bytes "
            "(limits.upload_total_bytes); upload less at once, or run `workbench prepare` on the machine"
        )

    def _write(self, source: BinaryIO, relative: PurePosixPath, where: str, into: Path | None = None) -> None:
        """Copy `source` to `relative` under `corpus` (or `into`), counting the bytes really written."""
        if into is None:
            self._claim(relative, where)
        self.count += 1
        if self.count > self.limits.upload_files:
            raise BadInputError(
                f"{where}: an upload may hold at most {self.limits.upload_files} files (limits.upload_files); "
                "upload fewer at once"
            )
        target = (into or self.corpus).joinpath(*relative.parts)
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                while block := source.read(_BLOCK):
                    written += len(block)
                    if written > self.limits.upload_file_bytes:
                        self._check_size(written, where, counted=False)
                    if self.total + written > self.limits.upload_total_bytes:
                        self._too_much(where)
                    out.write(block)
        except OSError as exc:
            raise BadInputError(f"{where}: cannot be written ({exc.strerror or exc}); is the disk full?") from None
        self.total += written
        if into is None:
            self.landed.append(relative.as_posix())

    def _claim(self, relative: PurePosixPath, where: str) -> None:
        """Refuse a second file of the same name, or a file where another file's folder is (or the reverse)."""
        if relative in self._taken or any(parent in self._files for parent in relative.parents):
            raise BadInputError(
                f"{where}: another file of this upload already has the path {relative.as_posix()!r}; rename one"
            )
        self._files.add(relative)
        self._taken.update([relative, *relative.parents])


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _place(staging: Path, parent: Path) -> Path:
    """Rename the finished `staging` folder to a new timestamped folder of `parent`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    for attempt in range(100):
        root = parent / (stamp if not attempt else f"{stamp}-{attempt}")
        try:
            os.rename(staging, root)  # fails, rather than merges, when the folder exists and is not empty
        except OSError:
            if root.exists():
                continue
            raise
        return root
    raise BadInputError(f"{parent}: could not name a new upload folder; try again")


def _remove(folder: Path) -> None:
    """Remove an upload's folder, then `uploads/NAME` and `uploads` if that left them empty."""
    shutil.rmtree(folder, ignore_errors=True)
    _rmdir(folder.parent)
    _rmdir(folder.parent.parent)


def _rmdir(folder: Path) -> None:
    """Remove `folder` if it is empty (another upload may be using it)."""
    try:
        folder.rmdir()
    except OSError:
        pass
