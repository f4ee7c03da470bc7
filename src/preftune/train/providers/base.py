"""The provider contract: one class computes one or more of a method's extra loss inputs.

A method declares the extra inputs its loss takes (`MethodSpec.extra_inputs`); each input's
declaration (`preftune.losses.registry.EXTRA_INPUTS`) names its layout and its provider, a
subclass of `InputProvider` registered here under that name. The trainer builds the providers
a method needs and asks each, for every micro-batch, for its tensors; the loop saves and
restores their state in checkpoints. Neither knows which method or input it is serving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from preftune.config import TrainConfig
from preftune.data.batch import PreferenceBatch, TokenizedGroup
from preftune.losses.registry import EXTRA_INPUTS, MethodSpec
from preftune.models.engine import SequenceLogps


@dataclass(frozen=True)
class RunData:
    """What a provider may prepare from before training: the run's config, its tokenized
    groups (indexed like the trainer's), the policy model (unwrapped, before training) and the
    tokenizer's padding id."""

    config: TrainConfig
    groups: list[TokenizedGroup]
    model: torch.nn.Module
    pad_token_id: int


@dataclass(frozen=True)
class MicroBatch:
    """One process's micro-batch, as a provider sees it.

    `indices` are the groups' positions in `RunData.groups` (`groups` the groups themselves);
    `policy` and `heads` the policy pass over `batch` (with gradients), `reference` the
    reference's (None for a reference-free method); `run_policy(batch)` and
    `run_reference(batch)` score other sequences (e.g. mismatched pairs). `device` and `dtype`
    are the policy log-probs'.
    """

    batch: PreferenceBatch
    indices: list[int]
    groups: list[TokenizedGroup]
    policy: SequenceLogps
    heads: dict[str, torch.Tensor]
    reference: SequenceLogps | None
    run_policy: Callable[[PreferenceBatch], tuple[SequenceLogps, dict]]
    run_reference: Callable[[PreferenceBatch], SequenceLogps] | None
    device: torch.device
    dtype: torch.dtype


class InputProvider:
    """Computes the extra inputs `provides` for each micro-batch.

    Class attributes say what the policy pass must compute for it: `per_token` (per-token
    log-probs of the policy and the reference), `collision` (the engine's log collision
    statistic) and `reads_hidden_states` (its `heads` read the policy's hidden states; refused
    under ZeRO-3). Override `provide`, and where needed the other methods.
    """

    name: ClassVar[str]
    provides: ClassVar[tuple[str, ...]]
    per_token: ClassVar[bool] = False
    collision: ClassVar[bool] = False
    reads_hidden_states: ClassVar[bool] = False

    def __init__(self, run: RunData):
        """Prepare from the run's data before training (the default needs nothing)."""

    def reference_sequences(self) -> list[TokenizedGroup]:
        """Sequences beyond the training groups whose reference log-probs it will ask for."""
        return []

    def heads(self) -> dict[str, torch.nn.Module]:
        """Modules trained with the policy, each run on the hidden state of every response
        token (hidden [..., H] -> [...]); `MicroBatch.heads` holds their outputs by name."""
        return {}

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        """Its inputs for this micro-batch (an optional one may be left out)."""
        raise NotImplementedError

    def observe(self, metrics: dict[str, float], groups: int) -> None:
        """After each micro-batch: the loss's metrics and the global micro-batch's size."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly (plain JSON values)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


PROVIDERS: dict[str, type[InputProvider]] = {}


def register_provider(cls: type[InputProvider]) -> type[InputProvider]:
    """Class decorator: make `cls` the provider named `cls.name`."""
    if cls.name in PROVIDERS:
        raise ValueError(f"input provider '{cls.name}' is already registered")
    PROVIDERS[cls.name] = cls
    return cls


def provider_classes(spec: MethodSpec) -> list[type[InputProvider]]:
    """The providers of every extra input `compute` takes for `spec`, each once, in order."""
    classes: list[type[InputProvider]] = []
    for input_name in spec.inputs:
        provider = EXTRA_INPUTS[input_name].provider
        if provider not in PROVIDERS:
            raise LookupError(
                f"method '{spec.name}': no input provider '{provider}' is registered for "
                f"'{input_name}' (see preftune.train.providers)"
            )
        if PROVIDERS[provider] not in classes:
            classes.append(PROVIDERS[provider])
    return classes
