"""Link functions: how a method turns a logit (a reward margin) into a loss, and the stable
log-space arithmetic they share."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def logistic(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(h): the Bradley-Terry negative log-likelihood."""
    return -F.logsigmoid(logits)


def smoothed_logistic(logits: torch.Tensor, epsilon: torch.Tensor | float) -> torch.Tensor:
    """-(1 - eps) log sigmoid(h) - eps log sigmoid(-h): cross-entropy with a soft label 1 - eps."""
    return (1 - epsilon) * logistic(logits) + epsilon * logistic(-logits)


def hinge(logits: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """max(0, margin - h)."""
    return torch.relu(margin - logits)


def plackett_luce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Plackett-Luce negative log-likelihood of each row's order (Plackett 1975, Luce
    1959): -sum_i log [exp(h_i) / sum_{j >= i} exp(h_j)] over the valid entries of a row of
    `logits` [G, R] given best first; `mask` [G, R] marks them (valid entries first). [G]

    >>> round(float(plackett_luce(torch.tensor([[0.0, 0.0]]), torch.tensor([[True, True]]))), 4)
    0.6931
    """
    width = mask.shape[1]
    below = torch.ones(width, width, dtype=torch.bool, device=mask.device).triu()  # j >= i
    candidates = below & mask[:, None, :]
    masked = logits[:, None, :].masked_fill(~candidates, torch.finfo(logits.dtype).min)
    log_probs = logits - masked.logsumexp(dim=-1)
    return -(log_probs * mask).sum(dim=1)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate everywhere (Maechler 2012, "Accurately computing
    log(1 - exp(-|a|))"): log(-expm1(x)) above -log 2, log1p(-exp(x)) below.

    x is capped at minus the smallest normal number, so x = 0 (a probability of exactly 1)
    gives a large finite negative value instead of -inf.
    """
    x = torch.minimum(x, -x.new_tensor(torch.finfo(x.dtype).tiny))
    near_zero = x > -math.log(2)
    return torch.where(
        near_zero,
        torch.log(-torch.expm1(x.clamp(min=-math.log(2)))),
        torch.log1p(-torch.exp(x.clamp(max=-math.log(2)))),
    )
