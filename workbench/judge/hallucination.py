"""Hallucination detectors: score each claim of an answer for how likely it is unsupported by the corpus.

Evidence for a claim is what the answering system was shown (`context`) plus chunks retrieved from the run's index
for the question and for the claim itself, so base and fine-tuned answers are checked against the same corpus as
the RAG ones. The default `evidence` detector runs offline on the retrieval embedder and scores a claim by a
logistic model over six signals: no evidence sentence close to it in meaning, a checkable fact (number, date,
money, name, code, link) missing from the best evidence, a name or code among them, the evidence contradicting it
(the same quantity with another value, or the claim's words with another name in its place), the share of its content words missing from the sentences closest to it, and the
closest sentences saying the same thing of another name. The `nli` detector replaces that score with an
entailment cross-encoder loaded from a local folder. Threshold fitting and precision / recall for the benchmark
live here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import numpy as np

from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.judge.claims import CLAUSE_JOIN, aggregate, split_claims, split_sentences
from workbench.judge.facts import contradicts, extract_facts, facts_agree, name_in, words_of
from workbench.judge.reference import is_abstention
from workbench.models import ModelNotAvailable
from workbench.retrieval.embedding import embed_corpus
from workbench.text_metrics import content_words, normalize

SIM_LOW, SIM_HIGH = 0.5, 0.7
"""Cosine to the best evidence sentence below SIM_LOW counts as no support (weakness 1), above SIM_HIGH as full."""
SUPPORT_SENTENCES = 3
"""A claim's words are looked for in this many sentences of its best passage, those closest to it: the sentences
that would support it. Words found only elsewhere in the evidence (another product's row, another year) do not."""
SWAP_WORDS = 0.75
"""A clause says the same thing as a claim when it holds this share of the claim's content words besides names."""
ALIGN_WORDS = 2
"""A name replaced by a rival counts only between at least this many matching words on one side (`aligned_swap`)."""
CONTRADICTION_SENTENCES = 2
"""A different value counts against a claim only in its closest evidence sentences, where the subject is the same."""
WEIGHTS = {
    "weak": 1.091,
    "missing": 1.124,
    "contradicted": 2.586,
    "unsupported_words": 2.053,
    "missing_name": 0.345,
    "swapped_name": 0.481,
}
INTERCEPT = -2.553
"""The claim score is a logistic model over the signals (`Signals.features`), fitted by `bench/hallucination.py --fit`
on the fitting halves of the demo's real answers (hallucinated vs right by `answer_labels`' rule) and of the
constructed set (with and without context); the other halves are what the README reports. 0.5 is the threshold
where both classes weigh the same."""


@dataclass
class Passage:
    """A piece of evidence: `text` is shown with a claim; `header` (title, section) helps match names only."""

    chunk_id: str
    text: str
    header: str = ""


@dataclass
class Item:
    """One answer to check; `context` is what the answering system was shown, if anything."""

    question: str
    answer: str
    context: list[Passage] | None = None


@dataclass
class ClaimCheck:
    """One claim's verdict: `score` 0..1 (high = likely unsupported), `evidence` the best passages, best first, each
    with the sentence closest to the claim; `features` the signals the score came from (not stored)."""

    text: str
    score: float
    supported: bool
    evidence: list[dict] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "score": self.score, "supported": self.supported, "evidence": self.evidence}


@dataclass
class Check:
    """An answer's verdict: its claims and their aggregate `score` (for ranking answers); `flagged` when any claim is
    likely unsupported, the same verdict the arena's red and the report's flag rates show."""

    score: float
    flagged: bool
    claims: list[ClaimCheck]


class EvidenceDetector:
    """The default detector: embedding similarity plus checkable-fact coverage, no model beyond the embedder."""

    name = "evidence"

    def __init__(self, config: Config, retriever=None):
        self.settings = config.hallucination
        self.retriever = retriever
        self.embedder_spec, self.device = config.model.embedder, config.model.device
        self.batch_size = config.index.batch_size
        self._vectors: dict[str, np.ndarray] = {}  # text -> embedding; a corpus repeats its sentences

    def check(self, items: list[Item]) -> list[Check]:
        """Verdicts for a batch of answers; retrieval and embedding run once for the whole batch."""
        claims = [split_claims(item.answer) for item in items]
        pools = self._evidence(items, claims)
        sentences = {p.text: split_sentences(p.text) for pool in pools for p in pool}
        self._embed([s for group in sentences.values() for s in group] + [c for group in claims for c in group])
        return [self._check(item, texts, pool, sentences) for item, texts, pool in zip(items, claims, pools)]

    def _evidence(self, items: list[Item], claims: list[list[str]]) -> list[list[Passage]]:
        """Each item's passages: its context, then chunks retrieved for its question and each of its claims."""
        if any(item.context is None for item in items) and self.retriever is None:
            raise BadInputError("an answer without context needs an index to retrieve evidence from")
        queries = [[item.question, *texts] for item, texts in zip(items, claims)] if self.retriever else []
        flat = [q for group in queries for q in group]
        hits = self.retriever.search_many(flat, self.settings.retrieve_k) if flat else []
        pools, at = [], 0
        for i, item in enumerate(items):
            pool = {p.chunk_id: p for p in item.context or []}
            if self.retriever:
                for found in hits[at : at + len(queries[i])]:
                    for hit in found:
                        chunk = hit.chunk
                        header = " ".join([chunk.title, *chunk.headings])
                        pool.setdefault(chunk.id, Passage(chunk.id, chunk.text, header))
                at += len(queries[i])
            pools.append(list(pool.values()))
        return pools

    def _embed(self, texts: list[str]) -> None:
        new = sorted({t for t in texts if t not in self._vectors})
        vectors, _ = embed_corpus(self.embedder_spec, new, self.batch_size, self.device)
        self._vectors.update(zip(new, vectors))

    def _check(self, item: Item, texts: list[str], pool: list[Passage], sentences: dict) -> Check:
        checks = [self._check_claim(text, item.question, pool, sentences) for text in texts]
        score = aggregate([c.score for c in checks], self.settings.aggregate)
        return Check(score, any(not c.supported for c in checks), checks)

    def _check_claim(self, claim: str, question: str, pool: list[Passage], sentences: dict) -> ClaimCheck:
        if is_abstention(claim, question) or claim.rstrip().endswith("?"):  # a question asserts nothing
            return ClaimCheck(claim, 0.0, True, [])
        ranked = self._ranked(claim, pool, sentences)
        best = ranked[: self.settings.evidence_chunks]
        evidence = [
            {"chunk_id": p.chunk_id, "text": p.text, "score": round(s, 4), "sentence": scored[0][1]}
            for p, s, scored in best
        ]
        signals = claim_signals(claim, question, best)
        score = self.claim_score(claim, question, best, signals)
        return ClaimCheck(claim, round(score, 4), score < self.settings.threshold, evidence, signals.features())

    def _ranked(self, claim: str, pool: list[Passage], sentences: dict) -> list[tuple[Passage, float, list]]:
        """Passages by their closest sentence to the claim: (passage, cosine, [(cosine, sentence)] best first)."""
        target = self._vectors[claim]
        ranked = []
        for passage in pool:
            scored = sorted(((float(self._vectors[s] @ target), s) for s in sentences[passage.text]), reverse=True)
            if scored:
                ranked.append((passage, scored[0][0], scored))
        return sorted(ranked, key=lambda r: -r[1])

    def claim_score(self, claim: str, question: str, best: list, signals: Signals) -> float:
        return signal_score(signals)


@dataclass
class Signals:
    """What the evidence says about one claim: closest-sentence cosine, its facts missing (a name or code among them)
    or contradicted, the share of its content words that the sentences closest to it do not contain, and whether
    those sentences say the same of another name."""

    similarity: float
    missing: int
    contradicted: bool
    unsupported_words: float
    missing_name: bool
    swapped_name: bool

    def features(self) -> dict[str, float]:
        """The signals as the score's model reads them, each 0..1."""
        weak = min(1.0, max(0.0, (SIM_HIGH - self.similarity) / (SIM_HIGH - SIM_LOW)))
        return {
            "weak": weak,
            "missing": float(self.missing > 0),
            "contradicted": float(self.contradicted),
            "unsupported_words": self.unsupported_words,
            "missing_name": float(self.missing_name),
            "swapped_name": float(self.swapped_name),
        }


def signal_score(signals: Signals) -> float:
    """The chance the claim is unsupported, from the logistic model over its signals (WEIGHTS, INTERCEPT)."""
    z = INTERCEPT + sum(WEIGHTS[name] * value for name, value in signals.features().items())
    return float(1.0 / (1.0 + np.exp(-z)))


def claim_signals(claim: str, question: str, best: list) -> Signals:
    """A claim's signals against its best evidence passages `[(passage, cosine, [(cosine, sentence)])]`.

    Facts and words the question itself states are given, not claimed, so an answer may repeat them. A different
    value counts against a claim only in the closest sentences, where the subject is the same.
    """
    text = "\n".join(f"{p.header}\n{p.text}" for p, _, _ in best)
    found = extract_facts(text)
    asked = extract_facts(question)
    claimed = [f for f in extract_facts(claim) if not any(facts_agree(f, a) for a in asked)]
    closest = [s for _, _, scored in best[:1] for _, s in scored[:CONTRADICTION_SENTENCES]]
    nearby = [f for s in closest for f in extract_facts(s)]
    missing, contradicted, missing_name, unfound = 0, False, False, []
    for fact in claimed:
        if fact.kind in ("name", "code"):
            supported = name_in(fact.text, text) or name_in(fact.text, question)
        elif fact.kind == "link":  # the address itself, however it is written (with or without scheme, www.)
            supported = fact.value in text.lower() or fact.value in question.lower()
        else:
            supported = any(facts_agree(fact, f) for f in found)
        if not supported:
            missing += 1
            missing_name = missing_name or fact.kind in ("name", "code")
            unfound += [fact.key] if fact.kind in ("name", "code") else []
            contradicted = contradicted or any(contradicts(fact, f) for f in nearby)
    words = content_words(claim) - content_words(question)
    supporting = {w for _, _, scored in best[:1] for _, s in scored[:SUPPORT_SENTENCES] for w in normalize(s)}
    unsupported = len(words - supporting) / len(words) if words else 0.0
    contradicted = contradicted or name_contradicted(claim, question, closest, unfound)
    swapped = swapped_name(claim, question, closest)
    return Signals(best[0][1] if best else 0.0, missing, contradicted, unsupported, missing_name, swapped)


def swapped_name(claim: str, question: str, closest: list[str]) -> bool:
    """Whether the evidence says what the claim says of another name: a clause of the closest sentences holds one
    of the claim's names and most of its other content words (SWAP_WORDS) but not another of its names, and in its
    place a rival that neither the claim nor the question names ("directed by Ana Costa" against "directed by Rui
    Nunes", "Skylark S2" against "Skylark S3 Pro"), while no clause holds all the claim's names. Every name being
    somewhere in the evidence does not make them belong together."""
    names = [f for f in extract_facts(claim) if f.kind in ("name", "code")]
    if not names:
        return False
    rest = content_words(claim) - {w for f in names for w in words_of(f.text).split()}
    given = f" {words_of(claim)} {words_of(question)} "
    swapped = False
    for clause in _clauses(closest):
        words = f" {words_of(clause)} "
        absent = [f for f in names if f" {words_of(f.text)} " not in words]
        unsaid = len(rest - set(normalize(clause)))
        if unsaid > (1 - SWAP_WORDS) * len(rest) or (len(absent) == len(names) and (unsaid or len(rest) < 3)):
            continue
        if not absent:
            return False
        theirs = [
            f for f in extract_facts(clause) if f.kind in ("name", "code") and f" {words_of(f.text)} " not in given
        ]
        swapped = swapped or any(rival(f, g) for f in absent for g in theirs)
    return swapped


def _clauses(sentences: list[str]) -> list[str]:
    return [c for s in sentences for c in CLAUSE_JOIN.split(s) if c]


def name_contradicted(claim: str, question: str, closest: list[str], unfound: list[str] = ()) -> bool:
    """Whether a clause of the closest sentences reads, word by word, as the claim with one of its names in another
    value: a rival (`rival`) that neither the claim nor the question names stands where the claim's name does, with
    the claim's words around it ("meets every Kellmark at 09:00" against "meets every Tuesday at 09:00", "Ana Costa
    is Brazilian" against "Ana Costa is Portuguese"). The name's counterpart of a number given another value; none
    when a clause states the claim with all its names (SWAP_WORDS of its other words). `unfound`: the keys of the
    claim's names that no evidence holds, which need less to count (`aligned_swap`)."""
    names = [f for f in extract_facts(claim) if f.kind in ("name", "code")]
    if not names:
        return False
    rest = content_words(claim) - {w for f in names for w in words_of(f.text).split()}
    clauses = _clauses(closest)
    for clause in clauses:
        words = f" {words_of(clause)} "
        if all(f" {words_of(f.text)} " in words for f in names) and (
            len(rest - set(normalize(clause))) <= (1 - SWAP_WORDS) * len(rest)
        ):
            return False
    given = f" {words_of(claim)} {words_of(question)} "
    return any(aligned_swap(claim, names, clause, given, unfound) for clause in clauses + closest)


def aligned_swap(claim: str, names: list, sentence: str, given: str, unfound: list[str] = ()) -> bool:
    """Whether, word by word, `sentence` reads as the claim with one of the claim's names (absent from it) replaced
    by a rival named in `sentence` but not in `given` (the claim and the question). The replaced words must sit next
    to at least ALIGN_WORDS matching words, so a paraphrase that happens to hold another name does not count. A name
    in `unfound` (no evidence holds it: already unsupported) may stand for any name or code, between ALIGN_WORDS
    matching words on its two sides together ("via the Kellpost menu" against "through the Help menu")."""
    ours, theirs = words_of(claim).split(), words_of(sentence).split()
    found = [f for f in extract_facts(sentence) if f.kind in ("name", "code") and f" {words_of(f.text)} " not in given]
    absent = [f for f in names if f" {words_of(f.text)} " not in f" {' '.join(theirs)} "]
    if not found or not absent:
        return False
    blocks = SequenceMatcher(None, ours, theirs, autojunk=False).get_opcodes()
    for at, (tag, i1, i2, j1, j2) in enumerate(blocks):
        if tag != "replace":
            continue
        before = blocks[at - 1] if at else None
        after = blocks[at + 1] if at + 1 < len(blocks) else None
        anchors = [b[2] - b[1] if b and b[0] == "equal" else 0 for b in (before, after)]
        replaced, instead = ours[i1:i2], theirs[j1:j2]
        if i2 == len(ours):  # the claim ends on the name: the sentence may go on past its rival
            instead = instead[: len(replaced) + 1]
        for f, g in ((f, g) for f in absent for g in found):
            invented = f.key in unfound
            if not (rival(f, g) or invented and g.kind in ("name", "code")):
                continue
            if max(anchors) < ALIGN_WORDS and not (invented and sum(anchors) >= ALIGN_WORDS):
                continue
            mine, other = words_of(f.text).split(), words_of(g.text).split()
            if _tight(mine, replaced) and _tight(other, instead):
                return True
    return False


def _tight(name: list[str], span: list[str]) -> bool:
    """Whether a replaced span is the name itself, give or take one word ("the Kellmark", "Tuesday")."""
    joined = f" {' '.join(span)} "
    return f" {' '.join(name)} " in joined and len(span) <= len(name) + 1


def rival(claimed, found) -> bool:
    """Whether a name in the evidence could stand where the claim has another: a name for a name; a code for a code
    of the same series (`S2` for `S3 Pro`, `E104` for `E217`, not `MG-SP-033` for `MH-1`)."""
    if claimed.kind != found.kind:
        return False
    return (
        claimed.kind == "name"
        or re.match(r"[A-Z]*", claimed.key[5:]).group() == re.match(r"[A-Z]*", found.key[5:]).group()
    )


class NLIDetector(EvidenceDetector):
    """Scores each claim by the entailment probability a local NLI cross-encoder gives its best evidence passages."""

    name = "nli"

    def __init__(self, config: Config, retriever=None):
        super().__init__(config, retriever)
        path = self.settings.nli_model
        if not path:
            raise ModelNotAvailable("the nli detector needs hallucination.nli_model: a local cross-encoder folder")
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(path, local_files_only=True, trust_remote_code=False)
        except OSError as exc:
            raise ModelNotAvailable(f"{path}: could not load the NLI cross-encoder ({exc})") from None
        labels = {v.lower(): int(k) for k, v in self.model.model.config.id2label.items()}
        entailment = [i for label, i in labels.items() if label.startswith("entail")]
        if not entailment:
            raise ModelNotAvailable(f"{path}: no 'entailment' label among {sorted(labels)}; is it an NLI model?")
        self.entailment = entailment[0]

    def claim_score(self, claim: str, question: str, best: list, signals: Signals) -> float:
        if not best:
            return 1.0
        logits = np.asarray(self.model.predict([(p.text, claim) for p, _, _ in best]), dtype=np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return float(1.0 - probs[:, self.entailment].max())


DETECTORS: dict[str, Callable] = {}
"""Detector name -> factory `(config, retriever) -> detector`; names are unique."""


def register_detector(name: str, factory: Callable) -> None:
    if name in DETECTORS:
        raise ValueError(f"detector {name!r} is already registered")
    DETECTORS[name] = factory


register_detector("evidence", EvidenceDetector)
register_detector("nli", NLIDetector)


def make_detector(config: Config, retriever=None):
    """The configured detector (`hallucination.detector`), checking against `retriever`'s index when given."""
    name = config.hallucination.detector
    if name not in DETECTORS:
        raise BadInputError(f"hallucination.detector: unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](config, retriever)


def context_passages(context) -> list[Passage] | None:
    """A row's `context` (a string, a list of strings, or absent) as passages named `context-1`, `context-2`, ..."""
    if context is None:
        return None
    texts = [context] if isinstance(context, str) else list(context)
    return [Passage(f"context-{i}", text) for i, text in enumerate(texts, 1)]


# Calibration: pure functions over (score, label) pairs, label 1 = hallucinated (AUROC and AUC-PR: scikit-learn).


def fit_threshold(scores: list[float], labels: list[int]) -> float:
    """The flagging threshold with the best F1 on a calibration set (the highest such, to flag less on a tie)."""
    best, best_f1 = 1.0, -1.0
    for threshold in sorted(set(scores), reverse=True):
        precision, recall = precision_recall(scores, labels, threshold)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best_f1 + 1e-12:
            best, best_f1 = threshold, f1
    return best


def precision_recall(scores: list[float], labels: list[int], threshold: float) -> tuple[float, float]:
    """Precision and recall of flagging `score >= threshold`."""
    flagged = [y for s, y in zip(scores, labels) if s >= threshold]
    positives = sum(labels)
    return (sum(flagged) / len(flagged) if flagged else 0.0), (sum(flagged) / positives if positives else 0.0)
