"""Read a corpus (files or row files) and a QA set into records, reporting every file skipped and why.

Unreadable or binary document files are skipped with a reason. A bad JSONL/CSV row (not JSON, not UTF-8, nested too
deeply, a field missing or of the wrong type) is a `BadInputError` naming `file:line` and the field, unless
`skip_bad_rows` is set, in which case the row is skipped and reported apart from skipped files (a file with a bad row
was still read). A row file that cannot be read at all, or a CSV file whose structure breaks (a field over
`CSV_FIELD_CHARS`, text that is not UTF-8), is a `BadInputError` either way: the rows after the break cannot be
trusted.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from workbench.limits import JSON_DEPTH, JSONInputError, parse_json
from workbench.records import QA_TYPES, Document, QAPair, is_scalar

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
ROW_SUFFIXES = (".jsonl", ".csv")
QA_SUFFIXES = (".jsonl", ".csv")
QA_KEYS = ("id", "question", "answer", "doc_id", "doc_ids", "type", "paraphrases")
"""Keys of a QA row that `load_qa` reads into `QAPair` attributes; any other key is an extra field (`fields`)."""
CSV_FIELD_CHARS = 4 * 1024 * 1024
"""Longest CSV field accepted, in characters: a long book fits (Python's default, 131,072, rejects a long manual);
anything bigger belongs in its own document file."""
HTML_DEPTH = 256
"""Deepest tag nesting of an HTML page we convert: real pages nest a few dozen levels, and the conversion's cost
grows with the square of the depth (100,000 nested tags would take many minutes)."""


class BadInputError(ValueError):
    """Input that cannot be used as given; the message names the file (and line) and what to do."""


class _RowError(ValueError):
    """What is wrong with one row, without its `file:line`: the row reader adds that and raises or skips."""


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
    if _tag_depth(soup) > HTML_DEPTH:
        raise BadInputError(f"HTML nested more than {HTML_DEPTH} tags deep")
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


def _tag_depth(soup) -> int:
    """Deepest tag nesting of a parsed page, walked without recursion."""
    from bs4 import Tag

    deepest, stack = 0, [(soup, 0)]
    while stack:
        tag, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in tag.children if isinstance(child, Tag))
    return deepest


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
            try:
                text, title = _html_to_text(text)
            except BadInputError as exc:
                report.skip(source, str(exc))
                return None
        if not text.strip():  # e.g. only Unicode line separators, or markup without visible text
            report.skip(source, "no text, only whitespace")
            return None
        title = title or _title_from_text(text, path.stem)
    report.files_read.append(source)
    return Document(id=doc_id, title=title, text=text, source=source, format=suffix.lstrip("."))


def numbered_jsonl_rows(path: Path, max_depth: int = JSON_DEPTH) -> Iterator[tuple[int, dict | str]]:
    """Yield `(line number, row)` for each non-blank line of a JSONL file, or `(line number, problem)` for a line
    that is not UTF-8, not JSON, nested more than `max_depth` deep or not an object: each caller stops or skips.

    Lines end at `\\n` only, as in editors and in JSON itself, so a raw U+2028 inside a string stays in its row.
    """
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if raw.strip():
                    yield number, _json_row(raw, max_depth)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _json_row(raw: bytes, max_depth: int) -> dict | str:
    try:
        row = parse_json(raw.decode("utf-8-sig"), max_depth)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line); re-save the file as UTF-8"
    except JSONInputError as exc:
        return str(exc)
    return row if isinstance(row, dict) else f"expected a JSON object, got {_kind(row)}"


def _read_csv(path: Path) -> Iterator[tuple[int, dict | str]]:
    """Yield `(line number where the row starts, row)` for each data row of a CSV file, or `(line, problem)`.

    Blank lines are skipped; a row with more fields than the header is a problem, one with fewer lacks the rest.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInputError(f"{path}:{line}: not UTF-8 text ({exc.reason}); re-save the file as UTF-8") from None
    csv.field_size_limit(CSV_FIELD_CHARS)  # process-wide: the csv module has no per-reader limit
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problem = f"malformed CSV: {exc}"
            if "field limit" in str(exc):
                problem = f"a field is longer than {CSV_FIELD_CHARS:,} characters; put long texts in their own file"
            raise BadInputError(f"{path}:{start}: {problem}") from None
        if not cells:
            continue
        if header is None:
            repeated = [name for name, count in Counter(cells).items() if count > 1]
            if repeated:
                raise BadInputError(f"{path}:{start}: column {repeated[0]!r} appears twice in the header; rename one")
            header = cells
        elif len(cells) > len(header):
            yield start, "more fields than the header has"
        else:
            yield start, dict(zip(header, cells))
    if header is None:
        raise BadInputError(f"{path}: empty CSV, expected a header row")


def _load_rows(
    path: Path, to_record: Callable[[dict, str], object], report: LoadReport, skip_bad_rows: bool, json_depth: int
) -> list:
    """Each row of a JSONL or CSV file made into a record by `to_record(row, "file:line")`, which raises `_RowError`
    for a bad row: that row is a `BadInputError`, or with `skip_bad_rows` reported in `report` and skipped."""
    rows = numbered_jsonl_rows(path, json_depth) if path.suffix.lower() == ".jsonl" else _read_csv(path)
    records = []
    for line, row in rows:
        where = f"{path}:{line}"
        try:
            if isinstance(row, str):
                raise _RowError(row)
            records.append(to_record(row, where))
        except _RowError as exc:
            if not skip_bad_rows:
                raise BadInputError(
                    f"{where}: {exc} (fix the row, or pass --skip-bad-rows to skip such rows)"
                ) from None
            report.skip_row(where, str(exc))
    report.files_read.append(str(path))
    return records


def _row_to_document(row: dict, where: str) -> Document:
    """A corpus row as a document; without an id it is named `STEM-LINE` after its file and line."""
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _RowError("missing or empty 'text' field (rows need id,title,text)")
    path, line = where.rsplit(":", 1)
    doc_id = _optional_id(row, "id") or f"{Path(path).stem}-{line}"
    title = _optional_text(row, "title") or _title_from_text(text, doc_id)
    return Document(id=doc_id, title=title, text=text, source=where, format=Path(path).suffix[1:])


def _optional_id(row: dict, key: str) -> str | None:
    """An id-like value (`id`, `doc_id`) as text: a string or an integer; None when absent, null or blank."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RowError(f"'{key}' must be text or a whole number, not {_kind(value)}")
    return str(value).strip()


def _optional_text(row: dict, key: str) -> str | None:
    """A text value, stripped; None when absent, null or blank."""
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise _RowError(f"'{key}' must be text, not {_kind(value)}")
    return (value or "").strip() or None


def _kind(value) -> str:
    """A JSON value's kind in the words a user knows from their file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    kinds = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def load_corpus(
    paths: list[str | Path], skip_bad_rows: bool = False, progress: bool = True, json_depth: int = JSON_DEPTH
) -> tuple[list[Document], LoadReport]:
    """Load every supported file under the given folders/files; ids are unique (file stem, else relative path).

    A row file's `id` may be text or a whole number and its `title` text; `json_depth` bounds JSONL nesting
    (`limits.json_depth`)."""
    report = LoadReport()
    docs: list[Document] = []
    files = [(Path(root), file) for root in paths for file in _list_files(Path(root))]
    for root, file in tqdm(files, desc="load corpus", unit="file", disable=not progress):
        suffix = file.suffix.lower()
        if file.name.startswith("."):
            report.skip(str(file), "hidden file")
        elif suffix in ROW_SUFFIXES:
            docs.extend(_load_rows(file, _row_to_document, report, skip_bad_rows, json_depth))
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


def _as_list(row: dict, key: str, ids: bool = False) -> list[str]:
    """A list of strings (or with `ids`, document ids: strings or whole numbers), given as a JSON list or, in CSV, as
    a JSON list or `a|b` text."""
    value = row.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.startswith("["):
            return [part.strip() for part in stripped.split("|") if part.strip()]
        try:
            value = parse_json(stripped)
        except ValueError as exc:
            raise _RowError(f"'{key}' looks like a JSON list but does not parse: {exc}") from None
    allowed = (str, int) if ids else str
    if not isinstance(value, list) or not all(isinstance(v, allowed) and not isinstance(v, bool) for v in value):
        raise _RowError(f"'{key}' must be a list of {'document ids' if ids else 'strings'}")
    return [text for text in (str(v).strip() for v in value) if text]


def load_qa(
    path: str | Path, skip_bad_rows: bool = False, json_depth: int = JSON_DEPTH
) -> tuple[list[QAPair], LoadReport]:
    """Load a QA set (.jsonl or .csv) with `question,answer` and optional `id,doc_id,doc_ids,type,paraphrases`.

    An answer may be a number (kept as its text, "42"); ids and doc ids may be text or whole numbers. Every other key
    is kept in `QAPair.fields` so reports can group by it: in JSONL its value must be a single value (text, finite
    number, true/false or null); in CSV every extra column is text, and empty cells are left out. `json_depth` bounds
    JSON nesting (`limits.json_depth`).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: QA file not found")
    if path.suffix.lower() not in QA_SUFFIXES:
        raise BadInputError(f"{path}: a QA set must be .jsonl or .csv with question,answer columns")
    report = LoadReport()
    ids: set[str] = set()
    from_csv = path.suffix.lower() == ".csv"
    pairs = _load_rows(
        path, lambda row, where: _row_to_qa(row, where, ids, from_csv), report, skip_bad_rows, json_depth
    )
    if not pairs:
        raise BadInputError(f"{path}: no QA pairs found (expected rows with question and answer)")
    return pairs, report


def _row_to_qa(row: dict, where: str, ids: set[str], from_csv: bool) -> QAPair:
    question, answer = row.get("question"), row.get("answer")
    if question is not None and not isinstance(question, str):
        raise _RowError(f"'question' must be text, not {_kind(question)}")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float | None):
        raise _RowError(f"'answer' must be text or a number, not {_kind(answer)}")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise _RowError(f"'answer' must be text or a finite number, not {answer}")
    for name, value in (("question", question), ("answer", answer)):
        if value is None or not str(value).strip():
            raise _RowError(f"missing or empty '{name}'")
    qa_type = _optional_text(row, "type")
    if qa_type is not None and qa_type not in QA_TYPES:
        raise _RowError(f"unknown type {qa_type!r}; use one of {', '.join(QA_TYPES)}")
    fields = _extra_fields(row, from_csv)
    doc_id = _optional_id(row, "doc_id")
    doc_ids = _as_list(row, "doc_ids", ids=True) or ([doc_id] if doc_id else [])
    pair_id = _optional_id(row, "id") or f"qa-{len(ids) + 1:05d}"
    if pair_id in ids:
        raise _RowError(f"duplicate id {pair_id!r}; ids must be unique")
    ids.add(pair_id)
    return QAPair(
        id=pair_id,
        question=question.strip(),
        answer=str(answer).strip(),
        source=where,
        doc_id=doc_id,
        doc_ids=doc_ids,
        type=qa_type,
        paraphrases=_as_list(row, "paraphrases"),
        fields=fields,
    )


def _extra_fields(row: dict, from_csv: bool) -> dict:
    """The row's keys beyond `QA_KEYS`, each a single value (text stripped); a CSV row's empty cells are left out."""
    fields = {}
    for key, value in row.items():
        if key in QA_KEYS or not key.strip():
            continue
        if from_csv and not value.strip():
            continue
        if not is_scalar(value):
            raise _RowError(
                f"field {key!r} must be a single value (text, number or true/false) to group results by, "
                f"not {'a list' if isinstance(value, list) else 'an object'}; flatten it or drop it from the row"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise _RowError(f"field {key!r} must be a finite number, not {value}")
        fields[key] = value.strip() if isinstance(value, str) else value
    return fields
