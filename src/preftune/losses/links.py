"""Link functions: how a method turns a logit (a reward margin) into a loss."""

from __future__ import annotations

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
