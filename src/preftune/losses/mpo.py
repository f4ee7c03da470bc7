"""Set-level multi-preference optimisation (Gupta et al. 2024, MPO, arXiv 2412.04628)."""

from __future__ import annotations

import torch

from preftune.losses.responses import LossTerms, Responses


def mpo_set(ranked: Responses, beta: float) -> LossTerms:
    """-log(sum_chosen w e^{beta rho} / sum_all w e^{beta rho}) per group, w = |score - mean|.

    The chosen set is the responses scored above their group's mean. Groups whose scores are
    all equal carry no preference: they are left out of the mean (metric mpo/informative, the
    share of groups kept); a batch of only such groups gives a zero loss. [G'] (kept groups).
    """
    mask, scores = ranked.mask, ranked.scores
    mean = (scores * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True)
    weights = (scores - mean).abs() * mask
    rewards = beta * ranked.rho
    lowest = torch.finfo(rewards.dtype).min
    logits = torch.where(weights > 0, weights.clamp(min=1e-30).log() + rewards, lowest)
    chosen = mask & (scores > mean)
    informative = chosen.any(dim=1)
    log_share = logits.masked_fill(~chosen, lowest).logsumexp(dim=1) - logits.logsumexp(dim=1)
    losses = -log_share[informative]
    if not informative.any():
        losses = (rewards * 0).sum().reshape(1)
    metrics = {"mpo/informative": informative.double().mean().item()}
    return LossTerms(losses, rewards, metrics)
