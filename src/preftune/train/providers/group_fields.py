"""Per-group fields of the data: ODPO's `margins` [G] and TODO's `ties` [G] bool."""

from __future__ import annotations

import torch

from preftune.train.providers.base import InputProvider, MicroBatch, register_provider


@register_provider
class GroupFields(InputProvider):
    """Whether the data marks each pair a tie, and its margins (0 where a group has none; left
    out when no group of the micro-batch has one)."""

    name = "group_fields"
    provides = ("margins", "ties")

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        groups, device = micro.groups, micro.device
        ties = torch.tensor([group.tie for group in groups], dtype=torch.bool, device=device)
        if all(group.margin is None for group in groups):
            return {"ties": ties}
        margins = [group.margin or 0.0 for group in groups]
        return {"ties": ties, "margins": torch.tensor(margins, dtype=torch.float64, device=device)}
