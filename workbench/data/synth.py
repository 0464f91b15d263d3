"""Synthetic QA pairs from a prepared run's documents: generate, check, review, and add to the splits.

**Generate** (`synthesize`). Each document is cut into the index's chunks (the same chunker, sizes and tokenizer, so
a pair's `chunk_id` is the id `workbench index` gives its passage). Every sentence of a chunk that states something
(a checkable fact, or at least `LONG_SENTENCE_WORDS` words) is an atomic fact. For each fact the generator writes
`per_fact` questions (the first decoded greedily, the others as seeded samples), answers each question from the
chunk, and rewords each kept question `paraphrases` times: several QA pairs per fact and several wordings of each,
as the knowledge-injection literature trains on. The generator is the run's base chat model through the engine
(`local`) or a configured OpenAI-compatible endpoint (`remote:NAME`); the prompts are the constants below.

**Check.** Small models write junk, so every reply is parsed strictly and a pair is kept only when
- its question is a real question (it ends with "?", has 4-40 words, does not point at "the passage"), is not copied
  from the passage, and its content words are mostly the passage's (`QUESTION_GROUNDED`): no invented topic;
- its answer adds something to the question and is supported by the chunk: every key fact of the answer
  (`judge.facts.extract_facts`, less those the question states) is stated by the fact's sentence or the chunk's
  sentences closest to the question, and most of its content words are the chunk's (`ANSWER_CONTENT`, or
  `ANSWER_CONTENT_WITH_FACTS` when key facts carry the answer); an abstention is no answer;
- a paraphrase asks the same thing in other words: it is a question by the same checks, differs from the question,
  keeps its key facts and names, stays a wh-question if it was one, and shares enough of its content words
  (`PARAPHRASE_OVERLAP`).
Each kept pair records whether its answer is in its chunk verbatim (`verbatim`) and whether it has key facts, all
found (`key_facts`). What was dropped is counted by reason in the summary.

**Files.** `runs/NAME/synth/pairs.jsonl` (one `SynthPair` a line, read back with `read_pairs`) and
`runs/NAME/synth/summary.json`, switched in together when generation ends, so a failed or interrupted run leaves the
previous ones as they were. A new run replaces the pending pairs of the documents it covers; reviewed pairs
(accepted, edited, rejected) and the pairs of other documents stay.

**Review** (`accept_pairs`, `reject_pairs`, `edit_pair`): pure updates of the pairs file by pair id, for the CLI and UI.

**Apply** (`apply_pairs`): the non-rejected pairs become `origin: synthetic` examples in `data/{train,val,test}.jsonl`.
Every document has one split, drawn exactly as `prepare` splits documents (seeded, by the run's recorded split ratios
and seed), so all pairs of a document land together, with their paraphrases in the example's `paraphrases` (extra
training rows under `finetune.recipe: paraphrase`). Pending pairs never enter test: a test document's pairs go in
only once a person accepted or edited them. A pair whose question is as similar to a question of another split as
`prepare.leakage_threshold` is left out, so no leakage is added. Applying again replaces the earlier synthetic rows;
the splits and the manifest (whose `prepare.outputs` hashes then match the new files, and whose `synth` section says
what was applied) are switched in together.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from workbench.config import Config, PrepareConfig, RemoteConfig
from workbench.data import split as splitting
from workbench.data.examples import qa_example
from workbench.data.loaders import BadInputError, numbered_jsonl_rows
from workbench.judge.claims import split_sentences
from workbench.judge.facts import Coverage, extract_facts
from workbench.records import Chunk, Document, Example, QAPair, read_split
from workbench.text_metrics import content_words, normalize
from workbench.variants import Decoding, conversation
from workbench.workspace import (
    RunPaths,
    file_sha256,
    read_json,
    read_jsonl,
    resolve_home,
    run_paths,
    staged_version,
    write_json_atomic,
    write_jsonl_atomic,
)

QUESTION_PROMPT = (
    'Passage from "{title}":\n{passage}\n\nWrite a question about this sentence: "{fact}"\n'
    "Reply with the question only."
)
"""Asks for one question about one fact, shown its passage. Measured on the demo against the sentence alone, with or
without the title, and a one-shot example (which SmolLM2-135M copies): this one stayed on the passage most often."""
ANSWER_PROMPT = (
    'Passage from "{title}":\n{passage}\n\nAnswer the question in one sentence, using only the passage.\n'
    "Question: {question}"
)
PARAPHRASE_PROMPT = 'List {count} questions that ask the same thing as "{question}" in other words.'
"""SmolLM2-135M answers a question it is asked to reword under every wording tried; a list to continue is the one
form it sometimes completes with rewordings (more often when sampled)."""

STATUSES = ("pending", "accepted", "rejected", "edited")
"""A pair's review state: `pending` until a person accepts, edits or rejects it."""
REVIEWED = ("accepted", "edited")
"""Statuses of pairs a person vouched for: only these may enter the test split."""

QUESTION_TOKENS, ANSWER_TOKENS, PARAPHRASE_TOKENS = 48, 64, 72
"""Longest reply, in tokens, for each kind of prompt."""
SAMPLE_TEMPERATURE = 0.7
"""Temperature of the seeded samples (every question after the first of a fact, and paraphrase retries)."""
CHUNKS_PER_BATCH = 4
"""Chunks whose prompts are generated together: enough rows to fill the engine's decoding groups."""
LONG_SENTENCE_WORDS = 8
"""A sentence without a checkable fact is still a fact to ask about when it has at least this many words."""
QUESTION_GROUNDED = 0.6
"""Least share of a question's content words that its passage (or title) holds."""
ANSWER_CONTENT = 0.8
"""Least share of an answer's content words that its chunk holds, when the answer has no key facts."""
ANSWER_CONTENT_WITH_FACTS = 0.5
"""The same share when the answer's key facts are all found near the question in the chunk."""
PARAPHRASE_OVERLAP = 0.5
"""Least Jaccard overlap of what a paraphrase is about (its content words less question words and framing) with
what its question is about."""
COPIED_WORDS = 8
"""A question holding this many consecutive words of its passage copies it rather than asks about it."""
EVIDENCE_SENTENCES = 2
"""Chunk sentences closest to a question (besides the fact's own) in which an answer's key facts must be found."""

_QUESTION_OPENERS = set(
    "what which who whom whose when where why how is are was were do does did can could should will would has have "  # noqa: SIM905
    "had may might must in on at for from by with under after before during".split()
)
_WH_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how"}
_QUESTION = re.compile(r"\b(?:" + "|".join(w.capitalize() for w in sorted(_QUESTION_OPENERS)) + r")\b[^?\n]*\?")
"""A question in a line of a reply: from a capitalised question word or auxiliary to the first question mark."""
_QUESTION_FRAMING = set(
    "maximum minimum number purpose kind type name named called happens happen long price cost costs amount used "  # noqa: SIM905
    "use mean means role main need needed required exactly".split()
)
"""Words a question may add to its passage's without inventing a topic ("What is the maximum number of ...")."""
_POINTS_AT_SOURCE = re.compile(
    r"\b(?:this|the|that|above|given|following)\s+(?:text|passage|sentence|document|article|context|paragraph)\b"
    r"|\banswer to this question\b",
    re.IGNORECASE,
)
_PREFIX = re.compile(
    r"^\s*(?:[-*•]|\d+[.)]|[QA]\d*\s*[:.]|(?:question|answer|reworded question)\s*\d*\s*:)\s*", re.IGNORECASE
)
_ABSTAINS = re.compile(
    r"\b(?:not (?:mentioned|specified|stated|provided|given|say|clear)|does(?: not|n't) (?:say|mention|specify|"
    r"state|provide)|no information|i (?:do not|don't) know|cannot (?:be )?(?:determined|answered|answer))\b",
    re.IGNORECASE,
)


# -- records ---------------------------------------------------------------------------------------------------------


@dataclass
class SynthPair:
    """One synthetic QA pair with where it came from, its automatic checks and its review state; a line of
    `runs/NAME/synth/pairs.jsonl`, read back with `read_pairs`."""

    id: str
    question: str
    answer: str
    doc_id: str
    chunk_id: str
    paraphrases: list[str] = field(default_factory=list)
    origin: str = "synthetic"
    status: str = "pending"
    """`pending`, `accepted`, `rejected` or `edited` (see `STATUSES`)."""
    verbatim: bool = False
    """The answer's words appear in its chunk as one run (case and punctuation aside)."""
    key_facts: bool = False
    """The answer states key facts (numbers, dates, names, codes the question does not) and all are in its chunk."""
    facts: list[str] = field(default_factory=list)
    """The answer's key facts, as written."""
    content_share: float = 0.0
    """Share of the answer's content words found in its chunk."""
    fact: str = ""
    """The chunk's sentence the question was written about."""
    title: str = ""
    """The document's title."""
    context: str = ""
    """The chunk's text, so a reviewer sees the passage and an edit can be checked against it."""
    generator: str = ""
    """What wrote the pair, e.g. `local:smollm2-135m-instruct`."""

    def to_dict(self) -> dict:
        return asdict(self)


_PAIR_TYPES = {f.name: f.type for f in fields(SynthPair)}  # annotations as written: "str", "list[str]", ...
_REQUIRED = ("id", "question", "answer", "doc_id", "chunk_id")


def read_pairs(path: Path) -> list[SynthPair]:
    """The pairs of a pairs file, in file order; a bad line is a `BadInputError` naming `file:line` and the field."""
    path = Path(path)
    redo = "fix or delete the file, then run `workbench synth` again"
    pairs = []
    for number, row in numbered_jsonl_rows(path):
        where = f"{path}:{number}"
        if isinstance(row, str):
            raise BadInputError(f"{where}: {row}; {redo}")
        values = {}
        for name, kind in _PAIR_TYPES.items():
            if name not in row:
                if name in _REQUIRED:
                    raise BadInputError(f"{where}: missing field '{name}'; {redo}")
                continue
            value = row[name]
            expected = {"str": str, "bool": bool, "float": (int, float), "list[str]": list}[kind]
            wrong = not isinstance(value, expected) or (kind == "float" and isinstance(value, bool))
            if wrong or (kind == "list[str]" and not all(isinstance(item, str) for item in value)):
                raise BadInputError(f"{where}: field '{name}' has the wrong type; {redo}")
            values[name] = value
        if values.get("status", "pending") not in STATUSES:
            raise BadInputError(f"{where}: status {values['status']!r} is not one of {', '.join(STATUSES)}; {redo}")
        pairs.append(SynthPair(**values))
    return pairs


def synth_folder(name: str, home: str | Path | None = None) -> Path:
    """`runs/NAME/synth/`: the pairs file, the summary and the review lock."""
    return run_paths(name, home).root / "synth"


def pairs_file(name: str, home: str | Path | None = None) -> Path:
    return synth_folder(name, home) / "pairs.jsonl"


def summary_file(name: str, home: str | Path | None = None) -> Path:
    return synth_folder(name, home) / "summary.json"


# -- generators ------------------------------------------------------------------------------------------------------


class Generator(Protocol):
    """What writes the text: one reply per prompt (a user message), greedy with `seed` None, else a seeded sample."""

    name: str

    def replies(self, prompts: list[str], max_new_tokens: int, seed: int | None = None) -> list[str]: ...


class LocalGenerator:
    """The run's base chat model (`model.base`), answering through the engine like the `base` variant: the same
    chat template, system prompt and batched decoding, loaded on first use."""

    def __init__(self, config: Config):
        self.config = config
        self.name = f"local:{config.model.base}"
        self._engine = None

    def replies(self, prompts: list[str], max_new_tokens: int, seed: int | None = None) -> list[str]:
        from workbench.engine import Engine, batch_workers

        if self._engine is None:
            self._engine = Engine(self.config)
        decoding = _decoding(max_new_tokens, seed)
        texts = [""] * len(prompts)
        for position, answer in self._engine.answers([(p, "base") for p in prompts], decoding, batch_workers()):
            texts[position] = answer.text
        return texts


class RemoteGenerator:
    """A configured OpenAI-compatible endpoint (`chat.remotes.NAME`), one request per prompt, with the messages the
    local model gets. A failed request ends the run with the endpoint's error; earlier files stay as they were."""

    def __init__(self, remote: str, settings: RemoteConfig, system_prompt: str | None):
        self.name, self.settings, self.system_prompt = f"remote:{remote}", settings, system_prompt

    def replies(self, prompts: list[str], max_new_tokens: int, seed: int | None = None) -> list[str]:
        from workbench.remote import RemoteChat

        chat, decoding = RemoteChat(self.settings), _decoding(max_new_tokens, seed)
        texts = []
        for prompt in prompts:
            text = ""
            try:
                for text, _usage in chat.stream(conversation(self.system_prompt, [], prompt, None), decoding):
                    pass
            except OSError as exc:
                raise BadInputError(
                    f"generator {self.name}: {self.settings.base_url} failed ({exc}); check the endpoint and "
                    "chat.remotes in the config, or use the local generator"
                ) from None
            texts.append(text.strip())
        return texts


def _decoding(max_new_tokens: int, seed: int | None) -> Decoding:
    """Greedy decoding without a seed, else a seeded sample; a sentence repeated ends the reply either way."""
    if seed is None:
        return Decoding(max_new_tokens=max_new_tokens, temperature=0.0, stop_on_repeat=True)
    return Decoding(max_new_tokens=max_new_tokens, temperature=SAMPLE_TEMPERATURE, seed=seed, stop_on_repeat=True)


def make_generator(spec: str, config: Config) -> Generator:
    """`local`, or `remote:NAME` of `chat.remotes`; anything else is a `BadInputError` listing the choices."""
    if spec == "local":
        return LocalGenerator(config)
    remote = spec.removeprefix("remote:")
    if spec.startswith("remote:") and remote in config.chat.remotes:
        return RemoteGenerator(remote, config.chat.remotes[remote], config.finetune.system_prompt)
    configured = ", ".join(f"remote:{name}" for name in config.chat.remotes) or "no remote configured"
    raise BadInputError(f"generator {spec!r}: use local or remote:NAME of chat.remotes in the config ({configured})")


# -- checks (pure) ---------------------------------------------------------------------------------------------------

DROP_REASONS = {  # why a generated question or answer was dropped, in words (the summary counts the keys)
    "no_question": "no usable question in the reply",
    "points_at_passage": 'question points at "the passage"',
    "copied_from_passage": "question copied from the passage",
    "off_passage": "question about something the passage does not discuss",
    "duplicate_question": "question asked already",
    "no_answer": "no answer in the reply",
    "abstains": "answer declined to answer",
    "restates_question": "answer only restates the question",
    "fact_not_in_passage": "answer states a fact the passage does not",
    "words_not_in_passage": "answer's words mostly not the passage's",
}


def fact_sentences(text: str) -> list[str]:
    """The sentences of a chunk worth a question: not headings, at least 5 words, and stating a checkable fact or
    at least `LONG_SENTENCE_WORDS` words."""
    found = []
    for sentence in split_sentences(text):
        sentence = sentence.strip()
        words = len(sentence.split())
        if sentence.startswith("#") or re.fullmatch(r"[|\s:-]*", sentence) or words < 5:
            continue
        if words >= LONG_SENTENCE_WORDS or extract_facts(sentence):
            found.append(sentence)
    return found


def _words_in(text: str) -> str:
    return f" {' '.join(normalize(text))} "


def _share_in(words: set[str], within: set[str]) -> float:
    return len(words & within) / len(words) if words else 1.0


def parse_question(reply: str, passage: str, title: str = "") -> tuple[str | None, str | None]:
    """(question, None) from a generator's reply, or (None, the reason it was dropped)."""
    question = None
    for line in reply.splitlines():
        match = _QUESTION.search(_PREFIX.sub("", line.strip().strip("*\"'")))
        if match:
            question = match.group(0).strip()
            break
    if question is None:
        return None, "no_question"
    words = question.split()
    if not 4 <= len(words) <= 40 or words[0].lower().strip("'\"") not in _QUESTION_OPENERS:
        return None, "no_question"
    if _POINTS_AT_SOURCE.search(question):
        return None, "points_at_passage"
    if _copies(question.rstrip("?"), passage):
        return None, "copied_from_passage"
    asked = _topic_words(question)
    if not asked or _share_in(asked, content_words(f"{title}\n{passage}")) < QUESTION_GROUNDED:
        return None, "off_passage"
    return question, None


def _topic_words(question: str) -> set[str]:
    """What a question is about: its content words less question words and framing ("does", "maximum number")."""
    return content_words(question) - _QUESTION_OPENERS - _QUESTION_FRAMING


def _copies(question: str, passage: str) -> bool:
    """Whether the question is the passage's words: all of it, or a run of `COPIED_WORDS` of them."""
    words, text = normalize(question), _words_in(passage)
    if f" {' '.join(words)} " in text:
        return True
    runs = (words[i : i + COPIED_WORDS] for i in range(len(words) - COPIED_WORDS + 1))
    return any(f" {' '.join(run)} " in text for run in runs)


def parse_answer(reply: str) -> str | None:
    """The answer in a generator's reply: its first non-empty line, without an "Answer:" label; None if empty."""
    for line in reply.splitlines():
        line = _PREFIX.sub("", line.strip()).strip().strip("*")
        if re.search(r"\w", line):
            return line
    return None


@dataclass(frozen=True)
class Support:
    """How an answer stands against its chunk; `reason` says why it is not `supported`."""

    supported: bool
    verbatim: bool
    key_facts: bool
    facts: list[str]
    content_share: float
    reason: str | None = None


def check_answer(question: str, answer: str, passage: str, fact: str = "", title: str = "") -> Support:
    """Whether `answer` to `question` is supported by `passage` (see the module docstring).

    The evidence is the sentence the question was written about (`fact`) and the passage's sentences closest to
    the question: what the answer adds to the question (its key facts and new content words) must be found there.
    """
    verbatim = bool(normalize(answer)) and _words_in(answer) in _words_in(f"{title}\n{passage}")
    facts = extract_facts(answer, question)
    words = content_words(answer)
    share = round(_share_in(words, content_words(f"{title}\n{passage}")), 3)
    evidence = " ".join([title, fact, *_closest_sentences(passage, question)])
    found = bool(facts) and all(Coverage.of(evidence).states(f) for f in facts)
    added = words - content_words(question)

    def result(reason: str | None) -> Support:
        return Support(reason is None, verbatim, found, [f.text for f in facts], share, reason)

    if _ABSTAINS.search(answer):
        return result("abstains")
    if not facts and not added:
        return result("restates_question")
    if facts and not found:
        return result("fact_not_in_passage")
    if _share_in(added, content_words(evidence)) < (ANSWER_CONTENT_WITH_FACTS if facts else ANSWER_CONTENT):
        return result("words_not_in_passage")
    return result(None)


def _closest_sentences(passage: str, text: str) -> list[str]:
    """The passage's `EVIDENCE_SENTENCES` sentences sharing the most content words with `text`."""
    wanted = content_words(text)
    sentences = split_sentences(passage)
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(content_words(sentences[i]) & wanted), i))
    return [sentences[i] for i in ranked[:EVIDENCE_SENTENCES]]


def parse_paraphrases(reply: str, question: str, passage: str, title: str = "") -> list[str]:
    """The rewordings of `question` in a generator's reply that pass the checks, in order, without repeats."""
    found: list[str] = []
    seen = {" ".join(normalize(question))}
    asked = _topic_words(question)
    question_facts = extract_facts(question)
    wh_question = bool(_WH_WORDS & set(normalize(question)))
    for line in reply.splitlines():
        text, _ = parse_question(line, passage, title)
        if text is None or " ".join(normalize(text)) in seen:
            continue
        if wh_question and not _WH_WORDS & set(normalize(text)):  # "Is the desk ...?" no longer asks "how many"
            continue
        words = _topic_words(text)
        coverage = Coverage.of(text)
        if len(words & asked) / max(1, len(words | asked)) < PARAPHRASE_OVERLAP:
            continue
        if not all(coverage.states(f) for f in question_facts):
            continue
        seen.add(" ".join(normalize(text)))
        found.append(text)
    return found


def pair_id(doc_id: str, question: str) -> str:
    """A stable id: the same question about the same document always gets the same one."""
    return "syn-" + hashlib.sha1(f"{doc_id}\n{' '.join(normalize(question))}".encode()).hexdigest()[:12]


# -- generation ------------------------------------------------------------------------------------------------------


@dataclass
class _Fact:
    doc: Document
    chunk: Chunk
    sentence: str


def synthesize(
    name: str,
    config: Config | None = None,
    home: str | Path | None = None,
    generator: str | Generator = "local",
    per_fact: int = 1,
    paraphrases: int = 2,
    limit_docs: int | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Generate and check QA pairs for run `name`'s documents (the first `limit_docs`), merge them into the pairs
    file and write the summary; returns the summary. `generator` is `local`, `remote:NAME` or a `Generator`.

    `progress` shows a tqdm bar (the CLI); `on_progress(chunks done, chunks in all)` is called once the documents
    are chunked and after each batch (the app's progress bar). An exception it raises ends the run there, the files
    left as they were (how the app's Stop works)."""
    config = config or Config()
    if per_fact < 1:
        raise BadInputError(f"--per-fact {per_fact}: give at least 1 question per fact")
    if paraphrases < 0:
        raise BadInputError(f"--paraphrases {paraphrases}: give 0 or more paraphrases per question")
    if limit_docs is not None and limit_docs < 1:
        raise BadInputError(f"--limit-docs {limit_docs}: give a positive number of documents")
    started = time.perf_counter()
    documents = load_run_documents(name, home)[:limit_docs]
    folder = synth_folder(name, home)
    if pairs_file(name, home).exists():
        read_pairs(pairs_file(name, home))  # a broken pairs file stops the run before any generation
    writer = make_generator(generator, config) if isinstance(generator, str) else generator
    chunks = _chunks(documents, config)
    loaded = time.perf_counter()

    stats = {doc.id: {"chunks": 0, "facts": 0, "questions": 0, "kept": 0, "paraphrases": 0} for doc in documents}
    dropped: dict[str, Counter] = {doc.id: Counter() for doc in documents}
    kept: list[SynthPair] = []
    report = on_progress or (lambda done, total: None)
    report(0, len(chunks))
    with tqdm(total=len(chunks), desc="synth", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(chunks), CHUNKS_PER_BATCH):
            batch = chunks[start : start + CHUNKS_PER_BATCH]
            facts = [_Fact(doc, chunk, s) for doc, chunk, sentences in batch for s in sentences]
            for doc, _, sentences in batch:
                stats[doc.id]["chunks"] += 1
                stats[doc.id]["facts"] += len(sentences)
            kept += _generate(writer, facts, per_fact, paraphrases, stats, dropped, kept)
            bar.update(len(batch))
            report(start + len(batch), len(chunks))
    generated = time.perf_counter()

    summary = {
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generator": writer.name,
        "settings": {
            "per_fact": per_fact,
            "paraphrases": paraphrases,
            "limit_docs": limit_docs,
            "chunk_tokens": config.index.chunk_tokens,
            "overlap_tokens": config.index.overlap_tokens,
        },
        "documents": {doc_id: row | {"dropped": dict(dropped[doc_id])} for doc_id, row in stats.items()},
        "totals": _totals(stats, dropped, kept),
    }
    with _locked(folder):
        previous = read_pairs(pairs_file(name, home)) if pairs_file(name, home).exists() else []
        pairs = _merge(previous, kept, {doc.id for doc in documents})
        summary["pairs_file"] = {"pairs": len(pairs), "by_status": dict(Counter(p.status for p in pairs))}
        summary["timings"] = {
            "chunk": round(loaded - started, 3),
            "generate": round(generated - loaded, 3),
            "total": round(time.perf_counter() - started, 3),
        }
        with staged_version(folder, keep_others=True) as staging:
            write_jsonl_atomic(staging / "pairs.jsonl", [p.to_dict() for p in pairs])
            write_json_atomic(staging / "summary.json", summary)
    return summary


def load_run_documents(name: str, home: str | Path | None = None) -> list[Document]:
    """A prepared run's clean documents; a run that is missing or not prepared is a `BadInputError` saying so."""
    paths = run_paths(name, home)
    prepared = paths.manifest.is_file() and "prepare" in read_json(paths.manifest)
    if not prepared or not paths.documents.is_file():
        runs = sorted(
            p.parent.name for p in (resolve_home(home) / "runs").glob("*/manifest.json") if "prepare" in read_json(p)
        )
        raise BadInputError(
            f"{paths.root}: no prepared run {name!r} (prepared runs: {', '.join(runs) or 'none'}); create it with "
            f"`workbench prepare --name {name} --corpus PATH [--qa PATH]`, then run `workbench synth --name {name}`"
        )
    try:
        return [
            Document(**{k: row[k] for k in ("id", "title", "text", "source", "format")})
            for row in read_jsonl(paths.documents)
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInputError(
            f"{paths.documents}: unreadable ({exc}); re-run `workbench prepare --name {name}` to rewrite it"
        ) from None


def _chunks(documents: list[Document], config: Config) -> list[tuple[Document, Chunk, list[str]]]:
    """(document, chunk, its fact sentences) for every chunk, chunked as the index chunks; a sentence that two
    overlapping chunks share is asked about once, in the first."""
    from workbench.models import load_embedder
    from workbench.retrieval.chunking import chunk_document, token_counter

    count = token_counter(load_embedder(config.model.embedder, config.model.device).tokenizer)
    found = []
    for doc in documents:
        seen: set[str] = set()
        for chunk in chunk_document(doc, count, config.index.chunk_tokens, config.index.overlap_tokens):
            sentences = [s for s in fact_sentences(chunk.text) if s not in seen]
            seen.update(sentences)
            found.append((doc, chunk, sentences))
    return found


def _generate(
    writer: Generator,
    facts: list[_Fact],
    per_fact: int,
    paraphrases: int,
    stats: dict,
    dropped: dict[str, Counter],
    earlier: list[SynthPair],
) -> list[SynthPair]:
    """The checked pairs of one batch of facts: questions, then answers, then paraphrases, each stage in one call."""
    seen = {(p.doc_id, " ".join(normalize(p.question))) for p in earlier}
    asked: list[tuple[_Fact, str]] = []
    for attempt in range(per_fact):
        prompts = [QUESTION_PROMPT.format(title=f.doc.title, passage=f.chunk.text, fact=f.sentence) for f in facts]
        for item, reply in zip(facts, writer.replies(prompts, QUESTION_TOKENS, None if attempt == 0 else attempt)):
            question, why = parse_question(reply, item.chunk.text, item.doc.title)
            key = (item.doc.id, " ".join(normalize(question or "")))
            if question is not None and key in seen:
                why = "duplicate_question"
            if why:
                dropped[item.doc.id][why] += 1
                continue
            seen.add(key)
            stats[item.doc.id]["questions"] += 1
            asked.append((item, question))
    prompts = [ANSWER_PROMPT.format(title=f.doc.title, passage=f.chunk.text, question=q) for f, q in asked]
    kept = []
    for (item, question), reply in zip(asked, writer.replies(prompts, ANSWER_TOKENS) if prompts else []):
        answer = parse_answer(reply)
        support = check_answer(question, answer or "", item.chunk.text, item.sentence, item.doc.title)
        why = "no_answer" if answer is None else support.reason
        if why:
            dropped[item.doc.id][why] += 1
            continue
        stats[item.doc.id]["kept"] += 1
        kept.append(
            SynthPair(
                id=pair_id(item.doc.id, question),
                question=question,
                answer=answer,
                doc_id=item.doc.id,
                chunk_id=item.chunk.id,
                verbatim=support.verbatim,
                key_facts=support.key_facts,
                facts=support.facts,
                content_share=support.content_share,
                fact=item.sentence,
                title=item.doc.title,
                context=item.chunk.text,
                generator=writer.name,
            )
        )
    for attempt in range(paraphrases + 1 if paraphrases else 0):  # greedy first, then up to `paraphrases` samples
        todo = [p for p in kept if len(p.paraphrases) < paraphrases]
        if not todo:
            break
        prompts = [PARAPHRASE_PROMPT.format(count=paraphrases, question=p.question) for p in todo]
        for pair, reply in zip(todo, writer.replies(prompts, PARAPHRASE_TOKENS, None if attempt == 0 else attempt)):
            for text in parse_paraphrases(reply, pair.question, pair.context, pair.title):
                key = (pair.doc_id, " ".join(normalize(text)))  # not another pair's question, nor its paraphrase
                if len(pair.paraphrases) < paraphrases and key not in seen:
                    pair.paraphrases.append(text)
                    seen.add(key)
    for pair in kept:
        stats[pair.doc_id]["paraphrases"] += len(pair.paraphrases)
    return kept


def _totals(stats: dict, dropped: dict[str, Counter], kept: list[SynthPair]) -> dict:
    totals = {key: sum(row[key] for row in stats.values()) for key in ("chunks", "facts", "questions", "kept")}
    totals["documents"] = len(stats)
    totals["paraphrases"] = sum(len(p.paraphrases) for p in kept)
    totals["dropped"] = dict(sum(dropped.values(), Counter()).most_common())
    totals["kept_per_document"] = round(totals["kept"] / len(stats), 2) if stats else 0.0
    totals["kept_share_of_questions"] = round(totals["kept"] / totals["questions"], 3) if totals["questions"] else None
    count = len(kept)
    totals["answers"] = {
        "verbatim": round(sum(p.verbatim for p in kept) / count, 3) if count else None,
        "key_facts": round(sum(p.key_facts for p in kept) / count, 3) if count else None,
        "content_words_only": round(sum(not p.key_facts and not p.verbatim for p in kept) / count, 3)
        if count
        else None,
    }
    return totals


def _merge(previous: list[SynthPair], new: list[SynthPair], documents: set[str]) -> list[SynthPair]:
    """The pairs file after a run over `documents`: their pending pairs replaced by `new`; reviewed pairs and other
    documents' pairs kept, and a new pair that repeats a kept one's id left out."""
    kept = [p for p in previous if p.status != "pending" or p.doc_id not in documents]
    ids = {p.id for p in kept}
    return kept + [p for p in new if p.id not in ids]


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer of the pairs file at a time (a review and a finishing run, two reviewers)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- review ----------------------------------------------------------------------------------------------------------


def accept_pairs(name: str, pair_ids: list[str], home: str | Path | None = None) -> list[SynthPair]:
    """Mark pairs accepted (an edited pair keeps its edits); returns them."""
    return _update(name, home, pair_ids, lambda pair: setattr(pair, "status", "accepted"))


def reject_pairs(name: str, pair_ids: list[str], home: str | Path | None = None) -> list[SynthPair]:
    """Mark pairs rejected: they stay in the pairs file (a rerun will not bring them back) but never in a split."""
    return _update(name, home, pair_ids, lambda pair: setattr(pair, "status", "rejected"))


def edit_pair(
    name: str,
    pair_id: str,
    home: str | Path | None = None,
    question: str | None = None,
    answer: str | None = None,
    paraphrases: list[str] | None = None,
) -> SynthPair:
    """Change a pair's question, answer or paraphrases and mark it edited; its checks are recomputed against its
    chunk and recorded, but a person's edit is never dropped for them."""
    texts = {"question": question, "answer": answer} | {
        f"paraphrase {i + 1}": p for i, p in enumerate(paraphrases or [])
    }
    for label, text in texts.items():
        if text is not None and not (isinstance(text, str) and text.strip()):
            raise BadInputError(f"pair {pair_id}: the {label} is empty; give text or leave it unchanged")

    def change(pair: SynthPair) -> None:
        pair.question = question.strip() if question is not None else pair.question
        pair.answer = answer.strip() if answer is not None else pair.answer
        if paraphrases is not None:
            pair.paraphrases = [p.strip() for p in paraphrases]
        support = check_answer(pair.question, pair.answer, pair.context, pair.fact, pair.title)
        pair.verbatim, pair.key_facts = support.verbatim, support.key_facts
        pair.facts, pair.content_share = support.facts, support.content_share
        pair.status = "edited"

    return _update(name, home, [pair_id], change)[0]


def _update(name: str, home, pair_ids: list[str], change: Callable[[SynthPair], None]) -> list[SynthPair]:
    path = pairs_file(name, home)
    if not path.is_file():
        raise BadInputError(f"{path}: no synthetic pairs to review; generate them with `workbench synth --name {name}`")
    with _locked(path.parent):
        pairs = read_pairs(path)
        by_id = {pair.id: pair for pair in pairs}
        unknown = [pair_id for pair_id in pair_ids if pair_id not in by_id]
        if unknown:
            raise BadInputError(
                f"{path}: no pair with id {', '.join(map(repr, unknown))} ({len(pairs)} pairs there, e.g. "
                f"{', '.join(p.id for p in pairs[:3]) or 'none'}); nothing was changed"
            )
        for pair_id in pair_ids:
            change(by_id[pair_id])
        write_jsonl_atomic(path, [pair.to_dict() for pair in pairs])
    return [by_id[pair_id] for pair_id in pair_ids]


# -- apply -----------------------------------------------------------------------------------------------------------


def document_splits(doc_ids: list[str], settings: PrepareConfig) -> dict[str, str]:
    """Each document's split, drawn as `prepare` splits documents without a QA set (seeded, by the split ratios)."""
    names = splitting.assign_splits(
        list(range(len(doc_ids))), [None] * len(doc_ids), settings.split.model_dump(), settings.seed
    )
    return dict(zip(doc_ids, names))


def apply_pairs(name: str, config: Config | None = None, home: str | Path | None = None) -> dict:
    """Put run `name`'s non-rejected synthetic pairs into its splits (see the module docstring); returns counts."""
    config = config or Config()
    paths = run_paths(name, home)
    documents = load_run_documents(name, home)
    path = pairs_file(name, home)
    if not path.is_file():
        raise BadInputError(f"{path}: no synthetic pairs; generate them with `workbench synth --name {name}` first")
    manifest = read_json(paths.manifest)
    recorded = manifest["prepare"].get("config", {}).get("prepare")
    settings = PrepareConfig.model_validate(recorded) if recorded else config.prepare  # the split the run was made with
    with _locked(path.parent):
        pairs = read_pairs(path)
    rows = {s: [e for e in read_split(paths.split(s)) if e.origin != "synthetic"] for s in splitting.SPLITS}
    replaced = sum(1 for s in splitting.SPLITS for e in read_split(paths.split(s)) if e.origin == "synthetic")
    split_of = document_splits([doc.id for doc in documents], settings)
    first_group = 1 + max((e.group for examples in rows.values() for e in examples), default=-1)
    group_of = {doc.id: first_group + n for n, doc in enumerate(documents)}
    counts = Counter()
    placed: dict[str, list[Example]] = {s: [] for s in splitting.SPLITS}
    for pair in pairs:
        where = split_of.get(pair.doc_id)
        if pair.status == "rejected":
            counts["rejected"] += 1
        elif where is None:
            counts["unknown_document"] += 1
        elif where == "test" and pair.status not in REVIEWED:
            counts["held_back_pending"] += 1
        else:
            placed[where].append(_example(pair, group_of[pair.doc_id]))
    leaking = _leaking(placed, rows, settings.leakage_threshold)
    for s in splitting.SPLITS:
        placed[s] = [e for e in placed[s] if e.id not in leaking]
    report = {
        "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pairs_sha256": file_sha256(path),
        "added": {s: len(placed[s]) for s in splitting.SPLITS},
        "paraphrases": sum(len(e.paraphrases) for examples in placed.values() for e in examples),
        "replaced": replaced,
        "rejected": counts["rejected"],
        "held_back_pending": counts["held_back_pending"],
        "unknown_document": counts["unknown_document"],
        "left_out_for_leakage": sorted(leaking),
    }
    with staged_version(paths.root, keep_others=True) as staging:
        staged = RunPaths(staging)
        for s in splitting.SPLITS:
            write_jsonl_atomic(staged.split(s), [e.to_dict() for e in rows[s] + placed[s]])
            manifest["prepare"].setdefault("outputs", {})[f"data/{s}.jsonl"] = file_sha256(staged.split(s))
        manifest["synth"] = report
        write_json_atomic(staged.manifest, manifest)
    return report


def _example(pair: SynthPair, group: int) -> Example:
    qa = QAPair(
        pair.id,
        pair.question,
        pair.answer,
        source=f"synth:{pair.chunk_id}",
        doc_id=pair.doc_id,
        doc_ids=[pair.doc_id],
        paraphrases=list(pair.paraphrases),
        fields={"review": pair.status},
    )
    return qa_example(qa, group, origin="synthetic")


def _leaking(placed: dict[str, list[Example]], rows: dict[str, list[Example]], threshold: float) -> set[str]:
    """Ids of synthetic examples with a question (or paraphrase) at least `threshold` similar to one in another
    split. Test goes first, then val, then train, each checked against the rows of the other splits and the
    synthetic examples kept so far, so a conflict costs the training side and test keeps its reviewed pairs."""
    leaking: set[str] = set()
    kept: dict[str, list[Example]] = {s: [] for s in splitting.SPLITS}
    for side in ("test", "val", "train"):
        others = [e for s in splitting.SPLITS if s != side for e in rows[s] + kept[s]]
        candidates = placed[side]
        found = splitting.leakage(
            [[e.question, *e.paraphrases] for e in candidates],
            [[e.question, *e.paraphrases] for e in others],
            threshold,
        )
        bad = {candidates[i].id for i, _, _ in found}
        leaking |= bad
        kept[side] = [e for e in candidates if e.id not in bad]
    return leaking
