"""Relative Preference Optimization (Yin et al. 2024, arXiv 2402.10958).

Contrasts every chosen response with every rejected one in the batch, prompts included:
L_ij = rho(y_w^i) - rho(y_l^j), weighted by how similar prompts i and j are. rpo and
rpo-unpaired need the extra input `prompt_embeddings` [G, D] (a sentence embedder's vectors;
normalised here, detached); rpo-diagonal weighs the contrasts by position instead.
The contrast spans what the trainer passes: gather across processes for a global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from preftune.errors import MethodDataError
from preftune.losses.links import logistic
from preftune.losses.responses import LossTerms, Responses


def similarity_logits(rows: torch.Tensor, columns: torch.Tensor, tau: float) -> torch.Tensor:
    """-d_ij / tau with d_ij = 1 - cos(e_i, e_j), [M, K] (tau > 0, checked by the registry)."""
    rows, columns = F.normalize(rows.detach(), dim=-1), F.normalize(columns.detach(), dim=-1)
    return -(1 - rows @ columns.T) / tau


def log_ratio_gaps(chosen_rho: torch.Tensor, rejected_rho: torch.Tensor) -> torch.Tensor:
    """L_ij = rho(y_w^i) - rho(y_l^j), every chosen against every rejected response, [M, K]."""
    return chosen_rho[:, None] - rejected_rho[None, :]


def contrast(chosen_rho, rejected_rho, weights, beta: float) -> torch.Tensor:
    """mean_j -log sigmoid(beta w_ij L_ij), one loss per chosen response [M] (the paper's
    weighted contrast matrix: the weight scales the logit)."""
    return logistic(beta * weights * log_ratio_gaps(chosen_rho, rejected_rho)).mean(dim=1)


def rpo(pairs: Responses, beta: float, tau: float) -> LossTerms:
    """RPO over the batch's pairs: w_ij = softmax_j(-d_ij / tau), the diagonal included. [G]"""
    embeddings = pairs.extra("prompt_embeddings")
    weights = similarity_logits(embeddings, embeddings, tau).softmax(dim=1)
    rho = pairs.rho
    return LossTerms(contrast(rho[:, 0], rho[:, 1], weights, beta), beta * rho)


def rpo_diagonal(pairs: Responses, beta: float, alpha: float) -> LossTerms:
    """RPO-Diagonal: alpha * own pair's loss + (1 - alpha) * mean of the other contrasts,

    loss_ij = -log sigmoid(beta L_ij), the off-diagonal ones averaged uniformly (no prompt
    embeddings). A batch of one pair is DPO. [G]
    """
    rho = pairs.rho
    losses = logistic(beta * log_ratio_gaps(rho[:, 0], rho[:, 1]))
    groups = losses.shape[0]
    if groups == 1:
        return LossTerms(losses[:, 0], beta * rho)
    others = (losses.sum(dim=1) - losses.diagonal()) / (groups - 1)
    return LossTerms(alpha * losses.diagonal() + (1 - alpha) * others, beta * rho)


def rpo_unpaired(singles: Responses, beta: float, tau: float) -> LossTerms:
    """RPO on unpaired data: every desirable response against every undesirable one,
    w_ij = softmax over undesirable j of -d_ij / tau. One loss per desirable response."""
    desirable = singles.labels
    if not desirable.any() or desirable.all():
        raise MethodDataError(
            "method 'rpo-unpaired' needs at least one desirable and one undesirable response "
            "in every batch"
        )
    embeddings = singles.extra("prompt_embeddings")
    weights = similarity_logits(embeddings[desirable], embeddings[~desirable], tau).softmax(dim=1)
    rho = singles.rho
    return LossTerms(contrast(rho[desirable], rho[~desirable], weights, beta), beta * rho)
