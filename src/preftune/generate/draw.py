"""Each row's next token from its logits, and that token's log-prob under the raw logits:
the argmax at temperature 0, else a draw from the distribution transformers' `generate`
samples from (its temperature, top-k and top-p warpers, in its order).

The draw is an exact inverse-CDF draw with one float64 uniform per row from the global torch
generator, so `torch.manual_seed` makes it reproducible (the tokens differ from those
`torch.multinomial` or `generate` would draw for the same seed). It is ours because on CPU
`torch.multinomial` races one exponential per vocabulary entry through torch's
single-threaded generator (160 ms for 128 rows of a 49,152-token vocabulary, about 40% of a
small model's decode step), and because one float32 cumulative sum over the vocabulary is not
exact: near the end of a row its spacing (6e-8) rounds tail tokens to probability 0 or to
multiples of 6e-8. Here the vocabulary is cut into blocks of `BLOCK` entries: float32 block
sums, a float64 cumulative sum over the blocks picks a block, a float64 cumulative sum inside
that block only picks the token, so each token's rounding error is relative to its block's
mass. A token of weight 0 (filtered out, or underflowed) is never drawn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

BLOCK = 256  # vocabulary entries per block; ~sqrt(vocabulary) balances the two levels


def warpers(temperature: float, top_k: int, top_p: float) -> list:
    """transformers' sampling warpers for these settings, in `generate`'s order (none at
    temperature 1 with top_k 0 and top_p 1)."""
    chosen = []
    if temperature != 1.0:
        chosen.append(TemperatureLogitsWarper(temperature))
    if top_k:
        chosen.append(TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        chosen.append(TopPLogitsWarper(top_p=top_p))
    return chosen


def sampling_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float):
    """The distribution a row's next token is drawn from: softmax of the logits after the
    temperature, top-k and top-p warpers, as transformers' `generate` computes it.

    >>> probs = sampling_probs(torch.tensor([[2.0, 1.0, 0.0]]), 1.0, top_k=2, top_p=1.0)
    >>> [round(p, 4) for p in probs[0].tolist()]
    [0.7311, 0.2689, 0.0]
    """
    return torch.softmax(_warped(logits.float(), temperature, top_k, top_p), dim=-1)


def _warped(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    for warper in warpers(temperature, top_k, top_p):
        scores = warper(None, scores)
    return scores


def next_tokens(logits: torch.Tensor, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, raw log-probs): per row the argmax at temperature 0 (the first, as
    `torch.argmax`), else a draw from `sampling_probs` under `config`'s temperature, top_k
    and top_p; and the token's log-prob under the unwarped logits, within 1e-6 of its exact
    value (from float32 block sums added in float64: closer than a float32 `log_softmax`,
    whose own rounding reaches ~1e-5 over a 49,152-token vocabulary).

    >>> logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 3.0, 0.0]])
    >>> tokens, logps = next_tokens(logits, {"temperature": 0.0, "top_k": 0, "top_p": 1.0})
    >>> tokens.tolist(), torch.allclose(logps, torch.log_softmax(logits, -1)[[0, 1], tokens])
    ([1, 0], True)
    """
    logits = logits.float()
    block_max = _per_block(logits, torch.amax)
    top = block_max.amax(1, keepdim=True)
    weights = torch.sub(logits, top).exp_()  # exp(logit - max): softmax's numerators
    block_sums = _per_block(weights, torch.sum)
    log_normaliser = top.squeeze(1).double() + block_sums.double().sum(1).log()
    temperature, top_k, top_p = config["temperature"], config["top_k"], config["top_p"]
    if temperature == 0:
        tokens = _first_argmax(logits, block_max)
    else:
        uniforms = torch.rand(len(logits), dtype=torch.float64, device=logits.device)
        if warpers(temperature, top_k, top_p):
            scores = _warped(logits, temperature, top_k, top_p)
            weights = torch.sub(scores, scores.amax(1, keepdim=True)).exp_()
            block_sums = None
        tokens = inverse_cdf_draw(weights, uniforms, block_sums=block_sums)
    chosen = logits.gather(1, tokens[:, None]).squeeze(1)
    return tokens, (chosen.double() - log_normaliser).float()


def inverse_cdf_draw(
    weights: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    block: int = BLOCK,
    block_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per row of `weights` ([rows, vocab], >= 0, unnormalised, a positive finite sum) the
    token i with C(i - 1) <= u * C(vocab - 1) < C(i), where C is the row's cumulative sum and
    u the row's uniform in [0, 1): token i with probability weights[i] / sum. Never a token of
    weight 0, also when rounding puts u * sum at or past the end (the last token of positive
    weight is taken). `block_sums`: `_per_block(weights, torch.sum)`, when already computed.

    >>> weights = torch.tensor([[1.0, 0.0, 2.0, 1.0, 0.0]])
    >>> [inverse_cdf_draw(weights, torch.tensor([u]), block=2).item() for u in (0, 0.25, 0.99)]
    [0, 2, 3]
    """
    if block_sums is None:
        block_sums = _per_block(weights, torch.sum, block)
    edges = F.pad(block_sums.double().cumsum(1), (1, 0))  # [rows, blocks + 1], from 0
    total = edges[:, -1:]
    if not bool(((total > 0) & total.isfinite()).all()):
        raise ValueError("cannot draw a token: a row's weights are all 0, or not finite")
    target = uniforms.to(torch.float64)[:, None] * total
    chosen_block = _interval(edges, target)
    start, end = edges.gather(1, chosen_block), edges.gather(1, chosen_block + 1)
    inner = _block_entries(weights, chosen_block, block, fill=0.0).double()
    inner_edges = F.pad(inner.cumsum(1), (1, 0))
    inner_target = (target - start) / (end - start) * inner_edges[:, -1:]
    return (chosen_block * block + _interval(inner_edges, inner_target)).squeeze(1)


def _interval(edges: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row ([rows, 1]) the j with edges[j] <= target < edges[j + 1], an interval of positive
    width; a target at or past the last edge gets the last interval of positive width."""
    found = torch.searchsorted(edges, target, right=True) - 1
    last = (edges < edges[:, -1:]).sum(1, keepdim=True) - 1
    return torch.minimum(found, last)


def _first_argmax(values: torch.Tensor, block_max: torch.Tensor, block: int = BLOCK):
    """`values.argmax(1)` (the first maximum; NaN counts as the largest) from the block
    maxima: the first block holding the maximum, then its first maximum. On CPU `argmax`
    over whole rows costs ~4x the `amax` that gives the block maxima."""
    best_block = block_max.argmax(1, keepdim=True)
    inside = _block_entries(values, best_block, block, fill=float("-inf"))
    return (best_block * block + inside.argmax(1, keepdim=True)).squeeze(1)


def _per_block(values: torch.Tensor, reduce, block: int = BLOCK) -> torch.Tensor:
    """[rows, blocks]: `reduce` (torch.sum, torch.amax) over each block of `block` entries
    of each row of `values` ([rows, vocab]); the last block holds the vocab % block rest."""
    rows, vocab = values.shape
    whole = vocab - vocab % block
    parts = [reduce(values[:, :whole].reshape(rows, -1, block), dim=-1)]
    if whole < vocab:
        parts.append(reduce(values[:, whole:], dim=-1, keepdim=True))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def _block_entries(values: torch.Tensor, chosen_block: torch.Tensor, block: int, fill: float):
    """[rows, block]: each row's entries in its chosen block ([rows, 1]), `fill` past the
    end of the vocabulary."""
    columns = chosen_block * block + torch.arange(block, device=values.device)
    outside = columns >= values.shape[1]
    return values.gather(1, columns.masked_fill(outside, 0)).masked_fill_(outside, fill)
