"""Render the prepare quality report (the dict written to quality.json) as Markdown for people.

Corpus-derived strings (file names, boilerplate lines, questions) are shown as written: a backslash goes before
each character Markdown would read as markup, so a `*` or `<b>` in a question is text, not emphasis or a tag.
They are not HTML-escaped: the file is read as plain text too, and the app renders it with gradio's Markdown,
which sanitizes HTML itself.
"""

from __future__ import annotations

import re

_MARKUP = re.compile(r"([\\`*_\[\]<>|~])")


def literal(value) -> str:
    """One line of literal text: markup characters backslash-escaped, line breaks (which end a table row) spaces."""
    return _MARKUP.sub(r"\\\1", " ".join(str(value).splitlines()))


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(literal(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def quality_markdown(report: dict) -> str:
    docs, dupes, cleaning = report["documents"], report["duplicates"], report["cleaning"]
    words = docs["words"]
    out = [
        f"# Data quality report: {literal(report['name'])}",
        "",
        f"Prepared {report['created_at']} in {report['seconds']} s.",
        "",
        "## Files",
        f"- Read: {report['files']['read']}",
        f"- Skipped: {len(report['files']['skipped'])}",
        f"- Rows skipped in files read (`--skip-bad-rows`): {len(report['files']['skipped_rows'])}",
        "",
    ]
    if report["files"]["skipped"]:
        out += _table(["file", "reason"], [[s["source"], s["reason"]] for s in report["files"]["skipped"]])
    if report["files"]["skipped_rows"]:
        out += _table(["row", "reason"], [[s["source"], s["reason"]] for s in report["files"]["skipped_rows"]])
    out += [
        "## Documents",
        f"- Loaded: {docs['loaded']}; kept: {docs['kept']}",
        f"- Too short (dropped): {len(docs['too_short'])}",
        (
            f"- Words: {words['total']} in total; per document min {words['min']}, median {words['median']}, "
            f"max {words['max']}"
        ),
        f"- Mojibake repaired in: {len(cleaning['mojibake_repaired'])} document(s)",
        (
            f"- Boilerplate: {len(cleaning['boilerplate_lines'])} repeated line(s), "
            f"{cleaning['boilerplate_lines_removed']} occurrence(s) removed"
        ),
        "",
    ]
    if cleaning["boilerplate_lines"]:
        out += _table(
            ["boilerplate line", "documents"], [[b["line"], b["documents"]] for b in cleaning["boilerplate_lines"]]
        )
    out += ["## Duplicates", f"- Exact: {len(dupes['exact'])}", f"- Near: {len(dupes['near'])}", ""]
    rows = [[d["removed"], d["kept"], "exact"] for d in dupes["exact"]]
    rows += [[d["removed"], d["kept"], f"near ({d['similarity']})"] for d in dupes["near"]]
    if rows:
        out += _table(["removed", "kept", "kind"], rows)
    out += ["## PII redacted", ""]
    pii_rows = [["documents", kind, n] for kind, n in sorted(report["pii"]["documents"].items())]
    if report["qa"]:
        pii_rows += [["QA set", kind, n] for kind, n in sorted(report["qa"]["pii"].items())]
    out += _table(["where", "kind", "count"], pii_rows) if pii_rows else ["None found.", ""]
    if report["qa"]:
        qa = report["qa"]
        out += [
            "## QA set",
            (
                f"- File: {literal(qa['file'])}; pairs: {qa['pairs']}; paraphrases: {qa['paraphrases']}; "
                f"groups of similar questions: {qa['groups']}"
            ),
            "- By type: " + ", ".join(f"{literal(k)} {v}" for k, v in sorted(qa["by_type"].items())),
            (
                f"- Rows skipped: {len(qa['skipped_rows'])}; references to unknown documents: "
                f"{len(qa['unknown_doc_ids'])}; remapped to a kept duplicate: {len(qa['doc_ids_remapped'])}"
            ),
            f"- Documents without any question: {len(qa['documents_without_questions'])}",
            "",
        ]
        if qa["skipped_rows"]:
            out += _table(["row", "reason"], [[s["source"], s["reason"]] for s in qa["skipped_rows"]])
    else:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(report["examples"]["by_kind"].items()))
        out += ["## Examples", f"- No QA file: examples generated from the corpus ({kinds}).", ""]
    sizes = report["splits"]["sizes"]
    out += ["## Splits", ""]
    types = sorted({t for counts in report["splits"]["by_type"].values() for t in counts})
    out += _table(
        ["split", "examples", *types],
        [[name, sizes[name], *[report["splits"]["by_type"][name].get(t, 0) for t in types]] for name in sizes],
    )
    leak = report["leakage"]
    out += [
        "## Leakage",
        f"Test questions at least {leak['threshold']} similar to a training question: **{leak['count']}**.",
        "",
    ]
    if leak["pairs"]:
        out += _table(
            ["test", "train", "similarity"],
            [[p["test_question"], p["train_question"], p["similarity"]] for p in leak["pairs"]],
        )
    return "\n".join(out).rstrip() + "\n"
