"""Per-pair fields of the data: ODPO's `margins` [G] and TODO's `ties` [G] bool."""

from __future__ import annotations

import torch

from preftune.train.providers.base import InputProvider, MicroBatch, register_provider


@register_provider
class Margins(InputProvider):
    """The data's margins, 0 where a group has none; left out when no group has one."""

    name = "margins"
    provides = ("margins",)

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        margins = [group.margin for group in micro.groups]
        if all(margin is None for margin in margins):
            return {}
        values = [margin or 0.0 for margin in margins]
        return {"margins": torch.tensor(values, dtype=torch.float64, device=micro.device)}


@register_provider
class Ties(InputProvider):
    """Whether the data marks each pair a tie."""

    name = "ties"
    provides = ("ties",)

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        ties = [group.tie for group in micro.groups]
        return {"ties": torch.tensor(ties, dtype=torch.bool, device=micro.device)}
