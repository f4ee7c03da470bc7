"""Offline PPO's critic `values` [G, R, L]: a value head trained with the policy, read at every
response token from the policy pass's own hidden states (`preftune.models.value_head`)."""

from __future__ import annotations

import torch

from preftune.models.value_head import ValueHead
from preftune.train.providers.base import InputProvider, MicroBatch, RunData, register_provider

HEAD = "value_head"  # its name in checkpoints


@register_provider
class CriticValues(InputProvider):
    name = "critic_values"
    provides = ("values",)
    reads_hidden_states = True

    def __init__(self, run: RunData):
        self.head = ValueHead(run.model.config.get_text_config().hidden_size)

    def heads(self) -> dict[str, torch.nn.Module]:
        return {HEAD: self.head}

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        return {"values": micro.heads[HEAD]}
