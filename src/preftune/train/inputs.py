"""Everything a method's loss takes for one micro-batch: log-probs, data tensors and extras.

A method declares what it needs in its registry entry (`needs_reference`, `extra_inputs`); this
module provides exactly that, so the loop is the same for every method:
- reference log-probs (precomputed or live) for methods with a reference;
- KTO's mismatched pairs (`kl_policy_logps`, `kl_ref_logps`): each example's prompt with
  another example's response, fixed once per data set so their reference log-probs can be
  precomputed and cached like any other sequence;
- RPO's `prompt_embeddings` (L2-normalised sentence embeddings of each group's prompt);
- offline PPO's per-token log-probs, reference log-probs, mask and critic `values`;
- BCO's running reward mean (`reward_mean`), updated after every micro-batch;
- the data's `margins` and `ties`;
- for pairwise methods, `log_collision` (what `weighting: wpo`'s aligned weight divides by):
  per response, the sum over its tokens of log sum_v p(v)^2, from the logits the policy pass
  forms anyway (no measurable cost: see `preftune.models.chunked`).
"""

from __future__ import annotations

import torch

from preftune.data.batch import PreferenceBatch, TokenizedGroup, collate
from preftune.errors import MethodDataError

KL_INPUTS = ("kl_policy_logps", "kl_ref_logps")
TOKEN_INPUTS = ("token_logps", "token_ref_logps", "token_mask", "values")
BCO_REWARD_MEAN_METRIC = "bco/reward_mean"


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


class RunningMean:
    """BCO's reward shift δ: the mean of every batch's mean reward so far, weighted by size."""

    def __init__(self, total: float = 0.0, count: int = 0):
        self.total, self.count = total, count

    def update(self, value: float, weight: int) -> None:
        self.total += value * weight
        self.count += weight

    def value(self) -> float | None:
        return self.total / self.count if self.count else None

    def state(self) -> dict:
        return {"total": self.total, "count": self.count}


class LossInputs:
    """Builds `compute(...)`'s keyword arguments for a method from a micro-batch."""

    def __init__(
        self,
        spec,
        *,
        reference=None,
        pad_token_id: int = 0,
        companions: list[TokenizedGroup] | None = None,
        embeddings: dict[str, torch.Tensor] | None = None,
        reward_mean: RunningMean | None = None,
    ):
        self.spec = spec
        self.extra = set(spec.extra_inputs)
        self.reference = reference
        self.pad_token_id = pad_token_id
        self.companions = companions
        self.embeddings = embeddings
        self.reward_mean = reward_mean
        self.collision = spec.view == "pair"  # for WPO's weighting, when a run uses it

    @property
    def per_token(self) -> bool:
        return bool(self.extra & set(TOKEN_INPUTS))

    def __call__(self, policy_forward, batch: PreferenceBatch, indices: list[int]) -> dict:
        """Inputs for this process's micro-batch; `policy_forward` is the (prepared)
        `preftune.train.distributed.PolicyForward`. Several processes gather them after."""
        device = next(policy_forward.parameters()).device
        policy, values = policy_forward(
            batch,
            per_token=self.per_token,
            collision=self.collision,
            pad_token_id=self.pad_token_id,
        )
        kwargs = {
            "policy_logps": policy.logps,
            "ref_logps": None,
            "lengths": policy.lengths,
            "scores": _to(batch.scores, device, policy.logps.dtype),
            "labels": _to(batch.labels, device),
            "mask": batch.mask.to(device),
        }
        if self.spec.needs_reference:
            reference = self.reference(batch, per_token=self.per_token)
            kwargs["ref_logps"] = reference.logps.to(device, policy.logps.dtype)
            if "token_ref_logps" in self.extra:
                kwargs["token_ref_logps"] = reference.token_logps.to(device, policy.logps.dtype)
        if "token_logps" in self.extra:
            kwargs["token_logps"] = policy.token_logps
        if "token_mask" in self.extra:
            kwargs["token_mask"] = policy.token_mask
        if "values" in self.extra:
            kwargs["values"] = values
        if self.extra & set(KL_INPUTS):
            kwargs.update(self._kl_inputs(policy_forward, indices, device))
        if "prompt_embeddings" in self.extra:
            rows = [self.embeddings[text] for text in batch.extras["prompt_texts"]]
            kwargs["prompt_embeddings"] = torch.stack(rows).to(device)
        if "reward_mean" in self.extra and self.reward_mean.value() is not None:
            kwargs["reward_mean"] = torch.tensor(self.reward_mean.value(), device=device)
        for name in ("margins", "ties"):
            if name in self.extra and name in batch.extras:
                kwargs[name] = batch.extras[name].to(device)
        if self.collision:
            kwargs["log_collision"] = policy.log_collision
        return kwargs

    def _kl_inputs(self, policy_forward, indices: list[int], device) -> dict:
        batch = collate([self.companions[i] for i in indices])
        with torch.no_grad():
            policy, _ = policy_forward(batch, pad_token_id=self.pad_token_id)
        reference = self.reference(batch)
        return {
            "kl_policy_logps": policy.logps[:, 0].detach(),
            "kl_ref_logps": reference.logps[:, 0].to(device),
        }

    def observe(self, metrics: dict, groups: int) -> None:
        """After a micro-batch: fold BCO's batch reward mean into the running mean."""
        if self.reward_mean is not None and BCO_REWARD_MEAN_METRIC in metrics:
            self.reward_mean.update(metrics[BCO_REWARD_MEAN_METRIC], groups)


def _to(tensor: torch.Tensor | None, device, dtype=None) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.to(device, dtype) if dtype is not None else tensor.to(device)
