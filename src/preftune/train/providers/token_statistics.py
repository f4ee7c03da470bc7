"""Per-token statistics of the policy and reference passes: offline PPO's `token_logps`,
`token_mask` and `token_ref_logps` [G, R, L], and WPO's `log_collision` [G, R] (per
response, the sum over its tokens of log sum_v p(v)^2, from the logits the policy pass forms
anyway: no measurable cost, see `preftune.models.chunked`)."""

from __future__ import annotations

import torch

from preftune.train.providers.base import InputProvider, MicroBatch, register_provider


@register_provider
class TokenLogps(InputProvider):
    """Per-token log-probs of the policy (with gradients) and, for a method with a reference,
    of the reference, with the mask of real tokens."""

    name = "token_logps"
    provides = ("token_logps", "token_mask", "token_ref_logps")
    per_token = True

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        provided = {"token_logps": micro.policy.token_logps, "token_mask": micro.policy.token_mask}
        if micro.reference is not None:
            reference = micro.reference.token_logps.to(micro.device, micro.dtype)
            provided["token_ref_logps"] = reference
        return provided


@register_provider
class LogCollision(InputProvider):
    name = "log_collision"
    provides = ("log_collision",)
    collision = True

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        return {"log_collision": micro.policy.log_collision}
