"""The ranking statistics checked against values computed by hand."""

from __future__ import annotations

import doctest
import math
from itertools import permutations

import pytest

from preftune.errors import ConfigError, DataError
from preftune.evaluate import rank as rank_module
from preftune.evaluate import rank_report
from preftune.evaluate.rank import (
    bootstrap_p_value,
    check_labels,
    match_units,
    outcomes_from_scores,
    rank,
    sign_test,
)


def units(outcomes: list[float], seed=None) -> dict:
    return {(seed, f"p{i:03d}"): value for i, value in enumerate(outcomes)}


def binomial_two_sided(wins: int, losses: int) -> float:
    """The sign test from the binomial formula: 2 * P(X >= max(w, l)), X ~ Bin(w + l, 1/2)."""
    n, k = wins + losses, max(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n)


def test_the_docstring_examples_run():
    assert doctest.testmod(rank_module).failed == 0
    assert doctest.testmod(rank_report).failed == 0


@pytest.mark.parametrize("wins,losses", [(8, 2), (10, 0), (5, 5), (3, 9), (0, 0)])
def test_sign_test_matches_the_binomial_formula(wins, losses):
    expected = 1.0 if wins + losses == 0 else binomial_two_sided(wins, losses)
    assert sign_test(wins, losses) == pytest.approx(expected, abs=1e-12)
    assert sign_test(8, 2) == pytest.approx(112 / 1024)  # 2 * (45 + 10 + 1) / 2^10


def test_win_rate_counts_ties_half_and_the_pair_is_symmetric():
    outcomes = [1.0] * 6 + [0.5] * 2 + [0.0] * 2  # (6 + 2/2) / 10 = 0.7
    result = rank({("a", "b"): units(outcomes)}, ["a", "b"], bootstrap=500)
    ab, ba = result["head_to_head"]["a"]["b"], result["head_to_head"]["b"]["a"]
    assert ab["win_rate"] == pytest.approx(0.7)
    assert (ab["wins"], ab["losses"], ab["ties"]) == (6, 2, 2)
    assert (ba["wins"], ba["losses"], ba["ties"]) == (2, 6, 2)
    assert ab["win_rate"] + ba["win_rate"] == pytest.approx(1.0)
    assert ab["ci_low"] + ba["ci_high"] == pytest.approx(1.0)
    assert ab["ci_low"] <= ab["win_rate"] <= ab["ci_high"]
    assert ab["p_value"] == pytest.approx(binomial_two_sided(6, 2)) == ba["p_value"]
    assert result["warnings"] and "10 prompts" in result["warnings"][0]


def test_holm_adjusts_the_sorted_p_values_by_hand():
    """p = 2/1024 (10-0), 112/1024 (8-2), 1 (5-5): Holm multiplies by 3, 2, 1 in rising
    order and keeps the adjusted values monotone."""
    outcomes = {
        ("a", "b"): units([1.0] * 10),
        ("a", "c"): units([1.0] * 8 + [0.0] * 2),
        ("b", "c"): units([1.0] * 5 + [0.0] * 5),
    }
    h2h = rank(outcomes, ["a", "b", "c"], bootstrap=200)["head_to_head"]
    assert h2h["a"]["b"]["p_value"] == pytest.approx(2 / 1024)
    assert h2h["a"]["b"]["p_holm"] == pytest.approx(3 * 2 / 1024)
    assert h2h["a"]["c"]["p_holm"] == pytest.approx(2 * 112 / 1024)
    assert h2h["b"]["c"]["p_holm"] == pytest.approx(1.0)
    assert [h2h["a"]["b"]["significant"], h2h["a"]["c"]["significant"]] == [True, False]
    assert h2h["c"]["a"]["significant"] is False and h2h["b"]["a"]["significant"] is True


def test_a_clear_winner_is_alone_in_tier_one():
    n = 30
    outcomes = {
        ("best", "mid"): units([1.0] * n),
        ("best", "low"): units([1.0] * n),
        ("mid", "low"): units([1.0] * 15 + [0.5] * 15),
    }
    result = rank(outcomes, ["low", "mid", "best"], bootstrap=500)
    ranking = result["ranking"]
    assert [e["label"] for e in ranking] == ["best", "mid", "low"]
    assert [e["tier"] for e in ranking] == [1, 2, 3]
    assert ranking[0]["score"] == pytest.approx(1.0)
    assert ranking[1]["score"] == pytest.approx((0.0 + 0.75) / 2)
    assert ranking[2]["score"] == pytest.approx((0.0 + 0.25) / 2)
    for entry in ranking:
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]
        assert entry["n"] == n
    assert result["warnings"] == [] and result["n_prompts"] == n and result["seeds"] == 1


def test_identical_answers_tie_and_are_not_significant():
    scores = {label: {(None, f"p{i}"): 0.3 for i in range(25)} for label in ("x", "y")}
    cell = rank(outcomes_from_scores(scores), ["x", "y"], bootstrap=300)["head_to_head"]["x"]["y"]
    assert cell["win_rate"] == 0.5 and cell["ties"] == 25
    assert (cell["ci_low"], cell["ci_high"]) == (0.5, 0.5)
    assert cell["p_value"] == 1.0 and cell["significant"] is False


def test_an_intransitive_trio_has_equal_scores_and_one_tier():
    n = 30
    outcomes = {
        ("a", "b"): units([1.0] * n),
        ("b", "c"): units([1.0] * n),
        ("c", "a"): units([1.0] * n),
    }
    result = rank(outcomes, ["a", "b", "c"], bootstrap=300)
    assert all(e["score"] == pytest.approx(0.5) for e in result["ranking"])
    assert all(e["tier"] == 1 for e in result["ranking"])
    h2h = result["head_to_head"]
    assert h2h["c"]["a"]["win_rate"] == 1.0 and h2h["a"]["c"]["win_rate"] == 0.0
    assert all(h2h[x][y]["significant"] for x, y in permutations("abc", 2))


def test_every_ordered_pair_sums_to_one():
    outcomes = {
        ("a", "b"): units([1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.5]),
        ("a", "c"): units([0.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.5]),
        ("c", "b"): units([1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.5]),
    }
    h2h = rank(outcomes, ["a", "b", "c"], bootstrap=300)["head_to_head"]
    for x, y in permutations("abc", 2):
        assert h2h[x][y]["win_rate"] + h2h[y][x]["win_rate"] == pytest.approx(1.0)
        assert h2h[x][y]["ci_low"] <= h2h[x][y]["win_rate"] <= h2h[x][y]["ci_high"]
    assert h2h["b"]["c"]["win_rate"] == pytest.approx(1 - 5 / 7)  # c: 1+1+1+0+.5+1+.5 = 5 of 7


def test_outcomes_from_scores_compares_per_prompt():
    scores = {
        "a": {(None, "p"): 1.0, (None, "q"): 0.0, (None, "r"): 2.0},
        "b": {(None, "p"): 0.5, (None, "q"): 0.0},
    }
    outcomes = outcomes_from_scores(scores)
    assert outcomes[("a", "b")] == {(None, "p"): 1.0, (None, "q"): 0.5}
    assert outcomes[("b", "a")] == {(None, "p"): 0.0, (None, "q"): 0.5}


def test_an_entry_without_seeds_meets_every_seed():
    scores = {
        "start": {(None, "p"): 0.5},
        "tuned": {(0, "p"): 1.0, (1, "p"): 0.0},
    }
    assert outcomes_from_scores(scores)[("start", "tuned")] == {(0, "p"): 0.0, (1, "p"): 1.0}
    assert match_units([(0, "p"), (1, "p")], [(1, "p"), (2, "p")]) == [
        ((1, "p"), (1, "p"), (1, "p"))
    ]


def test_one_seed_reduces_to_the_plain_per_prompt_statistics():
    outcomes = [1.0] * 14 + [0.5] * 3 + [0.0] * 8
    plain = rank({("a", "b"): units(outcomes)}, ["a", "b"], bootstrap=400, seed=5)
    seeded = rank({("a", "b"): units(outcomes, seed=7)}, ["a", "b"], bootstrap=400, seed=5)
    assert seeded == plain
    assert plain["head_to_head"]["a"]["b"]["test"] == "sign"


def test_several_seeds_resample_seeds_too():
    """Seed 0: a always wins; seed 1: a always loses. Drawing the same seed twice (chance
    1/4 each) gives 1 or 0, so the 95% interval is [0, 1] and the test cannot reject,
    while pooling the prompts alone would give a tight interval around 1/2."""
    outcomes = {**units([1.0] * 30, seed=0), **units([0.0] * 30, seed=1)}
    result = rank({("a", "b"): outcomes}, ["a", "b"], bootstrap=2000)
    cell = result["head_to_head"]["a"]["b"]
    assert cell["win_rate"] == 0.5 and cell["test"] == "bootstrap"
    assert (cell["ci_low"], cell["ci_high"]) == (0.0, 1.0)
    assert cell["p_value"] == 1.0 and result["seeds"] == 2 and result["n_prompts"] == 30


def test_entries_without_seeds_keep_the_plain_interval_among_seeded_entries():
    """Seeds only scale the weights of a pair that does not vary by seed, so its interval
    is the per-prompt one; resampling prompts anew within each seed would narrow it."""
    ab = units([1.0] * 12 + [0.0] * 8 + [0.5] * 5)
    plain = rank({("a", "b"): ab}, ["a", "b"], bootstrap=500)["head_to_head"]["a"]["b"]
    seeded = {**units([1.0] * 25, seed=0), **units([0.0] * 25, seed=1), **units([1.0] * 25, seed=2)}
    study = rank(
        {("a", "b"): ab, ("a", "c"): seeded, ("b", "c"): seeded}, ["a", "b", "c"], bootstrap=500
    )
    mixed = study["head_to_head"]["a"]["b"]
    assert study["seeds"] == 3 and mixed["test"] == "sign"
    assert (mixed["ci_low"], mixed["ci_high"]) == pytest.approx((plain["ci_low"], plain["ci_high"]))


def test_bootstrap_p_value_by_hand():
    import numpy as np

    draws = np.array([0.6, 0.7, 0.8, 0.7])  # sd (n - 1) = sqrt(0.02 / 3)
    z = (0.7 - 0.5) / math.sqrt(0.02 / 3)
    assert bootstrap_p_value(0.7, draws) == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert math.isnan(bootstrap_p_value(1.0, np.array([1.0, 1.0])))


def test_several_seeds_with_a_consistent_winner_are_significant():
    """Every unit a win: the draws do not vary, so the test is the sign test on 50 units."""
    outcomes = {**units([1.0] * 25, seed=0), **units([1.0] * 25, seed=1)}
    cell = rank({("a", "b"): outcomes}, ["a", "b"], bootstrap=999)["head_to_head"]["a"]["b"]
    assert cell["p_value"] == pytest.approx(2 / 2**50) and cell["significant"] is True


def crossed_bootstrap_variance(grid):
    """Exact variance of the resampled mean of a full k x n grid when seeds (a) and prompts
    (b) are drawn as independent multinomials: E[a a^T] = I + (1 - 1/k) J (likewise for b),
    so Var = (tr(E[aa^T] V E[bb^T] V^T) - (1^T V 1)^2) / (k n)^2."""
    import numpy as np

    grid = np.asarray(grid, dtype=float)
    k, n = grid.shape
    seeds = np.eye(k) + (1 - 1 / k) * np.ones((k, k))
    prompts = np.eye(n) + (1 - 1 / n) * np.ones((n, n))
    second_moment = np.trace(seeds @ grid @ prompts @ grid.T)
    return (second_moment - grid.sum() ** 2) / (k * n) ** 2


def test_several_seeds_test_with_the_bootstrap_standard_error():
    """Seed 0: 20 wins 10 losses; seed 1: 18 wins 12 losses (aligned prompts).
    p = 2·Φ(-|w - 1/2| / se), se from the exact crossed-bootstrap variance."""
    seed0, seed1 = [1.0] * 20 + [0.0] * 10, [1.0] * 18 + [0.0] * 12
    seeded = {**units(seed0, seed=0), **units(seed1, seed=1)}
    cell = rank({("a", "b"): seeded}, ["a", "b"], bootstrap=4000)["head_to_head"]["a"]["b"]
    assert cell["win_rate"] == pytest.approx(38 / 60) and cell["test"] == "bootstrap"
    se = math.sqrt(crossed_bootstrap_variance([seed0, seed1]))
    expected = math.erfc(abs(38 / 60 - 0.5) / se / math.sqrt(2))
    assert cell["p_value"] == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize(
    "labels,message",
    [
        (["only"], "at least two"),
        (["a", "a"], "'a' is given twice"),
        (["a", "b/c"], "'b/c' is not a safe file name"),
        (["a", ".."], "'..' is not a safe file name"),
    ],
)
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(ConfigError, match=message):
        check_labels(labels)


def test_missing_pairs_and_bad_outcomes_are_refused():
    with pytest.raises(ConfigError, match="no outcomes for 'a' vs 'c'"):
        rank({("a", "b"): units([1.0])}, ["a", "b", "c"])
    with pytest.raises(DataError, match="'a' and 'b' have no prompt"):
        rank({("a", "b"): {}}, ["a", "b"])
    with pytest.raises(DataError, match="outcome 0.7"):
        rank({("a", "b"): units([0.7])}, ["a", "b"])
