"""A labelled hallucination set built from a prepared run's questions: true reference answers against corrupted ones.

Each answerable QA pair gives its reference answer (label 0) and one corruption of it (label 1), taking turns over
four kinds: a number or date changed (`swapped_number`), a name or product code replaced by another from the
corpus (`swapped_name`), a name or code replaced by another that the pair's gold documents hold, so that every
name is in the evidence but the answer says of one what they say of another (`swapped_relation`), and a plausible
sentence appended that the documents do not support (`invented_fact`). Every other substitute is chosen so that it
does not occur in the pair's gold documents, so each corruption really changes a fact. Where the corruption appends a sentence, the true answer gets a sentence of its gold documents
appended too, so that true and false answers have similar lengths. Unanswerable pairs give their abstention only
(label 0). Pairs are split by a seeded shuffle into a
`calibration` half and an `evaluation` half, so a threshold fitted on one is reported on the other. The same
questions, documents and seed give the same set.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from workbench.judge.claims import split_sentences
from workbench.judge.facts import extract_facts, name_in
from workbench.records import Example, read_split
from workbench.workspace import read_jsonl, run_paths

CORRUPTIONS = ("swapped_number", "swapped_name", "swapped_relation", "invented_fact")
INVENTED = (
    "It also comes with a free {n}-month trial of {name}.",
    "This was confirmed by {name} in {year}.",
    "Customers in {name} receive an extra {n}% discount on it.",
    "A replacement kit for it costs €{price}.",
    "The {name} team reviews it every {n} weeks.",
)
"""Sentences appended as invented facts; every filled-in value is absent from the pair's gold documents."""


def load_documents(name: str, home: str | Path | None = None) -> dict[str, str]:
    """A prepared run's documents as `{doc_id: title + text}`."""
    return {row["id"]: f"{row['title']}\n{row['text']}" for row in read_jsonl(run_paths(name, home).documents)}


def load_questions(name: str, home: str | Path | None = None) -> list[Example]:
    """Every question of a prepared run (all splits; corpus examples left out)."""
    paths = run_paths(name, home)
    return [e for split in ("train", "val", "test") for e in read_split(paths.split(split)) if e.is_question]


def build_labelled_set(questions: list[Example], documents: dict[str, str], seed: int = 13) -> list[dict]:
    """Rows `{id, qa_id, question, answer, reference, label, kind, change, doc_ids, half}`; label 1 = hallucinated.

    `questions` are examples with a reference answer (`Example.is_question`); `doc_ids` are their gold documents.
    `change` says what a corruption replaced or added (`{"from", "to"}`); `half` is `calibration` or `evaluation`.
    """
    rng = random.Random(seed)
    pools = _corpus_pools(documents)
    ids = sorted(qa.id for qa in questions)
    rng.shuffle(ids)
    half = {qa_id: "calibration" if i < len(ids) // 2 else "evaluation" for i, qa_id in enumerate(ids)}
    rows = []
    for position, qa in enumerate(sorted(questions, key=lambda q: q.id)):
        doc_ids = qa.gold_doc_ids
        base = {"qa_id": qa.id, "question": qa.question, "reference": qa.answer, "doc_ids": doc_ids}
        base["half"] = half[qa.id]
        true = base | {"id": f"{qa.id}-true", "answer": qa.answer, "label": 0, "kind": "true", "change": None}
        rows.append(true)
        gold = "\n".join(documents.get(d, "") for d in doc_ids)
        if not gold:
            continue  # unanswerable: nothing to corrupt against
        for turn in range(len(CORRUPTIONS)):
            kind = CORRUPTIONS[(position + turn) % len(CORRUPTIONS)]
            corrupted = CORRUPT[kind](qa.answer, qa.question, gold, pools, rng)
            if corrupted:
                answer, change = corrupted
                rows.append(base | {"id": f"{qa.id}-{kind}", "answer": answer, "label": 1, "kind": kind})
                rows[-1]["change"] = change
                if kind == "invented_fact":  # the true answer gets a true extra sentence: length gives nothing away
                    extra = _supported_sentence(gold, qa.answer, len(change["to"].split()), rng)
                    if extra:
                        true["answer"] = f"{qa.answer.rstrip()} {extra}"
                        true["change"] = {"from": None, "to": extra, "supported": True}
                break
    return rows


def _supported_sentence(gold: str, answer: str, words: int, rng: random.Random) -> str | None:
    """A sentence of the gold documents, not already in the answer, about as long as an invented one."""
    candidates = [
        s.strip()
        for s in split_sentences(gold)
        if not s.lstrip().startswith(("#", "|", "-")) and 5 <= len(s.split()) <= 40 and s.strip() not in answer
    ]
    if not candidates:
        return None
    sample = rng.sample(candidates, min(5, len(candidates)))
    return min(sample, key=lambda s: abs(len(s.split()) - words))


def summary(rows: list[dict]) -> dict:
    """Counts per half and kind, and the base rate (share of hallucinated rows) of each half."""
    result = {}
    for part in ("calibration", "evaluation"):
        chosen = [r for r in rows if r["half"] == part]
        result[part] = {
            "rows": len(chosen),
            "base_rate": round(sum(r["label"] for r in chosen) / len(chosen), 4) if chosen else None,
            "kinds": dict(sorted(Counter(r["kind"] for r in chosen).items())),
        }
    return result


def _corpus_pools(documents: dict[str, str]) -> dict[str, list[str]]:
    """Names (by word count) and product codes found in the corpus, sorted so that seeded choices repeat.

    A single capitalised word that also occurs in lower case ("Settings", "Definition") is an ordinary word.
    """
    names, codes = set(), set()
    lower = {w for text in documents.values() for w in re.findall(r"\b[a-z]+\b", text)}
    for text in documents.values():
        for fact in extract_facts(text):
            if fact.kind == "name" and (" " in fact.text or fact.text.lower() not in lower):
                names.add(fact.text)
            elif fact.kind == "code" and len(fact.text) >= 3:
                codes.add(fact.text)
    pools = {"code": sorted(codes)}
    for name in names:
        pools.setdefault(f"name{len(name.split())}", []).append(name)
    return {key: sorted(values) for key, values in pools.items()}


def _absent(candidates: list[str], gold: str, *texts: str) -> list[str]:
    return [c for c in candidates if not any(name_in(c, t) for t in (gold, *texts))]


def _swap_number(answer: str, question: str, gold: str, pools: dict, rng: random.Random):
    gold_values = {f.value for f in extract_facts(gold) if f.kind != "name"}
    asked = {f.value for f in extract_facts(question)}
    facts = [f for f in extract_facts(answer) if f.kind in ("number", "date")]
    facts = [f for f in facts if f.value not in asked and re.fullmatch(r"[\d,]+(\.\d+)?", _digits(f, answer))]
    rng.shuffle(facts)
    for fact in facts:
        start, end = _digit_span(fact, answer)
        old = answer[start:end]
        for new in _other_numbers(old, rng):
            value = new.replace(",", "")
            if value not in gold_values and not name_in(new, gold) and new != old:
                return answer[:start] + new + answer[end:], {"from": old, "to": new}
    return None


def _digits(fact, answer: str) -> str:
    start, end = _digit_span(fact, answer)
    return answer[start:end]


def _digit_span(fact, answer: str) -> tuple[int, int]:
    """A number's own digits; for a date, its year (the part a swap changes)."""
    start, end = fact.span
    if fact.kind == "date":
        year = re.search(r"\d{4}", answer[start:end])
        return start + year.start(), start + year.end()
    return start, end


def _other_numbers(old: str, rng: random.Random) -> list[str]:
    """Nearby plausible values for a number, in a seeded order, formatted like the original."""
    value = float(old.replace(",", ""))
    if re.fullmatch(r"(19|20)\d\d", old):
        steps = [value + d for d in (-3, -2, -1, 1, 2, 3)]
    else:
        steps = [value + 1, value + 2, value * 2, value * 3, value + 5, value + 10, value * 1.5, value - 1]
    rng.shuffle(steps)
    decimals = len(old.split(".")[1]) if "." in old else 0
    out = []
    for step in steps:
        if step <= 0:
            continue
        text = f"{step:,.{decimals}f}" if "," in old else f"{step:.{decimals}f}"
        if text not in out:
            out.append(text)
    return out


def _swap_name(answer: str, question: str, gold: str, pools: dict, rng: random.Random):
    facts = [f for f in extract_facts(answer) if f.kind in ("name", "code") and name_in(f.text, gold)]
    facts = [f for f in facts if not name_in(f.text, question)]
    rng.shuffle(facts)
    for fact in facts:
        pool = pools["code"] if fact.kind == "code" else pools.get(f"name{len(fact.text.split())}", [])
        candidates = _absent(pool, gold, answer, question)
        start = answer.find(fact.text, fact.span[0])
        if candidates and start >= 0:
            new = rng.choice(candidates)
            return answer[:start] + new + answer[start + len(fact.text) :], {"from": fact.text, "to": new}
    return None


def _swap_relation(answer: str, question: str, gold: str, pools: dict, rng: random.Random):
    """A name of the answer replaced by another corpus name of as many words that the gold documents also hold; a
    code by another code of its series there (`S2` for `S3 Pro`, `E217` for `E204`)."""
    facts = [f for f in extract_facts(answer) if f.kind in ("name", "code") and name_in(f.text, gold)]
    facts = [f for f in facts if not name_in(f.text, question)]
    rng.shuffle(facts)
    for fact in facts:
        pool = pools["code"] if fact.kind == "code" else pools.get(f"name{len(fact.text.split())}", [])
        if fact.kind == "code":
            pool = [c for c in pool if _series(c) == _series(fact.text)]
        candidates = [c for c in pool if name_in(c, gold) and c not in _present(pool, answer, question)]
        start = answer.find(fact.text, fact.span[0])
        if candidates and start >= 0:
            new = rng.choice(candidates)
            return answer[:start] + new + answer[start + len(fact.text) :], {"from": fact.text, "to": new}
    return None


def _present(candidates: list[str], *texts: str) -> list[str]:
    return [c for c in candidates if any(name_in(c, t) for t in texts)]


def _series(code: str) -> str:
    return re.match(r"[A-Z]*", code.upper()).group()


def _invent_fact(answer: str, question: str, gold: str, pools: dict, rng: random.Random):
    gold_values = {f.value for f in extract_facts(gold) if f.kind != "name"}
    names = _absent(pools.get("name1", []) + pools.get("name2", []), gold, answer, question)
    numbers = [str(n) for n in range(2, 100) if str(n) not in gold_values]
    years = [str(y) for y in range(2012, 2026) if str(y) not in gold_values]
    prices = [f"{n}" for n in range(19, 400, 10) if str(n) not in gold_values]
    if not (names and numbers and years and prices):
        return None
    values = {"name": rng.choice(names), "n": rng.choice(numbers), "year": rng.choice(years)}
    sentence = rng.choice(INVENTED).format(price=rng.choice(prices), **values)
    return f"{answer.rstrip()} {sentence}", {"from": None, "to": sentence}


CORRUPT = {
    "swapped_number": _swap_number,
    "swapped_name": _swap_name,
    "swapped_relation": _swap_relation,
    "invented_fact": _invent_fact,
}
