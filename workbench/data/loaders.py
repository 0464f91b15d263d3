"""Read a corpus (files or row files) and a QA set into records, reporting every file skipped and why.

Unreadable or binary files are skipped with a reason; a malformed JSONL/CSV row is a `BadInputError` naming
`file:line`, unless `skip_bad_rows` is set, in which case the row is skipped and reported apart from skipped files
(a file with a bad row was still read).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from workbench.records import QA_TYPES, Document, QAPair, is_scalar

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
ROW_SUFFIXES = (".jsonl", ".csv")
QA_SUFFIXES = (".jsonl", ".csv")
QA_KEYS = ("id", "question", "answer", "doc_id", "doc_ids", "type", "paraphrases")
"""Keys of a QA row that `load_qa` reads into `QAPair` attributes; any other key is an extra field (`fields`)."""


class BadInputError(ValueError):
    """Input that cannot be used as given; the message names the file (and line) and what to do."""


@dataclass
class LoadReport:
    """What a load read and what it skipped: `skipped` (whole files, by path) and `skipped_rows` (rows of files
    that were read, by `file:line`) hold `{"source", "reason"}` entries."""

    files_read: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason})

    def skip_row(self, where: str, reason: str) -> None:
        self.skipped_rows.append({"source": where, "reason": reason})


def _list_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    raise BadInputError(f"{path}: no such file or folder")


def _decode(raw: bytes) -> str | None:
    """Text from bytes, or None when the bytes look binary (NUL bytes or mostly control characters)."""
    if b"\x00" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f") + text[:8192].count("\ufffd")
    return None if controls > 0.05 * max(1, len(text[:8192])) else text


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            heading = re.match(r"^#{1,6}\s+(.*)", line)
            if heading:
                return heading.group(1).strip()
            return line if len(line) <= 120 else fallback
    return fallback


def _html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page with headings kept as Markdown `#` lines; returns (text, title)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "template", "svg", "head"]):
        tag.decompose()
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for row in soup.find_all("tr"):
        cells = [cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])]
        row.replace_with("\n" + " | ".join(cells) + "\n")
    for item in soup.find_all("li"):
        item.replace_with(f"\n- {item.get_text(' ', strip=True)}\n")
    for block in soup.find_all(["p", "div", "section", "article", "br", "table", "ul", "ol", "dl", "pre"]):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title


def _pdf_to_text(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted:
        raise BadInputError("encrypted PDF")
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()


def _read_document_file(path: Path, doc_id: str, report: LoadReport) -> Document | None:
    source = str(path)
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.skip(source, f"unreadable: {exc.strerror or exc}")
        return None
    if not raw.strip():
        report.skip(source, "empty file")
        return None
    if suffix == ".pdf":
        if not raw.startswith(b"%PDF"):
            report.skip(source, "not a PDF (missing %PDF header)")
            return None
        try:
            text = _pdf_to_text(path)
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
            report.skip(source, f"PDF could not be read: {exc}")
            return None
        if not text:
            report.skip(source, "PDF has no extractable text (a scan? run OCR first)")
            return None
        title = _title_from_text(text, path.stem)
    else:
        text = _decode(raw)
        if text is None:
            report.skip(source, "binary content, not text")
            return None
        title = None
        if suffix in (".html", ".htm"):
            text, title = _html_to_text(text)
        title = title or _title_from_text(text, path.stem)
    report.files_read.append(source)
    return Document(id=doc_id, title=title, text=text, source=source, format=suffix.lstrip("."))


def _parse_rows(path: Path, report: LoadReport, skip_bad_rows: bool) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row dict) from a JSONL or CSV file; bad rows raise or are reported as skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                _bad_row(path, number, f"invalid JSON: {exc}", report, skip_bad_rows)
                continue
            if not isinstance(row, dict):
                _bad_row(
                    path,
                    number,
                    f"invalid JSON: expected a JSON object, got {type(row).__name__}",
                    report,
                    skip_bad_rows,
                )
                continue
            yield number, row
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise BadInputError(f"{path}: empty CSV, expected a header row")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                _bad_row(path, reader.line_num, f"malformed CSV: {exc}", report, skip_bad_rows)
                continue
            if None in row:
                _bad_row(path, reader.line_num, "more fields than the header has", report, skip_bad_rows)
                continue
            yield reader.line_num, row


def _bad_row(path: Path, line: int, problem: str, report: LoadReport, skip_bad_rows: bool) -> None:
    where = f"{path}:{line}"
    if not skip_bad_rows:
        raise BadInputError(f"{where}: {problem} (fix the row, or pass --skip-bad-rows to skip such rows)")
    report.skip_row(where, problem)


def _rows_to_documents(path: Path, report: LoadReport, skip_bad_rows: bool) -> list[Document]:
    docs = []
    for line, row in _parse_rows(path, report, skip_bad_rows):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            _bad_row(path, line, "missing or empty 'text' field (rows need id,title,text)", report, skip_bad_rows)
            continue
        doc_id = str(row.get("id") or f"{path.stem}-{line}").strip()
        title = str(row.get("title") or "").strip() or _title_from_text(text, doc_id)
        docs.append(Document(id=doc_id, title=title, text=text, source=f"{path}:{line}", format=path.suffix[1:]))
    report.files_read.append(str(path))
    return docs


def load_corpus(
    paths: list[str | Path], skip_bad_rows: bool = False, progress: bool = True
) -> tuple[list[Document], LoadReport]:
    """Load every supported file under the given folders/files; ids are unique (file stem, else relative path)."""
    report = LoadReport()
    docs: list[Document] = []
    files = [(Path(root), file) for root in paths for file in _list_files(Path(root))]
    for root, file in tqdm(files, desc="load corpus", unit="file", disable=not progress):
        suffix = file.suffix.lower()
        if file.name.startswith("."):
            report.skip(str(file), "hidden file")
        elif suffix in ROW_SUFFIXES:
            docs.extend(_rows_to_documents(file, report, skip_bad_rows))
        elif suffix in DOCUMENT_SUFFIXES:
            rel = file.relative_to(root) if root.is_dir() else Path(file.name)
            doc = _read_document_file(file, rel.with_suffix("").as_posix(), report)
            if doc is not None:
                docs.append(doc)
        else:
            supported = ", ".join(DOCUMENT_SUFFIXES + ROW_SUFFIXES)
            report.skip(str(file), f"unsupported file type '{suffix or file.name}' (supported: {supported})")
    _make_ids_unique(docs)
    return docs, report


def _make_ids_unique(docs: list[Document]) -> None:
    seen: dict[str, int] = {}
    for doc in docs:
        base = doc.id
        if base in seen:
            seen[base] += 1
            doc.id = f"{base}~{seen[base]}"
        else:
            seen[base] = 1


def _as_list(value, field_name: str, where: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise BadInputError(f"{where}: '{field_name}' looks like a JSON list but does not parse") from None
        else:
            return [part.strip() for part in stripped.split("|") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInputError(f"{where}: '{field_name}' must be a list of strings")
    return [v.strip() for v in value if v.strip()]


def load_qa(path: str | Path, skip_bad_rows: bool = False) -> tuple[list[QAPair], LoadReport]:
    """Load a QA set (.jsonl or .csv) with `question,answer` and optional `id,doc_id,doc_ids,type,paraphrases`.

    Every other key is kept in `QAPair.fields` so reports can group by it: in JSONL its value must be a single
    value (text, number, true/false or null); in CSV every extra column is text, and empty cells are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: QA file not found")
    if path.suffix.lower() not in QA_SUFFIXES:
        raise BadInputError(f"{path}: a QA set must be .jsonl or .csv with question,answer columns")
    report = LoadReport()
    pairs: list[QAPair] = []
    ids: set[str] = set()
    from_csv = path.suffix.lower() == ".csv"
    for line, row in _parse_rows(path, report, skip_bad_rows):
        where = f"{path}:{line}"
        try:
            pairs.append(_row_to_qa(row, where, ids, from_csv))
        except BadInputError as exc:
            if not skip_bad_rows:
                raise
            report.skip_row(where, str(exc).removeprefix(f"{where}: "))
    report.files_read.append(str(path))
    if not pairs:
        raise BadInputError(f"{path}: no QA pairs found (expected rows with question and answer)")
    return pairs, report


def _row_to_qa(row: dict, where: str, ids: set[str], from_csv: bool) -> QAPair:
    question, answer = row.get("question"), row.get("answer")
    for name, value in (("question", question), ("answer", answer)):
        if not isinstance(value, str) or not value.strip():
            raise BadInputError(f"{where}: missing or empty '{name}'")
    qa_type = (row.get("type") or None) and str(row["type"]).strip()
    if qa_type is not None and qa_type not in QA_TYPES:
        raise BadInputError(f"{where}: unknown type {qa_type!r}; use one of {', '.join(QA_TYPES)}")
    fields = _extra_fields(row, where, from_csv)
    doc_id = row.get("doc_id") or None
    doc_ids = _as_list(row.get("doc_ids"), "doc_ids", where) or ([str(doc_id)] if doc_id else [])
    pair_id = str(row.get("id") or f"qa-{len(ids) + 1:05d}")
    if pair_id in ids:
        raise BadInputError(f"{where}: duplicate id {pair_id!r}; ids must be unique")
    ids.add(pair_id)
    return QAPair(
        id=pair_id,
        question=question.strip(),
        answer=answer.strip(),
        source=where,
        doc_id=str(doc_id) if doc_id else None,
        doc_ids=doc_ids,
        type=qa_type,
        paraphrases=_as_list(row.get("paraphrases"), "paraphrases", where),
        fields=fields,
    )


def _extra_fields(row: dict, where: str, from_csv: bool) -> dict:
    """The row's keys beyond `QA_KEYS`, each a single value (text stripped); a CSV row's empty cells are left out."""
    fields = {}
    for key, value in row.items():
        if key in QA_KEYS or not key.strip():
            continue
        if from_csv and (value is None or not value.strip()):
            continue
        if not is_scalar(value):
            raise BadInputError(
                f"{where}: field {key!r} must be a single value (text, number or true/false) to group results by, "
                f"not {'a list' if isinstance(value, list) else 'an object'}; flatten it or drop it from the row"
            )
        fields[key] = value.strip() if isinstance(value, str) else value
    return fields
