import hashlib
import itertools
import re
from bisect import bisect_right

import pytest
from conftest import DEMO
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.records import Document
from workbench.retrieval.chunking import chunk_document, embedding_text, token_counter

HEADING_LINE = re.compile(r"^#{1,6}[ \t]+(.*\S)", re.MULTILINE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")


def words(text: str) -> int:
    return len(text.split())


def doc(text: str, doc_id: str = "d", title: str = "Doc") -> Document:
    return Document(id=doc_id, title=title, text=text, source=f"{doc_id}.md", format="md")


def check_chunks(document: Document, chunks, count, size: int) -> None:
    """Invariants every chunking must keep, whatever the text and counter."""
    text = document.text
    covered = [False] * len(text)
    for n, chunk in enumerate(chunks):
        assert chunk.text and chunk.text == text[chunk.start : chunk.end] == chunk.text.strip()
        assert count(chunk.text) <= size
        assert (chunk.doc_id, chunk.title) == (document.id, document.title)
        assert chunk.id == f"{document.id}:{n}:{hashlib.sha1(chunk.text.encode()).hexdigest()[:8]}"
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    assert all(seen or char.isspace() for seen, char in zip(covered, text))
    assert all(a.start < b.start and a.end < b.end for a, b in itertools.pairwise(chunks))


# --- property tests with a whitespace word counter -------------------------------------------------------------

VOCAB = ["a", "to", "the", "valve", "probe", "wren", "hub", "firmware", "reset", "24", "V", "2,900", "€48.6"]
word = st.sampled_from(VOCAB)
sentence = st.builds(
    lambda ws, end: " ".join(ws) + end, st.lists(word, min_size=1, max_size=12), st.sampled_from(".!?.")
)
run_on = st.builds(  # no sentence end: must be split at whitespace; built in one draw to keep generation cheap
    lambda n, step: " ".join(VOCAB[i * step % len(VOCAB)] for i in range(n)), st.integers(40, 100), st.integers(1, 50)
)
prose = st.lists(
    st.tuples(st.one_of(sentence, sentence, sentence, run_on), st.sampled_from([" ", "  ", "\n", " \n"])),
    min_size=1,
    max_size=4,
).map(lambda parts: "".join(p + sep for p, sep in parts).rstrip())
bullets = st.lists(sentence, min_size=1, max_size=8).map(lambda items: "\n".join(f"- {i}" for i in items))
table = st.lists(st.lists(word, min_size=1, max_size=4), min_size=1, max_size=8).map(
    lambda rows: "\n".join("| " + " | ".join(r) + " |" for r in rows)
)
paragraph = st.one_of(prose, prose, bullets, table)
paragraphs = st.lists(paragraph, max_size=3)
heading = st.builds(
    lambda level, title, trailing: "#" * level + " " + " ".join(title) + trailing,
    st.integers(1, 6),
    st.lists(word, min_size=1, max_size=4),
    st.sampled_from(["", " "]),
)
blank = st.sampled_from(["\n\n", "\n\n\n", "\n \n"])


@st.composite
def documents(draw) -> Document:
    blocks = draw(st.lists(paragraph, max_size=2))
    for title, body in draw(st.lists(st.tuples(heading, paragraphs), max_size=5)):
        blocks += [title, *body]
    if not blocks:
        return doc("")
    text = blocks[0]
    for block in blocks[1:]:
        text += draw(blank) + block
    return doc(draw(st.sampled_from(["", "\n", "  "])) + text + draw(st.sampled_from(["", "\n"])))


sizes = st.integers(8, 60).flatmap(lambda size: st.tuples(st.just(size), st.integers(0, size - 1)))


@settings(max_examples=150, deadline=None)
@given(documents(), sizes)
def test_chunks_keep_offsets_limits_coverage_sections_and_overlap(document, size_overlap):
    size, overlap = size_overlap
    text = document.text
    chunks = chunk_document(document, words, size, overlap)
    check_chunks(document, chunks, words, size)

    headings = [m.start() for m in HEADING_LINE.finditer(text)]
    titles = [m.group(1) for m in HEADING_LINE.finditer(text)]
    sections = []
    for chunk in chunks:
        # never cut inside a word (no word is longer than `size` here)
        assert chunk.start == 0 or text[chunk.start - 1].isspace()
        assert chunk.end == len(text) or text[chunk.end].isspace()
        # never spans two sections; a heading line can only open the chunk; headings end with the section's title
        assert not any(chunk.start < h < chunk.end for h in headings)
        section = bisect_right(headings, chunk.start)
        assert chunk.headings[-1:] == titles[section - 1 : section]
        sections.append(section)

    for (a, sa), (b, sb) in zip(zip(chunks, sections), zip(chunks[1:], sections[1:])):
        shared = text[b.start : a.end] if b.start < a.end else ""
        if sa != sb:
            assert not shared
            continue
        assert words(shared) <= overlap
        # The overlap is whole trailing units of `a`, as many as fit in `overlap`; it can only be empty if `a`'s last
        # unit (within its last sentence `last`) is over `overlap`, or does not fit beside `b`'s first new unit
        # (within `b`'s first new sentence `first`).
        last = SENTENCE_END.split(a.text)[-1]
        first = SENTENCE_END.split(text[max(a.end, b.start) : b.end].lstrip())[0]
        if words(last) <= overlap and words(last) + words(first) <= size:
            assert shared


# --- examples ---------------------------------------------------------------------------------------------------


def test_heading_path_follows_levels_and_heading_line_opens_its_section():
    text = (
        "Preamble words.\n\n# Skylark S2\n\nIntro.\n\n## Installation\n\nSteps.\n\n### Wiring\n\nWires.\n\n"
        "## Care\n\nClean it.\n\n#### Deep\n\nDeep text.\n\n# Other\n\n## Empty\n## Next\nLast."
    )
    chunks = chunk_document(doc(text), words, 50, 10)
    assert [(c.headings, c.text) for c in chunks] == [
        ([], "Preamble words."),
        (["Skylark S2"], "# Skylark S2\n\nIntro."),
        (["Skylark S2", "Installation"], "## Installation\n\nSteps."),
        (["Skylark S2", "Installation", "Wiring"], "### Wiring\n\nWires."),
        (["Skylark S2", "Care"], "## Care\n\nClean it."),
        (["Skylark S2", "Care", "Deep"], "#### Deep\n\nDeep text."),
        (["Other"], "# Other"),
        (["Other", "Empty"], "## Empty"),
        (["Other", "Next"], "## Next\nLast."),
    ]


def test_paragraphs_stay_whole_and_border_sentences_are_repeated():
    text = "# T\n\nOne two three. Four five.\n\nSix seven eight nine. Ten eleven. Twelve thirteen fourteen."
    chunks = chunk_document(doc(text), words, 8, 3)
    # the heading joins the first paragraph; the second paragraph (9 words) cannot fit whole, so it is packed by
    # sentences, and each new chunk starts with the previous chunk's last sentence when it is <= 3 words
    assert [c.text for c in chunks] == [
        "# T\n\nOne two three. Four five.",
        "Four five.\n\nSix seven eight nine. Ten eleven.",
        "Ten eleven. Twelve thirteen fourteen.",
    ]
    assert [c.headings for c in chunks] == [["T"]] * 3


def test_a_word_over_the_limit_is_the_only_thing_cut_between_characters():
    document = doc("short words " + "x" * 35 + " end. More text here.")
    chunks = chunk_document(document, len, 10, 4)
    check_chunks(document, chunks, len, 10)
    text = document.text
    cuts = {c.start for c in chunks if c.start > 0 and not text[c.start - 1].isspace()}
    cuts |= {c.end for c in chunks if c.end < len(text) and not text[c.end].isspace()}
    assert cuts and all(text[cut - 1 : cut + 1] == "xx" for cut in cuts)


def test_ids_change_only_where_the_text_changed():
    sections = [
        f"## Part {p}\n\n" + "\n\n".join(f"Para {p}{q} " + "word " * 12 + "end." for q in range(3)) for p in "abc"
    ]
    original = doc("# Title\n\n" + "\n\n".join(sections))
    before = chunk_document(original, words, 40, 8)
    edited_span = original.text.index("Para b1")
    edit_end = original.text.index("end.", edited_span) + 4

    # Same word count: the same spans come out, and exactly the chunks containing the edited paragraph get new ids.
    same_size = doc(original.text.replace("Para b1", "Para B1"))
    after = chunk_document(same_size, words, 40, 8)
    assert [(c.start, c.end) for c in after] == [(c.start, c.end) for c in before]
    for old, new in zip(before, after):
        touches = old.start < edit_end and edited_span < old.end
        assert (old.id != new.id) == touches
    assert any(old.id != new.id for old, new in zip(before, after))

    # Longer paragraph: its section gains chunks. Chunks of earlier sections keep their ids; chunks of later sections
    # keep their text and hash, and only their position number moves by the number of added chunks. (Chunks of the
    # edited section after the paragraph may change: they can open with an overlap taken from it.)
    grown = doc(original.text.replace("Para b1", "Para b1 " + "more " * 30))
    after = chunk_document(grown, words, 40, 8)
    added = len(after) - len(before)
    section_b, section_c = original.text.index("## Part b"), original.text.index("## Part c")
    earlier = [c for c in before if c.end <= section_b]
    later = [c for c in before if c.start >= section_c]
    assert added > 0 and earlier and later
    assert [c.id for c in after[: len(earlier)]] == [c.id for c in earlier]
    for old, new in zip(later, after[len(after) - len(later) :], strict=True):
        assert new.text == old.text and new.headings == old.headings
        doc_id, n, digest = old.id.split(":")
        assert new.id == f"{doc_id}:{int(n) + added}:{digest}"


def test_embedding_text_adds_title_and_path_without_repeating_the_title():
    chunks = chunk_document(doc("# Skylark S2\n\n## Wiring\n\nUse 24 V.", title="Skylark S2"), words, 50, 5)
    assert embedding_text(chunks[-1]) == "Skylark S2 > Wiring\n## Wiring\n\nUse 24 V."
    assert embedding_text(chunk_document(doc("Plain.", title=""), words, 50, 5)[0]) == "Plain."


def test_empty_and_blank_documents_have_no_chunks():
    assert chunk_document(doc(""), words, 20, 5) == []
    assert chunk_document(doc(" \n\n \t"), words, 20, 5) == []


@pytest.fixture(scope="module")
def minilm_tokens():
    from workbench.models import load_embedder

    return token_counter(load_embedder("all-minilm-l6-v2", device="cpu").tokenizer)


def test_real_tokenizer_keeps_demo_documents_within_limits(minilm_tokens):
    from workbench.data.loaders import load_corpus

    assert minilm_tokens("hello") == 1  # no [CLS]/[SEP]
    docs, _ = load_corpus([DEMO / "corpus"], progress=False)
    markdown = [d for d in docs if d.format == "md"]
    assert markdown
    for document in markdown:
        check_chunks(document, chunk_document(document, minilm_tokens, 200, 40), minilm_tokens, 200)
    longest = max(markdown, key=lambda d: len(d.text))
    small = chunk_document(longest, minilm_tokens, 24, 8)  # forces sentence and whitespace splits
    check_chunks(longest, small, minilm_tokens, 24)
    assert len(small) > len(chunk_document(longest, minilm_tokens, 200, 40)) > 1
