"""Per-token statistics of the policy and reference passes: offline PPO's `token_logps`,
`token_mask` and `token_ref_logps` [G, R, L], and WPO's `log_collision` [G, R] (per
response, the sum over its tokens of log sum_v p(v)^2, from the logits the policy pass forms
anyway: no measurable cost, see `preftune.models.chunked`)."""

from __future__ import annotations

import torch

from preftune.train.providers.base import InputProvider, MicroBatch, register_provider


@register_provider
class PolicyTokens(InputProvider):
    name = "policy_tokens"
    provides = ("token_logps", "token_mask")
    per_token = True

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        return {"token_logps": micro.policy.token_logps, "token_mask": micro.policy.token_mask}


@register_provider
class ReferenceTokens(InputProvider):
    name = "reference_tokens"
    provides = ("token_ref_logps",)
    per_token = True

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        return {"token_ref_logps": micro.reference.token_logps.to(micro.device, micro.dtype)}


@register_provider
class LogCollision(InputProvider):
    name = "log_collision"
    provides = ("log_collision",)
    collision = True

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        return {"log_collision": micro.policy.log_collision}
