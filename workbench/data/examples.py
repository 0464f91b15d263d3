"""Turn QA pairs, or the corpus itself when there is no QA file, into chat-messages examples."""

from __future__ import annotations

import re

from workbench.records import Document, Example, QAPair

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def qa_example(pair: QAPair, group: int) -> Example:
    return Example(
        id=pair.id,
        messages=[{"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.answer}],
        origin="qa",
        kind="qa",
        group=group,
        question=pair.question,
        answer=pair.answer,
        doc_id=pair.doc_id,
        doc_ids=pair.doc_ids,
        type=pair.type,
        paraphrases=pair.paraphrases,
        fields=dict(pair.fields),
    )


def sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) for each Markdown section; text before the first heading has an empty path."""
    found: list[tuple[str, str]] = []
    path: list[str] = []
    body: list[str] = []

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            found.append((" > ".join(path), content))
        body.clear()

    for line in text.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = path[: level - 1] + [heading.group(2).strip()]
        else:
            body.append(line)
    flush()
    return found


def passages(body: str, max_words: int) -> list[str]:
    """Split a section body into passages of about `max_words`, at paragraph boundaries where possible."""
    out: list[str] = []
    current: list[str] = []
    count = 0
    for paragraph in (p.strip() for p in body.split("\n\n")):
        if not paragraph:
            continue
        words = len(paragraph.split())
        if current and count + words > max_words:
            out.append("\n\n".join(current))
            current, count = [], 0
        current.append(paragraph)
        count += words
    if current:
        out.append("\n\n".join(current))
    return out


def corpus_examples(doc: Document, max_words: int, group: int) -> list[Example]:
    """Examples generated from one document, marked `origin="corpus"`.

    Each passage becomes a `section_qa` example (asked about its section by title and heading) and, when it is
    long enough to split, a `continuation` example (the first half given, the second half to write).
    """
    examples: list[Example] = []
    n = 0
    for heading, body in sections(doc.text):
        where = f"{doc.title} — {heading}" if heading and heading != doc.title else doc.title
        for passage in passages(body, max_words):
            n += 1
            question = f'What does "{where}" say?'
            examples.append(_corpus_example(doc, group, f"{doc.id}#s{n}", "section_qa", question, passage))
            words = passage.split()
            if len(words) >= 40:
                half = len(words) // 2
                prompt = f'Continue this passage from "{doc.title}":\n\n{" ".join(words[:half])}'
                rest = " ".join(words[half:])
                examples.append(_corpus_example(doc, group, f"{doc.id}#c{n}", "continuation", prompt, rest))
    return examples


def _corpus_example(doc: Document, group: int, example_id: str, kind: str, prompt: str, answer: str) -> Example:
    return Example(
        id=example_id,
        messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        origin="corpus",
        kind=kind,
        group=group,
        question=prompt,
        answer=answer,
        doc_id=doc.id,
        doc_ids=[doc.id],
    )
