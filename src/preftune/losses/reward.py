"""Reward-model losses: Bradley-Terry over pairs, Plackett-Luce over ranked lists.

`rewards` are the reward model's scalar outputs r(x, y), [G, R] with each group's responses
best first (the data's "pair" view: R = 2, chosen then rejected; its "list" view: every
response, best first); `mask` [G, R] marks the valid ones. Each function returns the mean loss
over groups and metrics named as the preference methods' (`rewards/chosen`,
`rewards/rejected`, `rewards/margins`, `rewards/accuracies`; lists: the best response against
every other).

Reward centering (Eisenstein et al. 2023, arXiv 2312.09244, Sec. 2; TRL's
`center_rewards_coefficient`) adds `centering * (r_c + r_r)^2`, which pins the pair's rewards
to sum to zero since Bradley-Terry only sees their difference; for a list the term is
`centering * (sum_i r_i)^2`, the same thing over the whole group.
"""

from __future__ import annotations

import torch

from preftune.losses.links import logistic, plackett_luce

OBJECTIVES = ("bradley-terry", "plackett-luce")


def bradley_terry(
    rewards: torch.Tensor, *, margins: torch.Tensor | None = None, centering: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """mean over pairs of -log sigmoid(r_c - r_r - m) + centering * (r_c + r_r)^2.

    The pairwise reward-model loss of Ouyang et al. 2022 (arXiv 2203.02155, Eq. 1), from the
    Bradley-Terry model (Bradley & Terry 1952); the margin m [G] of Touvron et al. 2023
    (Llama 2, arXiv 2307.09288, Eq. 2) asks the chosen reward to lead by at least about m.

    >>> loss, metrics = bradley_terry(torch.tensor([[1.0, 0.0]]))
    >>> round(loss.item(), 4), metrics["rewards/accuracies"]
    (0.3133, 1.0)
    """
    chosen, rejected = rewards[:, 0], rewards[:, 1]
    gap = chosen - rejected
    logits = gap if margins is None else gap - margins
    loss = logistic(logits).mean()
    if centering:
        loss = loss + centering * ((chosen + rejected) ** 2).mean()
    return loss, _metrics(
        chosen, rejected[:, None], torch.ones_like(rejected[:, None], dtype=torch.bool)
    )


def list_plackett_luce(
    rewards: torch.Tensor, mask: torch.Tensor, *, centering: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """mean over groups of the Plackett-Luce negative log-likelihood of the data's order,
    -sum_i log [exp(r_i) / sum_{j >= i} exp(r_j)] (Plackett 1975; as a reward-model loss the
    K-wise maximum-likelihood estimator of Zhu et al. 2023, arXiv 2301.11270, Sec. 4), plus
    centering * (sum_i r_i)^2. For two responses it equals `bradley_terry`.

    >>> loss, _ = list_plackett_luce(torch.tensor([[1.0, 0.0]]), torch.tensor([[True, True]]))
    >>> round(loss.item(), 4)
    0.3133
    """
    loss = plackett_luce(rewards, mask).mean()
    if centering:
        loss = loss + centering * ((rewards * mask).sum(dim=1) ** 2).mean()
    return loss, _metrics(rewards[:, 0], rewards[:, 1:], mask[:, 1:])


def ranking_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """The share of pairs whose chosen response gets the strictly higher reward (a tie in
    reward counts as wrong).

    >>> ranking_accuracy(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0]))
    0.3333333333333333
    """
    return (chosen > rejected).double().mean().item()


def _metrics(best: torch.Tensor, others: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """The best response's reward against each valid other of its group ([G] vs [G, K])."""
    best, others = best.detach(), others.detach()
    gaps = (best[:, None] - others)[valid]
    return {
        "rewards/chosen": best.mean().item(),
        "rewards/rejected": others[valid].mean().item(),
        "rewards/margins": gaps.mean().item(),
        "rewards/accuracies": (gaps > 0).double().mean().item(),
    }
