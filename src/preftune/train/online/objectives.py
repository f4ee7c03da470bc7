"""What each online method does with a scored generation batch: which groups it trains on,
its advantages (once per batch) and its loss on a micro-batch (at each of the batch's
num_iterations updates).

Token tensors are [N, L], the groups flattened prompt-major (row p * G + g), as
`preftune.losses.online` takes them. The math lives there and in `preftune.losses.compute`;
this module only arranges the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preftune.data.batch import PreferenceBatch, TokenizedGroup
from preftune.models.engine import SequenceLogps


def flat(tensor: torch.Tensor) -> torch.Tensor:
    """[G, R, L] -> [G * R, L]."""
    return tensor.reshape(-1, tensor.shape[-1])


@dataclass
class MicroBatch:
    """One forward's share of a generation batch and what stays fixed across its updates.

    rows: its rows of the flattened batch. mask: [n, L] valid response tokens. ref / old: the
    reference's and the sampling policy's log-probs ([n, L] per token, or [G, R] summed), None
    when not needed.
    """

    batch: PreferenceBatch
    rows: slice
    mask: torch.Tensor
    ref: torch.Tensor | None = None
    old: torch.Tensor | None = None


class GroupObjective:
    """GRPO and RLOO: every sample of every prompt, advantages relative to its group."""

    per_token = True

    def __init__(self, hparams: dict, num_iterations: int, max_new_tokens: int):
        self.hparams = hparams
        self.num_iterations = num_iterations
        self.max_new_tokens = max_new_tokens

    @property
    def needs_old(self) -> bool:
        """Whether the sampling policy's log-probs are needed apart from the first update's
        (where they equal the current ones, detached)."""
        return self.num_iterations > 1

    def select(self, groups: list[TokenizedGroup], rewards: torch.Tensor):
        return groups, rewards

    def loss(self, out: SequenceLogps, micro: MicroBatch, advantages, total_tokens: int):
        current = flat(out.token_logps)
        old = micro.old if micro.old is not None else current.detach()
        return self.token_loss(current, old, micro, advantages[micro.rows], total_tokens)

    def weight(self, micro: MicroBatch, num_groups: int, total_tokens: int) -> float:
        """The micro-batch's share of the batch loss (its loss is a mean over its groups)."""
        return micro.batch.num_groups / num_groups


class GRPO(GroupObjective):
    """Group-relative advantages, clipped token ratio, k3 KL (Shao et al. 2024, arXiv 2402.03300)."""

    def advantages(self, rewards, old, ref, mask) -> torch.Tensor:
        from preftune.losses.online import group_advantages

        return group_advantages(rewards, scale=self.hparams["scale_rewards"]).reshape(-1)

    def token_loss(self, current, old, micro, advantages, total_tokens):
        from preftune.losses.online import clipped_policy_loss

        h = self.hparams
        return clipped_policy_loss(
            current,
            old,
            advantages,
            micro.mask,
            ref_token_logps=micro.ref,
            beta=h["beta"],
            epsilon_low=h["epsilon_low"],
            epsilon_high=h["epsilon_high"],
            loss_type=h["loss_type"],
            max_length=self.max_new_tokens,
            total_tokens=total_tokens,
        )

    def weight(self, micro: MicroBatch, num_groups: int, total_tokens: int) -> float:
        """Token-level losses: "dapo" divides by the batch's tokens already; "bnpo" by the
        micro-batch's, so it weighs by its tokens; the others are means over sequences."""
        loss_type = self.hparams["loss_type"]
        if loss_type == "dapo":
            return 1.0
        if loss_type == "bnpo":
            return int(micro.mask.sum()) / total_tokens
        return super().weight(micro, num_groups, total_tokens)


class RLOO(GroupObjective):
    """REINFORCE with a leave-one-out baseline on KL-shaped rewards (Ahmadian et al. 2024,
    arXiv 2402.14740); the KL term needs the sampling policy's log-probs."""

    needs_old = True

    def advantages(self, rewards, old, ref, mask) -> torch.Tensor:
        from preftune.losses.online import rloo_advantages

        h = self.hparams
        return rloo_advantages(
            rewards,
            old,
            mask,
            ref_token_logps=ref,
            beta=h["beta"],
            normalize=h["normalize_advantages"],
        )

    def token_loss(self, current, old, micro, advantages, total_tokens):
        from preftune.losses.online import rloo_loss

        h = self.hparams
        return rloo_loss(
            current,
            old,
            advantages,
            micro.mask,
            epsilon_low=h["epsilon_low"],
            epsilon_high=h["epsilon_high"],
        )


class OnlineDPO:
    """DPO on each prompt's best-vs-worst fresh samples (Guo et al. 2024, 'Direct Language
    Model Alignment from Online AI Feedback', arXiv 2402.04792; the loss: Rafailov et al. 2023,
    eq. 7, through `preftune.losses.compute`). A group whose samples all score the same has
    no pair and is left out of the update."""

    per_token = False
    needs_old = False

    def __init__(self, hparams: dict, num_iterations: int, max_new_tokens: int):
        self.hparams = hparams

    def select(self, groups: list[TokenizedGroup], rewards: torch.Tensor):
        kept, pairs = [], []
        for group, scores in zip(groups, rewards, strict=True):
            best, worst = int(scores.argmax()), int(scores.argmin())
            if scores[best] > scores[worst]:
                kept.append(_with_responses(group, [best, worst]))
                pairs.append(scores[[best, worst]])
        return kept, torch.stack(pairs) if pairs else rewards[:0, :2]

    def advantages(self, rewards, old, ref, mask) -> None:
        return None

    def loss(self, out: SequenceLogps, micro: MicroBatch, advantages, total_tokens: int):
        from preftune.losses import compute

        return compute("dpo", out.logps, micro.ref, beta=self.hparams["beta"])

    def weight(self, micro: MicroBatch, num_groups: int, total_tokens: int) -> float:
        return micro.batch.num_groups / num_groups


def _with_responses(group: TokenizedGroup, picks: list[int]) -> TokenizedGroup:
    """`group` with only the responses `picks`, in that order (chosen first)."""
    return TokenizedGroup(
        id=group.id,
        prompt_ids=group.prompt_ids,
        response_ids=[group.response_ids[i] for i in picks],
        scores=[None] * len(picks),
        labels=[None] * len(picks),
    )


OBJECTIVES = {"grpo": GRPO, "rloo": RLOO, "online-dpo": OnlineDPO}
