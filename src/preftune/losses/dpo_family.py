"""The DPO family: each method is a margin (a logit built from log-ratios) and a link.

Every function takes the pair view (`Responses`, [G, 2], column 0 chosen) and its
hyperparameters, and returns `LossTerms` with per-group losses [G] and rewards [G, 2]
(beta * rho unless the method redefines rho). Notation: rho = s - s_ref, Delta = rho_w - rho_l,
r = beta * rho, l = token count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from preftune.errors import MethodDataError
from preftune.losses.links import hinge as hinge_link
from preftune.losses.links import logistic, smoothed_logistic
from preftune.losses.responses import LossTerms, Responses, chosen_minus_rejected


def dpo(pairs: Responses, beta: float) -> LossTerms:
    """DPO (Rafailov et al. 2023, arXiv 2305.18290, Eq. 7): -log sigmoid(beta Delta)."""
    return LossTerms(logistic(beta * pairs.delta), beta * pairs.rho)


def ipo(pairs: Responses, beta: float, length_normalize: bool) -> LossTerms:
    """IPO (Azar et al. 2023, arXiv 2310.12036): (Delta - 1/(2 beta))^2.

    Delta sums the token log-ratios, as the paper writes it; length_normalize builds it from
    rho / l instead (TRL's `ipo` loss averages the log-probs).
    """
    rho = pairs.rho / pairs.lengths if length_normalize else pairs.rho
    return LossTerms((chosen_minus_rejected(rho) - 1 / (2 * beta)) ** 2, beta * rho)


def cdpo(pairs: Responses, beta: float, epsilon: float) -> LossTerms:
    """Conservative DPO (Mitchell 2023): -(1 - eps) log s(beta Delta) - eps log s(-beta Delta)."""
    return LossTerms(smoothed_logistic(beta * pairs.delta, epsilon), beta * pairs.rho)


def rdpo(pairs: Responses, beta: float, epsilon: float) -> LossTerms:
    """Robust DPO (Chowdhury et al. 2024, arXiv 2403.00409), unbiased under flip rate eps:

    [-(1 - eps) log s(beta Delta) + eps log s(-beta Delta)] / (1 - 2 eps).
    """
    h = beta * pairs.delta
    losses = ((1 - epsilon) * logistic(h) - epsilon * logistic(-h)) / (1 - 2 * epsilon)
    return LossTerms(losses, beta * pairs.rho)


def hinge(pairs: Responses, beta: float) -> LossTerms:
    """Hinge loss on the DPO logit (RSO, Liu et al. 2023, arXiv 2309.06657): max(0, 1 - beta Delta)."""
    return LossTerms(hinge_link(beta * pairs.delta), beta * pairs.rho)


def ln_dpo(pairs: Responses, beta: float) -> LossTerms:
    """Length-normalised DPO (arXiv 2407.15229): -log sigmoid(beta (rho_w/l_w - rho_l/l_l))."""
    rho = pairs.rho / pairs.lengths
    return LossTerms(logistic(beta * chosen_minus_rejected(rho)), beta * rho)


def dpop(pairs: Responses, beta: float, lam: float) -> LossTerms:
    """DPO-Positive (Pal et al. 2024, arXiv 2402.13228): -log s(beta (Delta - lam max(0, -rho_w)))."""
    penalty = lam * torch.relu(-pairs.rho[:, 0])
    return LossTerms(logistic(beta * (pairs.delta - penalty)), beta * pairs.rho)


def dpo_shift(pairs: Responses, beta: float, lam: float) -> LossTerms:
    """DPO-Shift (Yang et al. 2025, arXiv 2502.07599): -log sigmoid(beta (rho_w - lam rho_l))."""
    rho = pairs.rho
    return LossTerms(logistic(beta * (rho[:, 0] - lam * rho[:, 1])), beta * rho)


def h_dpo(pairs: Responses, beta: float, alpha: float) -> LossTerms:
    """H-DPO (Omura et al. 2024, arXiv 2411.07595): DPO with rho = alpha s - s_ref.

    alpha < 1 sharpens the policy (lower entropy); alpha = 1 is DPO.
    """
    rho = alpha * pairs.logps - pairs.ref_logps
    return LossTerms(logistic(beta * chosen_minus_rejected(rho)), beta * rho)


def odpo(pairs: Responses, beta: float, alpha: float) -> LossTerms:
    """ODPO (Amini et al. 2024, arXiv 2402.10571): -log sigmoid(beta Delta - Delta_off).

    Delta_off = alpha log(score_w - score_l), or alpha * margin when the extra input
    `margins` [G] is given (a per-pair margin from the data, e.g. estimated disagreement).
    """
    if "margins" in pairs.extras:
        offset = alpha * pairs.extras["margins"]
    else:
        if pairs.given_scores is None:
            raise MethodDataError(
                "method 'odpo' needs scores (the offset is alpha * log(score_w - score_l)) "
                "or a `margins` tensor [G]"
            )
        gap = chosen_minus_rejected(pairs.scores)
        if (gap <= 0).any():
            raise MethodDataError(
                "method 'odpo' needs score_w > score_l in every pair (the offset is "
                "alpha * log(score_w - score_l)); drop tied pairs or pass `margins`"
            )
        offset = alpha * gap.log()
    return LossTerms(logistic(beta * pairs.delta - offset), beta * pairs.rho)


def mmpo(pairs: Responses, beta: float, gamma: float) -> LossTerms:
    """Margin matching (Kim et al. 2024, arXiv 2410.03145): a soft label on DPO's logit,

    q = sigmoid(gamma (score_w - score_l)); -q log s(beta Delta) - (1 - q) log s(-beta Delta).
    """
    target = torch.sigmoid(gamma * chosen_minus_rejected(pairs.scores))
    return LossTerms(smoothed_logistic(beta * pairs.delta, 1 - target), beta * pairs.rho)


def todo(pairs: Responses, beta: float, alpha: float) -> LossTerms:
    """TODO (Guo et al. 2024, arXiv 2411.02442), Rao-Kupper ties with d = beta Delta:

    non-tie -log s(d - alpha); tie -log[(e^{2 alpha} - 1) s(d - alpha) s(-d - alpha)].
    A pair is a tie when the extra input `ties` [G] says so or its two scores are equal.
    """
    ties = pairs.extras.get("ties", torch.zeros_like(pairs.mask[:, 0]))
    if pairs.given_scores is not None:
        ties = ties | (pairs.scores[:, 0] == pairs.scores[:, 1])
    d = beta * pairs.delta
    preferred = logistic(d - alpha)
    tied = -math.log(math.expm1(2 * alpha)) + logistic(d - alpha) + logistic(-d - alpha)
    return LossTerms(torch.where(ties, tied, preferred), beta * pairs.rho)


def exo(pairs: Responses, beta: float, epsilon: float) -> LossTerms:
    """EXO (Ji et al. 2024, arXiv 2402.00856), pairwise: KL(p_theta || p_eps) where

    p_theta = softmax over the pair of beta rho = (s(beta Delta), s(-beta Delta)) and
    p_eps = (1 - eps, eps), the smoothed preference label.
    """
    h = beta * pairs.delta
    log_p, log_q = F.logsigmoid(h), F.logsigmoid(-h)
    losses = log_p.exp() * (log_p - math.log(1 - epsilon)) + log_q.exp() * (
        log_q - math.log(epsilon)
    )
    return LossTerms(losses, beta * pairs.rho)


def nca(pairs: Responses, beta: float) -> LossTerms:
    """NCA (Chen et al. 2024, arXiv 2402.05369), pairwise form with r = beta rho:

    -log s(r_w) - 1/2 log s(-r_w) - 1/2 log s(-r_l).
    """
    r = beta * pairs.rho
    losses = logistic(r[:, 0]) + 0.5 * logistic(-r[:, 0]) + 0.5 * logistic(-r[:, 1])
    return LossTerms(losses, r)


def apo_zero(pairs: Responses, beta: float) -> LossTerms:
    """APO-zero (D'Oosterlinck et al. 2024, arXiv 2408.06266): (1 - s(r_w)) + s(r_l), r = beta rho.

    For chosen responses better than the model's own: raise chosen, lower rejected.
    """
    r = beta * pairs.rho
    return LossTerms(1 - torch.sigmoid(r[:, 0]) + torch.sigmoid(r[:, 1]), r)


def apo_down(pairs: Responses, beta: float) -> LossTerms:
    """APO-down (arXiv 2408.06266): s(r_w) + (1 - s(r_w - r_l)), r = beta rho.

    For chosen responses worse than the model's own: lower chosen, lower rejected more.
    """
    r = beta * pairs.rho
    return LossTerms(torch.sigmoid(r[:, 0]) + 1 - torch.sigmoid(chosen_minus_rejected(r)), r)


def sppo_hard(pairs: Responses, beta: float) -> LossTerms:
    """SPPO with hard labels (Wu et al. 2024, arXiv 2405.00675), eta = 1/beta:

    (rho_w - 1/(2 beta))^2 + (rho_l + 1/(2 beta))^2 (winner probability 1, loser 0).
    """
    rho = pairs.rho
    losses = (rho[:, 0] - 1 / (2 * beta)) ** 2 + (rho[:, 1] + 1 / (2 * beta)) ** 2
    return LossTerms(losses, beta * rho)


def discopop(pairs: Responses, beta: float, tau: float) -> LossTerms:
    """DiscoPOP / LRML (Lu et al. 2024, arXiv 2406.08414), h = beta Delta:

    (1 - s(h / tau)) (-log s(h)) + s(h / tau) exp(-h).

    The exponential term is computed as exp(log s(h / tau) - h): written directly, exp(-h)
    overflows to inf for h < -88.7 in float32 while s(h / tau) underflows to 0, and
    0 * inf = NaN.
    """
    h = beta * pairs.delta
    mix = torch.sigmoid(h / tau)
    exponential = torch.exp(F.logsigmoid(h / tau) - h)
    return LossTerms((1 - mix) * logistic(h) + exponential, beta * pairs.rho)


def bco_pair(pairs: Responses, beta: float) -> LossTerms:
    """BCO on pairs (Jung et al. 2024, arXiv 2404.04656): -log s(r_w) - log s(-r_l), r = beta rho."""
    r = beta * pairs.rho
    return LossTerms(logistic(r[:, 0]) + logistic(-r[:, 1]), r)
