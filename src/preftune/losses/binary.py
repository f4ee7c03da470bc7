"""Binary feedback: each response alone, labelled desirable or undesirable (the `binary` view).

Functions take the singles view ([N] responses) and return per-response losses [N] with
rewards r = beta * rho [N] and the reference point a reward is compared with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from preftune.errors import MethodDataError
from preftune.losses.links import logistic
from preftune.losses.responses import LossTerms, Responses


def kl_estimate(singles: Responses) -> torch.Tensor:
    """KTO's reference point: max(0, mean rho over mismatched pairs), detached (a 0-d tensor).

    Extra inputs `kl_policy_logps`, `kl_ref_logps` [M]: summed log-probs of each prompt with
    another example's response. In several processes the trainer gathers them first.
    """
    policy, reference = singles.extras.get("kl_policy_logps"), singles.extras.get("kl_ref_logps")
    if policy is None or reference is None or policy.numel() == 0:
        raise MethodDataError(
            f"method '{singles.method}' needs kl_policy_logps and kl_ref_logps: log-probs of "
            "mismatched pairs (a prompt with another example's response) for its KL reference "
            "point; a batch needs at least 2 examples to form them"
        )
    if policy.shape != reference.shape:
        raise MethodDataError(
            f"method '{singles.method}': kl_policy_logps {tuple(policy.shape)} and "
            f"kl_ref_logps {tuple(reference.shape)} must have the same shape"
        )
    return (policy - reference).mean().clamp(min=0).detach()


def _kto(
    singles: Responses, beta, desirable_weight, undesirable_weight, value: Callable
) -> LossTerms:
    """KTO's loss w(y) (1 - v(y)): v = value(r - z) if desirable, value(z - r) if not."""
    kl = kl_estimate(singles)
    z = beta * kl
    rewards = beta * singles.rho
    desirable = singles.labels
    values = torch.where(desirable, value(rewards - z), value(z - rewards))
    weights = torch.where(
        desirable, rewards.new_tensor(desirable_weight), rewards.new_tensor(undesirable_weight)
    )
    return LossTerms(weights * (1 - values), rewards, {"kto/kl": kl.item()}, reference_point=z)


def kto(
    singles: Responses, beta: float, desirable_weight: float, undesirable_weight: float
) -> LossTerms:
    """KTO (Ethayarajh et al. 2024, arXiv 2402.01306), logistic value: r = beta rho,

    z = beta max(0, mean rho of mismatched pairs), v = s(r - z) | s(z - r), loss = lambda (1 - v).
    Needs the extra inputs kl_policy_logps, kl_ref_logps [M] (M >= 1).
    """
    return _kto(singles, beta, desirable_weight, undesirable_weight, torch.sigmoid)


def kto_tanh(
    singles: Responses, beta: float, desirable_weight: float, undesirable_weight: float
) -> LossTerms:
    """KTO with a tanh value function, v = tanh(r - z) | tanh(z - r); otherwise as `kto`.

    tanh saturates like the logistic but is steeper at 0 and reaches -1 below the reference
    point, so an undesirable response far above it costs up to 2 lambda instead of lambda.
    """
    return _kto(singles, beta, desirable_weight, undesirable_weight, torch.tanh)


def bco(singles: Responses, beta: float) -> LossTerms:
    """BCO (Jung et al. 2024, arXiv 2404.04656), r = beta rho, delta the running reward mean:

    -log s(r - delta) if desirable, -log s(-(r - delta)) if not. The trainer keeps delta and
    passes it as the extra input `reward_mean` (0-d); without it the batch mean is used.
    Metrics: bco/reward_mean (this batch's, to update the running value), bco/delta.
    (BCO's underlying-distribution-matching weights are not implemented.)
    """
    rewards = beta * singles.rho
    batch_mean = rewards.detach().mean()
    delta = singles.extras.get("reward_mean", batch_mean).detach()
    shifted = rewards - delta
    losses = torch.where(singles.labels, logistic(shifted), logistic(-shifted))
    metrics = {"bco/reward_mean": batch_mean.item(), "bco/delta": delta.item()}
    return LossTerms(losses, rewards, metrics, reference_point=delta)
