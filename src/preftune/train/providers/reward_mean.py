"""BCO's reward shift delta (`reward_mean`, 0-d): the running mean of every micro-batch's mean
reward so far, weighted by its size (Jung et al. 2024, arXiv 2404.04656, Sec. 3)."""

from __future__ import annotations

import torch

from preftune.train.providers.base import InputProvider, MicroBatch, RunData, register_provider

BATCH_MEAN_METRIC = "bco/reward_mean"  # the loss reports its micro-batch's mean reward


class RunningMean:
    """The mean of values weighted by their batch sizes.

    >>> mean = RunningMean()
    >>> mean.update(1.0, 3); mean.update(-1.0, 1); mean.value()
    0.5
    """

    def __init__(self, total: float = 0.0, count: int = 0):
        self.total, self.count = total, count

    def update(self, value: float, weight: int) -> None:
        self.total += value * weight
        self.count += weight

    def value(self) -> float | None:
        return self.total / self.count if self.count else None

    def state(self) -> dict:
        return {"total": self.total, "count": self.count}


@register_provider
class RewardMean(InputProvider):
    """The running mean, absent until the first micro-batch reported its mean (the loss then
    uses its own batch mean)."""

    name = "reward_mean"
    provides = ("reward_mean",)

    def __init__(self, run: RunData):
        self.mean = RunningMean()

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        value = self.mean.value()
        return {} if value is None else {"reward_mean": torch.tensor(value, device=micro.device)}

    def observe(self, metrics: dict[str, float], groups: int) -> None:
        if BATCH_MEAN_METRIC in metrics:
            self.mean.update(metrics[BATCH_MEAN_METRIC], groups)

    def state_dict(self) -> dict:
        return self.mean.state()

    def load_state_dict(self, state: dict) -> None:
        self.mean = RunningMean(**state)
