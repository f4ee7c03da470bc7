"""Reference-free pairwise methods: they contrast the policy's own sequence statistics.

Each takes the pair view ([G, 2], column 0 chosen) and returns per-group losses [G] with the
quantity it contrasts as rewards [G, 2].
"""

from __future__ import annotations

import torch

from preftune.losses.links import hinge, log1mexp, logistic
from preftune.losses.responses import LossTerms, Responses, chosen_minus_rejected


def slic(pairs: Responses, delta: float, lam: float) -> LossTerms:
    """SLiC-HF (Zhao et al. 2023, arXiv 2305.10425), calibration loss with the NLL regulariser:

    max(0, delta - s_w + s_l) - lam s_w, both terms per sequence (summed log-probs).
    """
    s = pairs.logps
    return LossTerms(hinge(chosen_minus_rejected(s), delta) - lam * s[:, 0], s)


def _log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(pbar / (1 - pbar)) = log pbar - log(1 - pbar), from log pbar = s / l.

    Exact for every pbar < 1, so its gradient 1 / (1 - pbar) stays finite and non-zero as
    pbar nears 1 (clamping log pbar below a threshold would zero it there).
    """
    return mean_logps - log1mexp(mean_logps)


def orpo(pairs: Responses, lam: float) -> LossTerms:
    """ORPO (Hong et al. 2024, arXiv 2403.07691, Eq. 6-7), odds(y) = pbar / (1 - pbar):

    -s_w/l_w - lam log sigmoid(log odds(y_w) - log odds(y_l)). Rewards: the log odds.
    """
    mean_logps = pairs.mean_logps
    log_odds = _log_odds(mean_logps)
    losses = -mean_logps[:, 0] + lam * logistic(chosen_minus_rejected(log_odds))
    return LossTerms(losses, log_odds)


def simpo(pairs: Responses, beta: float, gamma: float) -> LossTerms:
    """SimPO (Meng et al. 2024, arXiv 2405.14734, Eq. 6): -log s(beta (s_w/l_w - s_l/l_l) - gamma).

    Rewards: beta s / l.
    """
    rewards = beta * pairs.mean_logps
    return LossTerms(logistic(chosen_minus_rejected(rewards) - gamma), rewards)


def repo(pairs: Responses, gamma: float) -> LossTerms:
    """RePO (Wu et al. 2025, arXiv 2503.07426): max(0, gamma - (s_w/l_w - s_l/l_l)).

    Rewards: s / l.
    """
    mean_logps = pairs.mean_logps
    return LossTerms(hinge(chosen_minus_rejected(mean_logps), gamma), mean_logps)
