"""Choosing the next token (preftune.generate.draw): the two-level inverse-CDF draw against a
hand-computed inverse CDF and, statistically, against the distribution it draws from; greedy
against torch.argmax; raw log-probs against a float64 log_softmax."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from preftune.generate.draw import BLOCK, inverse_cdf_draw, next_tokens, sampling_probs

PLAIN = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
GREEDY = {"temperature": 0.0, "top_k": 0, "top_p": 1.0}

# Cumulative sums C = 1 1 3 4 | 4 4 4 4 | 7 8 (total 8; blocks of 4, the last one of 2): a
# uniform u picks the token i with C(i - 1) <= 8u < C(i).
SPREAD = [1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.0]
SPREAD_DRAWS = [
    (0.0, 0),
    (0.0625, 0),  # 8u = 0.5
    (0.125, 2),  # 8u = 1 = C(0) = C(1): token 1 has weight 0
    (0.375, 3),  # 8u = 3 = C(2)
    (0.5, 8),  # 8u = 4: the end of block 0, block 1 holds only zeros
    (0.75, 8),  # 8u = 6
    (0.875, 9),  # 8u = 7 = C(8)
    (1.0, 9),  # 8u = 8, past the end as rounding can make it: the last token of weight > 0
]
# C = 1 2 3 4 | 6 8 8 8 | 8 8: the mass ends inside block 1.
EARLY_END = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]
EARLY_END_DRAWS = [(0.5, 4), (0.625, 4), (0.75, 5), (0.999, 5), (1.0, 5)]  # 8u = 4, 5, 6, ...
ONE_TOKEN = [0.0] * 5 + [5.0] + [0.0] * 4
ONE_TOKEN_DRAWS = [(0.0, 5), (0.5, 5), (0.999, 5), (1.0, 5)]


@pytest.mark.parametrize("block", [4, 3, 256])
@pytest.mark.parametrize(
    ("weights", "draws"),
    [(SPREAD, SPREAD_DRAWS), (EARLY_END, EARLY_END_DRAWS), (ONE_TOKEN, ONE_TOKEN_DRAWS)],
)
def test_draws_are_the_hand_computed_inverse_cdf(block, weights, draws):
    uniforms = torch.tensor([u for u, _ in draws], dtype=torch.float64)
    rows = torch.tensor([weights] * len(draws))
    assert inverse_cdf_draw(rows, uniforms, block=block).tolist() == [t for _, t in draws]


def test_next_tokens_draws_one_seeded_float64_uniform_per_row():
    logits = torch.randn(6, 700, generator=torch.Generator().manual_seed(5)) * 3
    torch.manual_seed(11)
    tokens, _ = next_tokens(logits, PLAIN)
    torch.manual_seed(11)
    uniforms = torch.rand(6, dtype=torch.float64).numpy()
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    cumulative = np.cumsum(probs, axis=1)
    expected = [
        np.searchsorted(c, u, side="right") for c, u in zip(cumulative, uniforms, strict=True)
    ]
    assert tokens.tolist() == expected


def skewed_weights(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, zero, tiny) over 1000 tokens (3 whole blocks and 232 more): a head of varied
    weights, exact zeros (every 7th token, and 300-519 across the boundary of blocks 1 and 2),
    and a tail of 400 tokens of weight 1e-6 and 20 of 1e-12."""
    weights = torch.rand(1000, generator=generator, dtype=torch.float64) ** 4
    tiny = torch.zeros(1000, dtype=torch.bool)
    tiny[550:950] = True
    weights[tiny] = 1e-6
    weights[960:980] = 1e-12
    zero = torch.zeros(1000, dtype=torch.bool)
    zero[::7] = True
    zero[300:520] = True
    weights[zero] = 0.0
    return weights, zero, tiny


def binned(counts: torch.Tensor, probs: torch.Tensor, draws: int) -> tuple[list, list]:
    """(observed, expected) counts for a chi-square test: a bin per token expected 5 times
    or more, one for all other tokens of probability > 0."""
    alone, pooled = probs * draws >= 5, (probs * draws < 5) & (probs > 0)
    observed, expected = counts[alone].tolist(), (probs[alone] * draws).tolist()
    if pooled.any():
        observed.append(counts[pooled].sum().item())
        expected.append((probs[pooled] * draws).sum().item())
    return observed, expected


def test_frequencies_match_the_distribution_tail_included_and_zeros_never_drawn():
    weights, zero, tiny = skewed_weights(torch.Generator().manual_seed(0))
    probs = weights / weights.sum()
    logits = probs.log().float()  # zeros become -inf
    torch.manual_seed(0)
    draws = torch.cat([next_tokens(logits.expand(20_000, -1), PLAIN)[0] for _ in range(5)])
    counts = torch.bincount(draws, minlength=1000).double()
    assert counts[zero].sum() == 0
    assert stats.chisquare(*binned(counts, probs, len(draws))).pvalue > 1e-3
    tail = stats.binomtest(int(counts[tiny].sum()), len(draws), float(probs[tiny].sum()))
    assert tail.pvalue > 1e-3  # 400 tokens of probability ~1.6e-6 each: ~65 draws expected


def test_top_k_and_top_p_filtered_tokens_are_never_drawn():
    weights, zero, _ = skewed_weights(torch.Generator().manual_seed(1))
    logits = weights.log().float()
    config = {"temperature": 0.7, "top_k": 400, "top_p": 0.9}
    probs = sampling_probs(logits[None], **config)[0].double()
    torch.manual_seed(1)
    draws = torch.cat([next_tokens(logits.expand(5_000, -1), config)[0] for _ in range(4)])
    counts = torch.bincount(draws, minlength=1000).double()
    assert counts[probs == 0].sum() == 0
    assert (probs == 0).sum() > zero.sum()  # top-k and top-p removed more than the zeros
    assert stats.chisquare(*binned(counts, probs, len(draws))).pvalue > 1e-3


@pytest.mark.parametrize("vocab", [5, BLOCK, BLOCK + 1, 1000])
def test_greedy_is_torch_argmax_ties_included(vocab):
    # Integer logits in a small range: the maximum is tied within and across blocks.
    logits = torch.randint(-4, 4, (200, vocab), generator=torch.Generator().manual_seed(2))
    logits = logits.float()
    logits[0] = 3.0  # all tied: the first token
    logits[1, -1] = 9.0  # the maximum in the last (for 257 and 1000, shorter) block
    tokens, _ = next_tokens(logits, GREEDY)
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()


@pytest.mark.parametrize("config", [GREEDY, PLAIN, {"temperature": 0.5, "top_k": 20, "top_p": 0.8}])
def test_logps_are_the_raw_log_softmax(config):
    logits = torch.randn(128, 49_152, generator=torch.Generator().manual_seed(3)) * 4
    tokens, logps = next_tokens(logits, config)
    exact = torch.log_softmax(logits.double(), dim=-1).gather(1, tokens[:, None]).squeeze(1)
    assert (logps.double() - exact).abs().max().item() < 1e-6


def test_a_row_without_mass_is_refused():
    for bad in (0.0, math.nan, math.inf):
        weights = torch.tensor([[1.0, 2.0], [bad, bad]])
        with pytest.raises(ValueError, match="all 0, or not finite"):
            inverse_cdf_draw(weights, torch.zeros(2, dtype=torch.float64))


def test_sampling_probabilities_match_a_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    # temperature 0.5: scores 4, 2, 1, -2, 0; top_k 3 keeps 4, 2, 1; softmax over those.
    z = math.exp(4) + math.exp(2) + math.exp(1)
    top_k = [math.exp(4) / z, math.exp(2) / z, math.exp(1) / z, 0.0, 0.0]
    assert sampling_probs(logits, 0.5, 3, 1.0)[0].tolist() == pytest.approx(top_k, abs=1e-6)
    # top_p 0.9 then drops the least likely tokens while the mass removed stays <= 0.1: the
    # third (p = e / z = 0.042) goes, the second (then 0.042 + 0.114 > 0.1) stays.
    z2 = math.exp(4) + math.exp(2)
    top_p = [math.exp(4) / z2, math.exp(2) / z2, 0.0, 0.0, 0.0]
    assert sampling_probs(logits, 0.5, 3, 0.9)[0].tolist() == pytest.approx(top_p, abs=1e-6)
    # temperature 1, no filters: the plain softmax.
    plain = torch.softmax(logits, dim=-1)[0].tolist()
    assert sampling_probs(logits, 1.0, 0, 1.0)[0].tolist() == pytest.approx(plain, abs=1e-6)


def test_draws_follow_a_hand_computed_filtered_distribution():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]]).repeat(4000, 1)
    drawn, _ = next_tokens(logits, {"temperature": 0.5, "top_k": 3, "top_p": 0.9})
    assert set(drawn.tolist()) == {0, 1}
    expected = math.exp(4) / (math.exp(4) + math.exp(2))
    assert stats.binomtest(int((drawn == 0).sum()), len(drawn), expected).pvalue > 1e-3
