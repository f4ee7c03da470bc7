import math

import numpy as np
import pytest

from preftune.evaluate.stats import bootstrap_ci, fit_logistic, length_controlled_win_rate
from preftune.evaluate.text_stats import distinct_n, has_repeated_ngram, text_stats


def test_bootstrap_ci_matches_the_binomial_interval():
    """60 wins in 100 independent prompts: the 95% interval is p ± 1.96·sqrt(p(1-p)/n)."""
    outcomes = [1.0] * 60 + [0.0] * 40
    low, high = bootstrap_ci(outcomes, [str(i) for i in range(100)], samples=20000, seed=1)
    half_width = 1.96 * math.sqrt(0.6 * 0.4 / 100)
    assert low == pytest.approx(0.6 - half_width, abs=0.01)
    assert high == pytest.approx(0.6 + half_width, abs=0.01)


def test_bootstrap_resamples_prompts_not_samples():
    """Two samples per prompt that always agree: the effective n is the number of prompts."""
    outcomes = [1.0] * 60 + [0.0] * 40
    per_prompt = bootstrap_ci(outcomes, [str(i) for i in range(100)], samples=5000)
    clustered = bootstrap_ci(outcomes * 2, [str(i) for i in range(100)] * 2, samples=5000)
    assert clustered == pytest.approx(per_prompt, abs=0.01)


def test_bootstrap_is_seeded():
    outcomes = [1.0, 0.0, 0.5, 1.0, 1.0]
    ids = list("abcde")
    assert bootstrap_ci(outcomes, ids, seed=3) == bootstrap_ci(outcomes, ids, seed=3)


def test_logistic_fit_recovers_known_coefficients():
    x = np.array([-1.0, 1.0])
    targets = 1 / (1 + np.exp(-(0.5 + 2.0 * x)))  # soft labels at exactly the model's values
    weights = fit_logistic(x[:, None], targets, l2=0.0)
    assert weights == pytest.approx([0.5, 2.0], abs=1e-6)


def test_length_controlled_win_rate_removes_a_length_advantage():
    """Longer answers win 75%, shorter ones 25%; the sample is longer 80 times in 100.
    The raw win rate is 0.65; at equal length the model is no better than the baseline."""
    outcomes = [1.0] * 60 + [0.0] * 20 + [1.0] * 5 + [0.0] * 15
    differences = [10.0] * 80 + [-10.0] * 20
    assert np.mean(outcomes) == pytest.approx(0.65)
    assert length_controlled_win_rate(outcomes, differences) == pytest.approx(0.5, abs=1e-3)


def test_length_controlled_equals_raw_when_lengths_are_equal():
    outcomes = [1.0, 1.0, 0.5, 0.0, 1.0]
    assert length_controlled_win_rate(outcomes, [0.0] * 5) == pytest.approx(0.7, abs=1e-6)


def test_text_stats():
    rows = [
        {"response": "good good good good", "finish_reason": "eos", "num_tokens": 4},
        {"response": "a fine film", "finish_reason": "length", "num_tokens": 8},
    ]
    stats = text_stats(rows)
    assert stats["mean_length"] == 6 and stats["length_unit"] == "tokens"
    assert stats["eos_share"] == 0.5
    assert stats["repeated_trigram_share"] == 0.5
    assert stats["distinct_1"] == pytest.approx(4 / 7)
    assert has_repeated_ngram("the cat sat the cat sat") and not has_repeated_ngram("a b c d")
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
