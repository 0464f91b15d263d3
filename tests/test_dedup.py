from workbench.data.dedup import char_ngrams, exact_duplicates, jaccard, near_duplicates, word_shingles

WORDS = [f"w{i}" for i in range(200)]


def _with_replacements(count: int) -> str:
    """The base text with `count` widely spaced words replaced (each replacement breaks 5 shingles)."""
    words = list(WORDS)
    for n in range(count):
        words[10 + n * 12] = f"changed{n}"
    return " ".join(words)


def test_exact_duplicates_ignore_case_punctuation_and_spacing():
    texts = ["Hello, World!", "hello world", "Something else", "HELLO   world."]
    assert exact_duplicates(texts) == {1: 0, 3: 0}


def test_near_duplicate_decision_sits_exactly_at_the_threshold():
    base = " ".join(WORDS)
    for count in (2, 6, 12):
        variant = _with_replacements(count)
        similarity = jaccard(word_shingles(base, 5), word_shingles(variant, 5))
        assert near_duplicates([base, variant], threshold=similarity, shingle_size=5) == {1: (0, similarity)}
        assert near_duplicates([base, variant], threshold=similarity + 1e-6, shingle_size=5) == {}


def test_near_duplicates_map_to_the_first_copy_and_leave_distinct_texts():
    base = " ".join(WORDS)
    other = " ".join(f"x{i}" for i in range(200))
    result = near_duplicates([base, other, _with_replacements(1), _with_replacements(2)], 0.8, 5)
    assert set(result) == {2, 3} and result[2][0] == 0 and result[3][0] == 0


def test_shingles_of_short_texts():
    assert word_shingles("a b", 5) == {"a b"}
    assert word_shingles("", 5) == set()
    assert jaccard(char_ngrams("What is the price?"), char_ngrams("what is the PRICE")) == 1.0
