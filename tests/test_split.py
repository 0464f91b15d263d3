from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.data.split import assign_splits, group_similar, leakage

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
TOPICS = ["price", "warranty", "battery", "range", "reset", "firmware", "returns", "shipping", "alerts", "zones"]
PRODUCTS = ["Skylark S2", "Skylark S3 Pro", "Wren WP-40", "Wren WP-60", "Heron HV-8", "Hub MH-1"]


def test_paraphrases_and_near_duplicates_share_a_group():
    items = [
        ["What is the price of the Skylark S2?", "How much does a Skylark S2 cost?"],
        ["What's the price of the Skylark S2?"],  # near-duplicate of item 0
        ["How long is the warranty on Wren probes?"],
        ["How much does a Skylark S2 cost?"],  # same as item 0's paraphrase
    ]
    groups = group_similar(items, threshold=0.55)
    assert groups[0] == groups[1] == groups[3] != groups[2]


def test_split_is_deterministic_seeded_and_stratified():
    groups = list(range(400))
    strata = ["fact", "numeric", "procedure", "unanswerable"] * 100
    first = assign_splits(groups, strata, RATIOS, seed=7)
    assert first == assign_splits(groups, strata, RATIOS, seed=7)
    assert first != assign_splits(groups, strata, RATIOS, seed=8)
    for stratum in set(strata):
        counts = Counter(name for name, s in zip(first, strata) if s == stratum)
        assert counts == {"train": 80, "val": 10, "test": 10}


def test_groups_never_straddle_splits():
    groups = [n // 3 for n in range(300)]
    names = assign_splits(groups, [None] * 300, RATIOS, seed=1)
    for group in set(groups):
        assert len({name for name, g in zip(names, groups) if g == group}) == 1


question = st.builds(
    lambda words, topic, product: f"{' '.join(words)} {topic} of the {product}?",
    st.lists(st.sampled_from(["What", "is", "the", "how", "much", "does", "tell", "me"]), min_size=1, max_size=4),
    st.sampled_from(TOPICS),
    st.sampled_from(PRODUCTS),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(question, min_size=1, max_size=3), min_size=5, max_size=60), st.integers(0, 10_000))
def test_no_test_question_leaks_into_train(items, seed):
    threshold = 0.55
    groups = group_similar(items, threshold)
    names = assign_splits(groups, [None] * len(items), RATIOS, seed)
    test = [texts for texts, name in zip(items, names) if name == "test"]
    train = [texts for texts, name in zip(items, names) if name == "train"]
    assert leakage(test, train, threshold) == []


def test_leakage_reports_similar_pairs_across_sides_only():
    test = [["What is the price of the Skylark S2?"], ["Who founded the company?"]]
    train = [["What is the price of the Skylark S2 ?"], ["Where is the head office?"]]
    found = leakage(test, train, 0.55)
    assert [(t, r) for t, r, _ in found] == [(0, 0)] and found[0][2] == 1.0
