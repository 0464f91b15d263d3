"""The report's statistics: intervals, paired tests, Holm, sample sizes, agreement, and Bradley-Terry."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from workbench.report.agreement import cohen_kappa, spearman
from workbench.report.preference import (
    ELO_SCALE,
    Vote,
    bradley_terry,
    fit_logistic,
    length_controlled,
    win_rates,
)
from workbench.report.stats import holm, items_needed, mean_interval, paired_difference, rate_interval, sign_flip_p

# -- intervals and tests ----------------------------------------------------------------------------------------------


def test_mean_interval_covers_the_mean_and_handles_small_samples():
    rng = np.random.default_rng(0)
    row = mean_interval(rng.normal(0.5, 0.1, 200))
    assert row["low"] < row["mean"] < row["high"] and row["n"] == 200
    assert row["high"] - row["low"] == pytest.approx(2 * 1.96 * 0.1 / math.sqrt(200), rel=0.2)
    assert mean_interval([]) == {"mean": None, "low": None, "high": None, "n": 0}
    assert mean_interval([0.3]) == {"mean": 0.3, "low": None, "high": None, "n": 1}
    assert mean_interval([1.0, 1.0, 1.0]) == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 3}


def test_paired_difference_on_a_constructed_case():
    # b is a plus noise the pairing removes: unpaired, the spread of a would hide a 0.05 gain.
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 60)
    b = a + 0.05 + rng.normal(0, 0.02, 60)
    row = paired_difference(b, a)
    assert row["mean"] == pytest.approx(0.05, abs=0.01)
    assert 0.03 < row["low"] < 0.05 < row["high"] < 0.07
    assert row["p"] < 0.001 and row["n"] == 60
    assert stats.ttest_ind(b, a).pvalue > 0.3  # the same gain, tested unpaired, is invisible
    # no difference: a wide interval around 0 and a large p
    same = paired_difference(a, a[::-1])
    assert same["low"] < 0 < same["high"] and same["p"] > 0.05
    assert paired_difference([0.2, 0.4], [0.2, 0.4])["p"] == 1.0


def test_paired_p_value_matches_the_exact_sign_flip_test():
    # 8 differences: the permutation test enumerates all 2**8 sign flips.
    d = np.array([0.3, 0.1, 0.2, -0.05, 0.25, 0.15, 0.05, 0.1])
    flips = np.array(np.meshgrid(*[[1, -1]] * 8)).reshape(8, -1).T
    exact = np.mean(np.abs((flips * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)
    assert paired_difference(d, np.zeros(8))["p"] == pytest.approx(exact)


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None], nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_rate_interval_is_wilson():
    row = rate_interval(3, 10)
    assert (row["rate"], row["count"], row["n"]) == (0.3, 3, 10)
    assert (row["low"], row["high"]) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    assert rate_interval(0, 0)["rate"] is None


def test_items_needed_reaches_significance_when_simulated():
    # A mean difference of 0.05 with sd 0.2: about (2.80 * 4) ** 2 = 126 pairs for 80% power at 5%.
    needed = items_needed(0.05, 0.2)
    assert needed == pytest.approx(126, abs=2)
    rng = np.random.default_rng(2)
    hits = [stats.ttest_1samp(rng.normal(0.05, 0.2, needed), 0).pvalue < 0.05 for _ in range(300)]
    assert 0.72 < np.mean(hits) < 0.88
    assert items_needed(0.05, 0.2, tests=3) > needed  # a corrected threshold needs more
    assert items_needed(0.0, 0.2) is None and items_needed(0.1, None) is None


# -- agreement --------------------------------------------------------------------------------------------------------


def test_spearman_against_hand_computation():
    # No ties: d = (-1, 1, -1, 1, 0), rho = 1 - 6 * 4 / (5 * 24) = 0.8.
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).value == pytest.approx(0.8)
    # Ties share ranks: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3.5, 3.5); r = 3.75 / 4.5.
    result = spearman([0.2, 0.4, 0.4, 1.0, None, 0.5], [1, 2, 3, 3, 4, None])
    assert (result.value, result.n) == (pytest.approx(3.75 / 4.5), 4)


def test_spearman_undefined_cases_give_a_reason():
    few = spearman([0.1, 0.9], [1, 5])
    assert (few.value, few.n) == (None, 2) and "at least 3" in few.reason
    constant = spearman([0.5, 0.5, 0.5], [1, 3, 5])
    assert constant.value is None and "judge scores are equal" in constant.reason
    with pytest.raises(ValueError, match="length"):
        spearman([1, 2, 3], [1, 2])


def test_cohen_kappa_against_hand_computation():
    # 4 both-flagged, 1 auto only, 2 human only, 3 neither: po = 0.7, pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    automatic = [True] * 4 + [True] + [False] * 2 + [False] * 3
    human = [True] * 4 + [False] + [True] * 2 + [False] * 3
    result = cohen_kappa(automatic + [None], human + [True])
    assert (result.value, result.n) == (pytest.approx(0.4), 10)
    assert result.details["observed"] == pytest.approx(0.7) and result.details["counts"]["false_true"] == 2
    assert cohen_kappa([True, True], [True, False]).value == pytest.approx(0.0)
    assert cohen_kappa([True, False, True], [False, True, False]).value == pytest.approx(-0.8)


def test_cohen_kappa_degenerate_cases():
    same = cohen_kappa([False, False, False], [False, False, False])
    assert same.value is None and same.n == 3 and same.details["observed"] == 1.0 and "undefined" in same.reason
    empty = cohen_kappa([None, True], [False, None])
    assert (empty.value, empty.n) == (None, 0) and empty.reason
    assert not math.isnan(cohen_kappa([True], [False]).value)


# -- Bradley-Terry ----------------------------------------------------------------------------------------------------

VARIANTS = ["base", "ft", "rag", "ft_rag"]
STRENGTH = np.array([-1.0, 0.2, 0.9, -0.1])  # log-odds, centred
TRUE_RATING = dict(zip(VARIANTS, 1000 + ELO_SCALE * (STRENGTH - STRENGTH.mean())))


def simulate_votes(n: int, rng: np.random.Generator, tie_share: float = 0.0) -> list[Vote]:
    """Votes on turns of 2 to 4 random columns: the best column drawn by the choice model whose pairwise odds are
    Bradley-Terry's (exp(s) shares: given that i or j won, i won with the Bradley-Terry odds), or a tie."""
    votes = []
    for _ in range(n):
        k = rng.integers(2, 5)
        columns = sorted(rng.choice(len(VARIANTS), size=k, replace=False))
        names = tuple(VARIANTS[c] for c in columns)
        if rng.random() < tie_share:
            votes.append(Vote(names, None, "tie", (10,) * k))
            continue
        odds = np.exp(STRENGTH[columns])
        winner = names[rng.choice(k, p=odds / odds.sum())]
        votes.append(Vote(names, winner, "best", (10,) * k))
    return votes


def test_battles_from_votes_and_win_rates():
    votes = [
        Vote(("a", "b", "c"), "a", "best", (1, 1, 1)),
        Vote(("a", "b"), None, "tie", (1, 1)),
        Vote(("b", "c"), None, "all_bad", (1, 1)),
    ]
    rates = win_rates(votes, ["a", "b", "c"])
    assert rates["battles"]["a"]["b"] == 2 and rates["rate"]["a"]["b"] == pytest.approx(0.75)
    assert rates["battles"]["b"]["c"] == 1 and rates["rate"]["b"]["c"] == 0.5  # losers of a best vote: no battle
    assert rates["rate"]["a"]["a"] is None


def test_ties_pull_ratings_together():
    rng = np.random.default_rng(8)
    clear = bradley_terry(simulate_votes(2000, rng), VARIANTS)["variants"]
    tied = bradley_terry(simulate_votes(2000, rng, tie_share=0.5), VARIANTS)["variants"]
    spread = {name: r["rag"]["rating"] - r["base"]["rating"] for name, r in (("clear", clear), ("tied", tied))}
    assert 0 < spread["tied"] < 0.8 * spread["clear"]


def test_fit_logistic_matches_scikit_learn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4))
    y = (rng.random(300) < 1 / (1 + np.exp(-x @ [1.0, -0.5, 0.2, 0.0]))).astype(float)
    w = rng.uniform(0.5, 2, 300)
    ours = fit_logistic(x, y, w[None, :], np.full(4, 0.5))[0]
    # scikit-learn minimises C * sum(w * loss) + |b|^2 / 2; ours sum(w * loss) + prior * |b|^2 / 2
    theirs = LogisticRegression(fit_intercept=False, C=2.0, tol=1e-10).fit(x, y, sample_weight=w).coef_[0]
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_bradley_terry_recovers_known_strengths():
    result = bradley_terry(simulate_votes(20000, np.random.default_rng(4)), VARIANTS)
    ratings = result["variants"]
    assert list(ratings) == ["rag", "ft", "ft_rag", "base"]  # best first
    for variant, row in ratings.items():
        assert row["rating"] == pytest.approx(TRUE_RATING[variant], abs=12)
        assert row["low"] < row["rating"] < row["high"]
    assert [row["rank"] for row in ratings.values()] == [1, 2, 3, 4]  # well separated by 20,000 votes


def test_bradley_terry_intervals_cover_the_truth():
    rng = np.random.default_rng(5)
    covered = total = 0
    for _ in range(200):
        ratings = bradley_terry(simulate_votes(150, rng), VARIANTS)["variants"]
        for variant, row in ratings.items():
            covered += row["low"] <= TRUE_RATING[variant] <= row["high"]
            total += 1
    assert 0.90 <= covered / total <= 0.99


def test_ranks_only_separate_variants_whose_intervals_do():
    # Few votes: ft and ft_rag (0.3 apart in log-odds) overlap and share a rank; rag sits alone on top.
    ratings = bradley_terry(simulate_votes(300, np.random.default_rng(6)), VARIANTS)["variants"]
    assert ratings["rag"]["rank"] == 1
    assert ratings["ft"]["rank"] == ratings["ft_rag"]["rank"] == 2
    for a, b in [("ft", "ft_rag")]:
        assert ratings[a]["low"] < ratings[b]["high"] and ratings[b]["low"] < ratings[a]["high"]


def test_a_variant_that_always_wins_gets_a_finite_rating():
    votes = [Vote(("a", "b"), "a", "best", (5, 5))] * 20 + [Vote(("a", "c"), "a", "best", (5, 5))] * 10
    votes += [Vote(("b", "c"), "b", "best", (5, 5))] * 5 + [Vote(("b", "c"), "c", "best", (5, 5))] * 5
    ratings = bradley_terry(votes, ["a", "b", "c"])["variants"]
    assert math.isfinite(ratings["a"]["high"]) and ratings["a"]["low"] > ratings["b"]["high"]


def test_too_few_or_too_alike_votes_get_no_ratings():
    few = bradley_terry([Vote(("a", "b"), "a", "best", (5, 5))] * 4, ["a", "b"])
    assert few["variants"] == {} and "4 of the 5 votes" in few["too_few"]
    alike = bradley_terry([Vote(("a", "b"), "a", "best", (5, 5))] * 30, ["a", "b"])
    assert alike["variants"] == {} and "too alike" in alike["too_few"]  # resampling 30 identical votes shows nothing
    assert length_controlled([Vote(("a", "b"), "a", "best", (5, 9))] * 4, ["a", "b"])["length_effect"] is None


def test_length_control_removes_a_preference_for_longer_answers():
    # Equal strengths; raters pick the longer answer 80% of the time, and rag answers longer in 80% of turns.
    rng = np.random.default_rng(7)
    votes = []
    for _ in range(1500):
        short, long = int(rng.integers(15, 40)), int(rng.integers(50, 90))
        rag_longer = rng.random() < 0.8
        lengths = {"rag": long if rag_longer else short, "ft": short if rag_longer else long}
        longer = "rag" if rag_longer else "ft"
        winner = longer if rng.random() < 0.8 else ({"rag", "ft"} - {longer}).pop()
        votes.append(Vote(("ft", "rag"), winner, "best", (lengths["ft"], lengths["rag"])))
    plain = bradley_terry(votes, ["ft", "rag"])["variants"]
    assert plain["rag"]["low"] > plain["ft"]["high"]  # uncontrolled, rag looks clearly better
    controlled = length_controlled(votes, ["ft", "rag"])
    assert controlled["length_effect"]["low"] > 2  # longer answers win
    rag, ft = controlled["variants"]["rag"], controlled["variants"]["ft"]
    assert rag["low"] < ft["high"] and ft["low"] < rag["high"]  # at equal length, no difference
    assert rag["rank"] == ft["rank"] == 1


def test_sign_flip_p_agrees_with_scipy_beyond_the_exact_range():
    rng = np.random.default_rng(9)
    for shift in (0.0, 0.05, 0.15):
        d = rng.normal(shift, 0.3, 60)
        theirs = stats.permutation_test(
            (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", n_resamples=9999, rng=1
        ).pvalue
        assert sign_flip_p(d) == pytest.approx(theirs, abs=0.015)
