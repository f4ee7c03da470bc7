"""KTO's mismatched pairs: each example's prompt with another example's response, whose
policy and reference log-probs give KTO's KL reference point (`kl_policy_logps`,
`kl_ref_logps`, [M]). The pairs are fixed once per data set, so their reference log-probs are
precomputed and cached like any other sequence."""

from __future__ import annotations

import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import MethodDataError
from preftune.train.providers.base import InputProvider, MicroBatch, RunData, register_provider


def mismatched_pairs(
    groups: list[TokenizedGroup], seed: int, max_length: int
) -> list[TokenizedGroup]:
    """For each group, its prompt with the response of another group with a different prompt.

    Partners follow a seeded shuffle: each group takes the first group after it (cyclically)
    whose prompt differs. The response is cut so prompt + response fits `max_length`.
    """
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    position = {index: p for p, index in enumerate(order)}
    companions = []
    for i, group in enumerate(groups):
        partner = next(
            (
                groups[order[(position[i] + step) % len(order)]]
                for step in range(1, len(order))
                if groups[order[(position[i] + step) % len(order)]].prompt_ids != group.prompt_ids
            ),
            None,
        )
        if partner is None:
            raise MethodDataError(
                "KTO's KL estimate needs mismatched pairs: at least 2 examples with different "
                f"prompts; the data has {len(groups)} example(s), all with the same prompt"
            )
        room = max(1, max_length - len(group.prompt_ids))
        companions.append(
            TokenizedGroup(
                id=f"{group.id}|kl|{partner.id}",
                prompt_ids=group.prompt_ids,
                response_ids=[partner.response_ids[0][:room]],
                scores=[None],
                labels=[None],
            )
        )
    return companions


@register_provider
class MismatchedPairs(InputProvider):
    """Each micro-batch's mismatched pairs scored by the policy (no gradient) and reference."""

    name = "mismatched_pairs"
    provides = ("kl_policy_logps", "kl_ref_logps")

    def __init__(self, run: RunData):
        self.companions = mismatched_pairs(run.groups, run.config.seed, run.config.max_length)

    def reference_sequences(self) -> list[TokenizedGroup]:
        return self.companions

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        batch = collate([self.companions[i] for i in micro.indices])
        with torch.no_grad():
            policy, _ = micro.run_policy(batch)
        reference = micro.run_reference(batch)
        return {
            "kl_policy_logps": policy.logps[:, 0].detach(),
            "kl_ref_logps": reference.logps[:, 0].to(micro.device),
        }
