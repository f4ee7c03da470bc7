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


def token_kl(out: SequenceLogps, micro: MicroBatch) -> float:
    """The mean k3 estimate of KL(policy || reference) per valid token, as GRPO logs it."""
    from preftune.losses.online import k3_kl
    from preftune.losses.ppo import masked_mean

    kl = k3_kl(flat(out.token_logps).detach(), micro.ref, micro.mask)
    return masked_mean(kl, micro.mask, dim=None).item()


@dataclass
class MicroBatch:
    """One forward's share of a generation batch and what stays fixed across its updates.

    rows: its rows of the flattened (global) batch. mask: [n, L] valid response tokens. ref /
    old: the reference's and the sampling policy's log-probs ([n, L] per token, or [G, R]
    summed), None when not needed. stand_in: a process with no group of a global micro-batch
    runs this one (another's) with weight 0, so every process runs the same passes.
    """

    batch: PreferenceBatch
    rows: slice
    mask: torch.Tensor
    ref: torch.Tensor | None = None
    old: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    stand_in: bool = False

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        """This micro-batch's rows (and token columns) of a whole-batch [N] / [N, L] tensor."""
        rows = tensor[self.rows]
        return rows[:, : self.mask.shape[1]] if rows.dim() == 2 else rows


class Objective:
    """What every online method shares: its settings, one update's weight per micro-batch
    (its loss is a mean over its groups) and no state to checkpoint."""

    per_token = True  # trains on per-token log-probs (else summed ones)
    needs_old = False  # needs the sampling policy's log-probs computed apart
    value_head = False  # trains a value head with the policy

    def __init__(self, hparams: dict, num_iterations: int, max_new_tokens: int):
        self.hparams = hparams
        self.num_iterations = num_iterations
        self.max_new_tokens = max_new_tokens

    @property
    def uses_reference(self) -> bool:
        """Whether the loss or the advantages read the reference's log-probs."""
        return True

    def select(self, groups: list[TokenizedGroup], rewards: torch.Tensor):
        """The groups (and their rewards) the update trains on."""
        return groups, rewards

    def weight(self, micro: MicroBatch, num_groups: int, total_tokens: int) -> float:
        """The micro-batch's share of the batch loss."""
        return micro.batch.num_groups / num_groups

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the objective (PPO's adaptive KL coefficient)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`'s output (nothing, unless the objective keeps state)."""


class GroupObjective(Objective):
    """GRPO and RLOO: every sample of every prompt, advantages relative to its group."""

    @property
    def needs_old(self) -> bool:
        """With one update per batch the sampling policy's log-probs are the current ones,
        detached; with more they must be computed before the first."""
        return self.num_iterations > 1

    @property
    def uses_reference(self) -> bool:
        """Only through the KL term: at beta 0 (GRPO's default) the reference forward, a third
        of a step's forward passes, is skipped, as TRL does."""
        return self.hparams["beta"] > 0

    @property
    def clip(self) -> dict[str, float]:
        """The ratio's clip range, as both losses take it."""
        return {key: self.hparams[key] for key in ("epsilon_low", "epsilon_high")}

    def loss(self, out: SequenceLogps, heads, micro: MicroBatch, advantages, total_tokens: int):
        current = flat(out.token_logps)
        old = micro.old if micro.old is not None else current.detach()
        return self.token_loss(current, old, micro, micro.part(advantages), total_tokens)


class GRPO(GroupObjective):
    """Group-relative advantages, clipped token ratio, k3 KL (Shao et al. 2024, arXiv 2402.03300)."""

    def advantages(self, rewards, old, ref, mask, old_values) -> torch.Tensor:
        from preftune.losses.online import group_advantages

        return group_advantages(rewards, scale=self.hparams["scale_rewards"]).reshape(-1)

    def token_loss(self, current, old, micro, advantages, total_tokens):
        from preftune.losses.online import clipped_policy_loss

        return clipped_policy_loss(
            current,
            old,
            advantages,
            micro.mask,
            ref_token_logps=micro.ref,
            beta=self.hparams["beta"],
            loss_type=self.hparams["loss_type"],
            max_length=self.max_new_tokens,
            total_tokens=total_tokens,
            **self.clip,
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

    def advantages(self, rewards, old, ref, mask, old_values) -> torch.Tensor:
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

        return rloo_loss(current, old, advantages, micro.mask, **self.clip)


class PPO(Objective):
    """The RLHF papers' PPO (Ziegler et al. 2019, arXiv 1909.08593; Ouyang et al. 2022, arXiv
    2203.02155): a value head on the policy, KL-shaped per-token rewards, GAE, clipped policy
    and value losses; the KL coefficient fixed or adapted towards a target KL per sample."""

    needs_old = True
    value_head = True

    def __init__(self, hparams: dict, num_iterations: int, max_new_tokens: int):
        from preftune.losses.online import AdaptiveKLController

        super().__init__(hparams, num_iterations, max_new_tokens)
        self.kl = AdaptiveKLController(
            hparams["kl_coef"], hparams["kl_target"], hparams["kl_horizon"]
        )

    def advantages(self, rewards, old, ref, mask, old_values):
        """(advantages, returns) [N, L]; then the adaptive coefficient sees the batch's KL."""
        from preftune.losses.online import ppo_advantages, sequence_logps

        h = self.hparams
        result = ppo_advantages(
            rewards.reshape(-1),
            old,
            ref,
            old_values,
            mask,
            kl_coef=self.kl.value,
            gamma=h["gamma"],
            lam=h["lam"],
            whiten_rewards=h["whiten_rewards"],
        )
        if h["adaptive_kl"]:
            kl = sequence_logps(old - ref, mask).mean().item()
            self.kl.update(kl, n_steps=mask.shape[0])
        return result

    def loss(self, out: SequenceLogps, heads, micro: MicroBatch, advantages, total_tokens: int):
        from preftune.losses.online import ppo_loss

        h = self.hparams
        token_advantages, returns = advantages
        loss, metrics = ppo_loss(
            flat(out.token_logps),
            micro.old,
            micro.part(token_advantages),
            flat(heads["value"]),
            micro.old_values,
            micro.part(returns),
            micro.mask,
            epsilon=h["epsilon"],
            vf_coef=h["vf_coef"],
            cliprange_value=h["cliprange_value"],
        )
        return loss, {**metrics, "kl_coef": self.kl.value}

    def weight(self, micro: MicroBatch, num_groups: int, total_tokens: int) -> float:
        """Its losses are token means: the micro-batch weighs by its tokens."""
        return int(micro.mask.sum()) / total_tokens

    def state_dict(self) -> dict:
        return self.kl.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.kl.load_state_dict(state)


class OnlineDPO(Objective):
    """DPO on each prompt's best-vs-worst fresh samples (Guo et al. 2024, 'Direct Language
    Model Alignment from Online AI Feedback', arXiv 2402.04792; the loss: Rafailov et al. 2023,
    eq. 7, through `preftune.losses.compute`). A group whose samples all score the same has
    no pair and is left out of the update."""

    per_token = False

    def select(self, groups: list[TokenizedGroup], rewards: torch.Tensor):
        kept, pairs = [], []
        for group, scores in zip(groups, rewards, strict=True):
            best, worst = int(scores.argmax()), int(scores.argmin())
            if scores[best] > scores[worst]:
                kept.append(_with_responses(group, [best, worst]))
                pairs.append(scores[[best, worst]])
        return kept, torch.stack(pairs) if pairs else rewards[:0, :2]

    def advantages(self, rewards, old, ref, mask, old_values) -> None:
        return None

    def loss(self, out: SequenceLogps, heads, micro: MicroBatch, advantages, total_tokens: int):
        from preftune.losses import compute

        return compute("dpo", out.logps, micro.ref, beta=self.hparams["beta"])


def _with_responses(group: TokenizedGroup, picks: list[int]) -> TokenizedGroup:
    """`group` with only the responses `picks`, in that order (chosen first)."""
    return TokenizedGroup(
        id=group.id,
        prompt_ids=group.prompt_ids,
        response_ids=[group.response_ids[i] for i in picks],
        scores=[None] * len(picks),
        labels=[None] * len(picks),
    )


OBJECTIVES = {"grpo": GRPO, "rloo": RLOO, "ppo": PPO, "online-dpo": OnlineDPO}
