"""The metrics every method logs, computed in one place.

rewards/* are the method's own implicit reward: beta * rho for reference-based methods, and
for reference-free ones what the method contrasts (SimPO beta * s/l, ORPO the log odds, SLiC
s, RePO s/l, MPPO pbar). A key is left out when the batch has nothing to average (a binary
batch without undesirable examples has no rewards/rejected; SFT has no rewards).
"""

from __future__ import annotations

import torch

from preftune.losses.responses import LossTerms, Responses


def _mean(values: torch.Tensor) -> float:
    return values.detach().double().mean().item()


def ranked_metrics(view: Responses, terms: LossTerms) -> dict[str, float]:
    """Pair and list views: the best response of each group against every other one."""
    rest = view.mask[:, 1:]
    metrics = {"logps/chosen": _mean(view.logps[:, 0])}
    if rest.any():
        metrics["logps/rejected"] = _mean(view.logps[:, 1:][rest])
    if terms.rewards is not None:
        rewards = terms.rewards.detach()
        metrics["rewards/chosen"] = _mean(rewards[:, 0])
        if rest.any():
            gaps = (rewards[:, :1] - rewards[:, 1:])[rest]
            metrics["rewards/rejected"] = _mean(rewards[:, 1:][rest])
            metrics["rewards/margins"] = _mean(gaps)
            metrics["rewards/accuracies"] = _mean((gaps > 0).double())
    return metrics


def binary_metrics(view: Responses, terms: LossTerms) -> dict[str, float]:
    """Binary view: desirable responses count as chosen, undesirable ones as rejected.

    Accuracy: the share of responses on the right side of the method's reference point.
    """
    desirable = view.labels
    rewards = terms.rewards.detach()
    metrics = {}
    for key, selected in (("chosen", desirable), ("rejected", ~desirable)):
        if selected.any():
            metrics[f"logps/{key}"] = _mean(view.logps[selected])
            metrics[f"rewards/{key}"] = _mean(rewards[selected])
    if desirable.any() and (~desirable).any():
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    above = rewards > torch.as_tensor(terms.reference_point, dtype=rewards.dtype)
    metrics["rewards/accuracies"] = _mean((above == desirable).double())
    return metrics
