"""MPPO (Xie et al. 2025, arXiv 2412.15244): reference-free, the reward is the average
likelihood pbar(y) = exp(s / l); no beta.

List-view functions take the ranked view ([G, R], best first by score, padding last) and
return per-group losses [G] (point-wise ones: one loss per existing response) with rewards
pbar [G, R]. Metrics: mppo/pbar_best, mppo/pbar_rest.
"""

from __future__ import annotations

import torch

from preftune.errors import MethodDataError
from preftune.losses.links import log1mexp, logistic, plackett_luce
from preftune.losses.responses import LossTerms, Responses, chosen_minus_rejected


def _terms(ranked: Responses, losses: torch.Tensor, pbar: torch.Tensor) -> LossTerms:
    rest = ranked.mask[:, 1:]
    metrics = {"mppo/pbar_best": pbar[:, 0].detach().double().mean().item()}
    if rest.any():
        metrics["mppo/pbar_rest"] = pbar[:, 1:][rest].detach().double().mean().item()
    return LossTerms(losses, pbar, metrics)


def _targets(ranked: Responses, score_max: float) -> torch.Tensor:
    """Point-wise targets t = score / score_max, which must lie in [0, 1]."""
    targets = ranked.scores / score_max
    if ((targets < 0) | (targets > 1))[ranked.mask].any():
        raise MethodDataError(
            f"method '{ranked.method}' needs scores in [0, score_max = {score_max}] "
            "(targets score / score_max in [0, 1]); set score_max to the rating scale's top"
        )
    return targets


def point_ce(ranked: Responses, score_max: float) -> LossTerms:
    """Point-wise cross-entropy: -[t log pbar + (1 - t) log(1 - pbar)] per response, [N]."""
    targets = _targets(ranked, score_max)
    log_pbar = ranked.mean_logps
    losses = -(targets * log_pbar + (1 - targets) * log1mexp(log_pbar))
    return _terms(ranked, losses[ranked.mask], ranked.pbar)


def point_mse(ranked: Responses, score_max: float) -> LossTerms:
    """Point-wise squared error (t - pbar)^2 per response, [N] (the paper's minus sign is a typo)."""
    pbar = ranked.pbar
    return _terms(ranked, ((_targets(ranked, score_max) - pbar) ** 2)[ranked.mask], pbar)


def pair_single(pairs: Responses) -> LossTerms:
    """Pair-Single: -log sigmoid(pbar_w - pbar_l) with one non-top response (the pair view). [G]"""
    pbar = pairs.pbar
    return _terms(pairs, logistic(chosen_minus_rejected(pbar)), pbar)


def _contrasted_pbar(ranked: Responses) -> torch.Tensor:
    """pbar [G, R] of groups that have something to contrast: 2+ responses each."""
    if (ranked.mask.sum(dim=1) < 2).any():
        raise MethodDataError(
            f"method '{ranked.method}' compares responses within a group: every group needs "
            "at least 2 responses (use the 'list' data view)"
        )
    return ranked.pbar


def _best_minus_rest(ranked: Responses):
    """pbar_w - pbar_i for each other response i, with the mask of those that exist, [G, R-1]."""
    pbar = _contrasted_pbar(ranked)
    return pbar, pbar[:, :1] - pbar[:, 1:], ranked.mask[:, 1:]


def pair_mns(ranked: Responses) -> LossTerms:
    """Multi-negative, separate: -sum_i log sigmoid(pbar_w - pbar_li). [G]"""
    pbar, gaps, negatives = _best_minus_rest(ranked)
    return _terms(ranked, (logistic(gaps) * negatives).sum(dim=1), pbar)


def pair_mnm(ranked: Responses) -> LossTerms:
    """Multi-negative, merged: -log sigmoid(N pbar_w - sum_i pbar_li) = -log s(sum_i gap_i). [G]"""
    pbar, gaps, negatives = _best_minus_rest(ranked)
    return _terms(ranked, logistic((gaps * negatives).sum(dim=1)), pbar)


def _ordered_pairs(ranked: Responses):
    """pbar_a - pbar_b for all (a, b) with score_a > score_b, and that mask, [G, R, R]."""
    pbar, scores, mask = _contrasted_pbar(ranked), ranked.scores, ranked.mask
    ordered = (scores[:, :, None] > scores[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    return pbar, pbar[:, :, None] - pbar[:, None, :], ordered


def pair_mcs(ranked: Responses) -> LossTerms:
    """Multi-comparison, separate: -sum over score-ordered pairs of log s(pbar_a - pbar_b). [G]"""
    pbar, gaps, ordered = _ordered_pairs(ranked)
    return _terms(ranked, (logistic(gaps) * ordered).sum(dim=(1, 2)), pbar)


def pair_mcm(ranked: Responses) -> LossTerms:
    """Multi-comparison, merged: -log sigmoid(sum over score-ordered pairs of pbar_a - pbar_b). [G]"""
    pbar, gaps, ordered = _ordered_pairs(ranked)
    return _terms(ranked, logistic((gaps * ordered).sum(dim=(1, 2))), pbar)


def list_mle(ranked: Responses) -> LossTerms:
    """List-MLE (Plackett-Luce): -sum_i log [exp(pbar_i) / sum_{j >= i} exp(pbar_j)] over the
    responses sorted by descending score. [G]"""
    pbar = _contrasted_pbar(ranked)
    return _terms(ranked, plackett_luce(pbar, ranked.mask), pbar)
