"""`workbench prepare`: corpus (+ QA) -> clean documents, leak-free chat splits, a quality report and a manifest.

Stages run in this order, each feeding the quality report: load -> repair text -> strip boilerplate -> redact PII
-> drop short, exact-duplicate and near-duplicate documents -> QA (or corpus-derived) examples -> grouped,
stratified split -> leakage check. All outputs are computed first, then written into a staging folder and switched
in together (`staged_version`), so a failed run, a full disk included, leaves the previous run's outputs as they
were; the run folder's other files (adapters, checkpoints, training curves) are never touched.
"""

from __future__ import annotations

import difflib
import hashlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from workbench import __version__
from workbench.config import Config
from workbench.data import clean, dedup, pii, split
from workbench.data.examples import corpus_examples, qa_example
from workbench.data.loaders import BadInputError, load_corpus, load_qa
from workbench.data.quality import quality_markdown
from workbench.records import Document, Example, QAPair
from workbench.workspace import (
    RunPaths,
    file_sha256,
    package_versions,
    read_json,
    run_paths,
    staged_version,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)


def prepare(
    name: str,
    corpus: list[str | Path],
    qa: str | Path | None = None,
    config: Config | None = None,
    home: str | Path | None = None,
    skip_bad_rows: bool = False,
    progress: bool = True,
) -> dict:
    """Prepare run `name` from corpus folders or files and an optional QA file; returns the quality report."""
    config = config or Config()
    settings = config.prepare
    paths = run_paths(name, home)
    started = time.perf_counter()

    timings: dict[str, float] = {}
    docs, load_report = load_corpus(
        corpus, skip_bad_rows=skip_bad_rows, progress=progress, json_depth=config.limits.json_depth
    )
    timings["load"] = time.perf_counter() - started
    input_files = sorted(set(load_report.files_read))
    report: dict = {
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {
            "read": len(load_report.files_read),
            "skipped": load_report.skipped,
            "skipped_rows": load_report.skipped_rows,
        },
    }
    docs = _clean_documents(docs, settings, report, progress)
    timings["clean_and_dedup"] = time.perf_counter() - started - sum(timings.values())
    if not docs:
        raise BadInputError(_no_documents(corpus, load_report, report["documents"], settings.min_doc_words))

    if qa is not None:
        examples, qa_info = _qa_examples(qa, docs, report, config, skip_bad_rows)
        report["qa"] = qa_info
    else:
        examples = _corpus_examples(docs, settings)
        report["qa"] = None
        if not examples:  # raised before anything is written, so the run's previous outputs stay as they were
            found = report["documents"]
            raise BadInputError(
                f"{', '.join(map(str, corpus))}: no training examples ({found['loaded']} document(s) loaded, "
                f"{found['kept']} kept, 0 QA pairs: no --qa file); without a QA set, examples come from the text "
                "under each heading, and these documents have none. Add documents with body text, or a QA set "
                f"with --qa (question,answer rows), and re-run `workbench prepare --name {name}`"
            )
    by_split = {name: [e for e in examples if e.split == name] for name in split.SPLITS}
    report["examples"] = {
        "origin": "qa" if qa is not None else "corpus",
        "by_kind": dict(Counter(e.example.kind for e in examples)),
    }
    report["splits"] = {
        "sizes": {name: len(rows) for name, rows in by_split.items()},
        "by_type": {
            name: dict(Counter(e.example.type or e.example.kind for e in rows)) for name, rows in by_split.items()
        },
    }
    report["leakage"] = _leakage(by_split["test"], by_split["train"], settings.leakage_threshold)
    timings["examples_split_leakage"] = time.perf_counter() - started - sum(timings.values())
    report["bytes_read"] = sum(Path(path).stat().st_size for path in input_files)
    report["timings"] = {stage: round(seconds, 3) for stage, seconds in timings.items()}
    report["seconds"] = round(time.perf_counter() - started, 3)

    with staged_version(paths.root, keep_others=True) as staging:
        staged = RunPaths(staging)
        outputs = {
            **{staged.split(name): [e.example.to_dict() for e in rows] for name, rows in by_split.items()},
            staged.documents: [doc.to_dict() for doc in docs],
        }
        for path, rows in outputs.items():
            write_jsonl_atomic(path, rows)
        write_json_atomic(staged.quality_json, report)
        write_text_atomic(staged.quality_md, quality_markdown(report))
        _write_manifest(paths, staged, config, corpus, qa, input_files, list(outputs), report)
    return report


@dataclass
class _Split:
    """An example and the split it was assigned to."""

    example: Example
    split: str


def _clean_documents(docs: list[Document], settings, report: dict, progress: bool) -> list[Document]:
    mojibake = []
    for doc in tqdm(docs, desc="clean", unit="doc", disable=not progress):
        doc.text, had_mojibake = clean.repair_text(doc.text)
        doc.title = clean.repair_text(doc.title)[0]
        if had_mojibake:
            mojibake.append(doc.id)
    boilerplate = clean.find_boilerplate(
        [doc.text for doc in docs], settings.boilerplate_min_docs, settings.boilerplate_min_fraction
    )
    lines_removed = 0
    pii_counts: Counter[str] = Counter()
    for doc in docs:
        doc.text, removed = clean.strip_lines(doc.text, boilerplate)
        lines_removed += removed
        doc.text, counts = pii.redact(doc.text, settings.redact)
        doc.title, title_counts = pii.redact(doc.title, settings.redact)
        pii_counts.update(counts + title_counts)
    too_short = [doc.id for doc in docs if len(doc.text.split()) < settings.min_doc_words]
    docs = [doc for doc in docs if len(doc.text.split()) >= settings.min_doc_words]

    exact = dedup.exact_duplicates([doc.text for doc in docs])
    exact_rows = [{"removed": docs[i].id, "kept": docs[j].id} for i, j in exact.items()]
    docs = [doc for i, doc in enumerate(docs) if i not in exact]
    near = dedup.near_duplicates([doc.text for doc in docs], settings.near_dup_threshold, settings.shingle_words)
    near_rows = [
        {"removed": docs[i].id, "kept": docs[j].id, "similarity": round(score, 3)} for i, (j, score) in near.items()
    ]
    docs = [doc for i, doc in enumerate(docs) if i not in near]

    words = [len(doc.text.split()) for doc in docs]
    report["documents"] = {
        "loaded": len(docs) + len(too_short) + len(exact_rows) + len(near_rows),
        "kept": len(docs),
        "too_short": too_short,
        "words": _summary(words),
        "characters": sum(len(doc.text) for doc in docs),
    }
    report["cleaning"] = {
        "mojibake_repaired": mojibake,
        "boilerplate_lines": [{"line": line, "documents": n} for line, n in boilerplate.items()],
        "boilerplate_lines_removed": lines_removed,
    }
    report["duplicates"] = {"exact": exact_rows, "near": near_rows}
    report["pii"] = {"documents": dict(pii_counts)}
    return docs


def _no_documents(corpus, load_report, found: dict, min_words: int) -> str:
    """Why no document is left after loading and cleaning, with the change that would keep some."""
    skipped = load_report.skipped + load_report.skipped_rows
    reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:5])
    short = found["too_short"]  # duplicates always keep one copy, so short documents are the only other loss
    message = (
        f"{', '.join(map(str, corpus))}: no usable documents ({len(load_report.files_read)} file(s) read, "
        f"{len(load_report.skipped)} file(s) and {len(load_report.skipped_rows)} row(s) skipped"
        f"{': ' + reasons if reasons else ''}"
    )
    if short:
        return (
            f"{message}; all {len(short)} document(s) loaded are shorter than prepare.min_doc_words = {min_words} "
            f"words after cleaning: {', '.join(short[:5])}{', ...' if len(short) > 5 else ''}). Add documents with "
            "more text, or set a lower prepare.min_doc_words in a --config file"
        )
    return f"{message}). Point --corpus at a folder of .md/.txt/.html/.pdf files or a .jsonl/.csv with id,title,text"


def _summary(values: list[int]) -> dict:
    if not values:
        return {"total": 0, "min": 0, "median": 0, "max": 0}
    return {"total": sum(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def _qa_examples(qa, docs: list[Document], report: dict, config: Config, skip_bad_rows: bool):
    settings = config.prepare
    pairs, qa_report = load_qa(qa, skip_bad_rows=skip_bad_rows, json_depth=config.limits.json_depth)
    pii_counts: Counter[str] = Counter()
    for pair in pairs:
        pair.question, c1 = pii.redact(clean.repair_text(pair.question)[0], settings.redact)
        pair.answer, c2 = pii.redact(clean.repair_text(pair.answer)[0], settings.redact)
        redacted = [pii.redact(clean.repair_text(p)[0], settings.redact) for p in pair.paraphrases]
        pair.paraphrases = [text for text, _ in redacted]
        pii_counts.update(c1 + c2 + sum((counts for _, counts in redacted), Counter()))
    pairs, remapped, unknown = _resolve_doc_ids(pairs, docs, report, settings.min_doc_words, qa_report, skip_bad_rows)

    groups = split.group_similar([pair.questions() for pair in pairs], settings.question_group_threshold)
    names = split.assign_splits(groups, [pair.type for pair in pairs], settings.split.model_dump(), settings.seed)
    examples = [_Split(qa_example(pair, group), name) for pair, group, name in zip(pairs, groups, names)]
    covered = {doc_id for pair in pairs for doc_id in pair.doc_ids}
    info = {
        "file": str(qa),
        "pairs": len(pairs),
        "skipped_rows": qa_report.skipped_rows,
        "by_type": dict(Counter(pair.type or "untyped" for pair in pairs)),
        "paraphrases": sum(len(pair.paraphrases) for pair in pairs),
        "groups": len(set(groups)),
        "pii": dict(pii_counts),
        "doc_ids_remapped": remapped,
        "unknown_doc_ids": unknown,
        "documents_without_questions": sorted(doc.id for doc in docs if doc.id not in covered),
    }
    return examples, info


def _resolve_doc_ids(
    pairs: list[QAPair], docs: list[Document], report: dict, min_words: int, qa_report, skip_bad_rows: bool
) -> tuple[list[QAPair], list[dict], list[dict]]:
    """Point QA pairs at the kept copy of a removed duplicate. A pair naming a document that doesn't exist would
    train and score against the wrong gold documents: a `BadInputError` naming its line, or with `skip_bad_rows`
    a skipped row. Returns (pairs kept, remapped references, unknown references)."""
    kept_for = {row["removed"]: row["kept"] for kind in ("exact", "near") for row in report["duplicates"][kind]}
    known = {doc.id for doc in docs}
    too_short = set(report["documents"]["too_short"])
    kept, remapped, unknown, problems = [], [], [], []
    for pair in pairs:
        targets = {}
        for doc_id in dict.fromkeys([*pair.doc_ids, *([pair.doc_id] if pair.doc_id else [])]):
            target = doc_id
            while target in kept_for:
                target = kept_for[target]
            targets[doc_id] = target
        missing = [doc_id for doc_id, target in targets.items() if target not in known]
        if missing:
            unknown += [{"qa_id": pair.id, "doc_id": doc_id} for doc_id in missing]
            problems.append(
                (pair.source, "; ".join(_unknown_document(d, known, too_short, min_words) for d in missing))
            )
            continue
        remapped += [{"qa_id": pair.id, "from": d, "to": t} for d, t in targets.items() if t != d]
        pair.doc_ids = [targets[doc_id] for doc_id in pair.doc_ids]
        pair.doc_id = targets.get(pair.doc_id)
        kept.append(pair)
    if problems and (not skip_bad_rows or not kept):
        where, problem = problems[0]
        others = f"; {len(problems) - 1} more row(s) name unknown documents" if len(problems) > 1 else ""
        fix = (
            "fix the ids, or pass --skip-bad-rows to skip such rows"
            if kept
            else "no row names only known documents: is this the QA set of this corpus?"
        )
        raise BadInputError(
            f"{where}: {problem}{others}. A document's id is its path under the corpus folder without the suffix, "
            f"or the id column of a .jsonl/.csv corpus; {fix}"
        )
    for where, problem in problems:
        qa_report.skip_row(where, problem)
    return kept, remapped, unknown


def _unknown_document(doc_id: str, known: set[str], too_short: set[str], min_words: int) -> str:
    """Why `doc_id` names no kept document: dropped as too short, else unknown (with the closest known id)."""
    if doc_id in too_short:
        return f"doc_id {doc_id!r} names a document dropped as shorter than prepare.min_doc_words = {min_words} words"
    close = difflib.get_close_matches(doc_id, known, n=1)
    return f"unknown doc_id {doc_id!r}: no document has this id" + (f" (did you mean {close[0]!r}?)" if close else "")


def _corpus_examples(docs: list[Document], settings) -> list[_Split]:
    """Without a QA file: passages become examples, split by document so no passage of a test document is trained on."""
    names = split.assign_splits(list(range(len(docs))), [None] * len(docs), settings.split.model_dump(), settings.seed)
    return [
        _Split(example, name)
        for group, (doc, name) in enumerate(zip(docs, names))
        for example in corpus_examples(doc, settings.passage_words, group)
    ]


def _leakage(test: list[_Split], train: list[_Split], threshold: float) -> dict:
    test_texts = [[e.example.question, *e.example.paraphrases] for e in test]
    train_texts = [[e.example.question, *e.example.paraphrases] for e in train]
    found = split.leakage(test_texts, train_texts, threshold)
    return {
        "threshold": threshold,
        "count": len({t for t, _, _ in found}),
        "pairs": [
            {
                "test_id": test[t].example.id,
                "train_id": train[r].example.id,
                "similarity": round(score, 3),
                "test_question": test[t].example.question,
                "train_question": train[r].example.question,
            }
            for t, r, score in found
        ],
    }


def _write_manifest(paths, staged, config: Config, corpus, qa, input_files, outputs, report) -> None:
    """The run's manifest with a new `prepare` section, written to `staged`; other steps' sections are kept, but
    for `synth`'s, which describes synthetic rows the new splits no longer hold."""
    inputs = {str(path): file_sha256(Path(path)) for path in input_files}
    if qa is not None:
        inputs[str(qa)] = file_sha256(Path(qa))
    combined = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(inputs.items())).encode()).hexdigest()
    manifest = read_json(paths.manifest) if paths.manifest.exists() else {"name": paths.root.name}
    manifest.pop("synth", None)  # the new splits hold no synthetic pairs until `synth --apply` adds them again
    manifest["prepare"] = {
        "created_at": report["created_at"],
        "config": config.model_dump(mode="json"),
        "corpus": [str(p) for p in corpus],
        "qa": str(qa) if qa is not None else None,
        "input_hash": combined,
        "inputs": inputs,
        "outputs": {str(path.relative_to(staged.root)): file_sha256(path) for path in outputs},
        "counts": {"documents": report["documents"]["kept"], **report["splits"]["sizes"]},
        "seconds": report["seconds"],
        "versions": package_versions("ftfy", "datasketch", "pypdf", "beautifulsoup4") | {"workbench": __version__},
    }
    write_json_atomic(staged.manifest, manifest)
