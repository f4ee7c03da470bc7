"""Everything a method's loss takes for one micro-batch: log-probs, data tensors and extras.

`compute`'s keyword arguments are the policy's log-probs and token counts, the reference's
log-probs (for methods with a reference, precomputed or live), the data's scores, labels and
mask, and the method's extra inputs, each computed by its provider
(`preftune.train.providers`). So the loop is the same for every method.
"""

from __future__ import annotations

import torch

from preftune.data.batch import PreferenceBatch, TokenizedGroup
from preftune.train.providers import InputProvider, MicroBatch


class LossInputs:
    """Builds `compute(...)`'s keyword arguments for a method from a micro-batch.

    `groups` are the run's groups (micro-batches name theirs by index), `providers` the
    method's input providers, `reference` a callable (batch, per_token) -> SequenceLogps,
    `trunk` the frozen trunk's cache the policy pass reads (`preftune.models.trunk`) or None.
    """

    def __init__(
        self,
        spec,
        groups: list[TokenizedGroup],
        providers: list[InputProvider],
        *,
        reference=None,
        pad_token_id: int = 0,
        trunk=None,
    ):
        self.spec = spec
        self.groups = groups
        self.providers = providers
        self.reference = reference
        self.pad_token_id = pad_token_id
        self.trunk = trunk
        self.accepted = set(spec.inputs)  # a provider may offer more than the method takes
        self.per_token = any(provider.per_token for provider in providers)
        self.collision = any(provider.collision for provider in providers)

    def heads(self) -> dict[str, torch.nn.Module]:
        """Every provider's modules trained with the policy, by name."""
        return {
            name: head for provider in self.providers for name, head in provider.heads().items()
        }

    def __call__(self, policy_forward, batch: PreferenceBatch, indices: list[int]) -> dict:
        """Inputs for this process's micro-batch; `policy_forward` is the (prepared)
        `preftune.models.policy.PolicyForward`. Several processes gather them after."""
        device = next(policy_forward.parameters()).device
        policy, heads = policy_forward(
            batch,
            per_token=self.per_token,
            collision=self.collision,
            pad_token_id=self.pad_token_id,
        )
        dtype = policy.logps.dtype
        kwargs = {
            "policy_logps": policy.logps,
            "ref_logps": None,
            "lengths": policy.lengths,
            "scores": _to(batch.scores, device, dtype),
            "labels": _to(batch.labels, device),
            "mask": batch.mask.to(device),
        }
        reference = None
        if self.spec.needs_reference:
            reference = self.reference(batch, per_token=self.per_token)
            kwargs["ref_logps"] = reference.logps.to(device, dtype)
        micro = MicroBatch(
            batch=batch,
            indices=indices,
            groups=[self.groups[i] for i in indices],
            policy=policy,
            heads=heads,
            reference=reference,
            run_policy=lambda other: policy_forward(other, pad_token_id=self.pad_token_id),
            run_reference=self.reference,
            device=device,
            dtype=dtype,
        )
        for provider in self.providers:
            provided = provider.provide(micro)
            kwargs.update({k: v for k, v in provided.items() if k in self.accepted})
        return kwargs

    def observe(self, metrics: dict, groups: int) -> None:
        """After a micro-batch: each provider sees its metrics (e.g. to update a running mean)."""
        for provider in self.providers:
            provider.observe(metrics, groups)

    def state_dict(self) -> dict:
        """The providers' states by provider name (those that have one), for checkpoints."""
        states = {provider.name: provider.state_dict() for provider in self.providers}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, state: dict) -> None:
        for provider in self.providers:
            if provider.name in state:
                provider.load_state_dict(state[provider.name])


def _to(tensor: torch.Tensor | None, device, dtype=None) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.to(device, dtype) if dtype is not None else tensor.to(device)
