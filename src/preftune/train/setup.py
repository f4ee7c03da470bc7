"""Assemble what a run trains: the policy (full, top layers or LoRA), the loss inputs, the reference.

Reference-free methods load no reference. `reference: precompute` scores every training
sequence (and every sequence an input provider will ask for) once with the starting policy
itself (before its first update, so no second copy) and caches the result on disk;
`reference: live` keeps a frozen copy, or, for LoRA, runs the policy with its adapters disabled.
With `trainable_layers`, the frozen bottom layers' output is cached (`trunk_cache`,
`preftune.models.trunk`): from the reference pass where there is one, else a trunk-only pass.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext

import torch

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup
from preftune.errors import ConfigError
from preftune.models.loading import cache_dir, load_model, weights_label
from preftune.models.lora import adapters_disabled, add_lora, is_lora
from preftune.models.prefix_attention import recompute_with_the_same_attention
from preftune.models.reference import (
    LiveReference,
    PrecomputedReference,
    model_fingerprint,
    precompute_reference,
)
from preftune.models.trainable import train_top_layers
from preftune.models.trunk import (
    DEFAULT_CAP_BYTES,
    TrunkStates,
    estimated_bytes,
    folder_bytes,
    frozen_depth,
    self_check,
    unsupported_reason,
)
from preftune.train.allocator import return_freed_memory_promptly
from preftune.train.inputs import LossInputs
from preftune.train.processes import merge_entries, process_count, process_index
from preftune.train.providers import RunData, provider_classes


def build_policy(config: TrainConfig, *, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model to train (with adapters or frozen lower layers); `model` is used instead of
    loading `config.model`."""
    if model is None:
        model = load_model(
            config.model,
            config.dtype,
            config.attn_implementation,
            quantization=config.quantization,
        )
    if config.gradient_checkpointing:
        return_freed_memory_promptly()  # else freed activations stay resident (allocator.py)
        # Only the training pass recomputes: the decoder layers skip checkpointing in eval mode
        # or without grad, which is how the reference (a frozen copy, the policy before any
        # update, or the LoRA policy with its adapters off) always runs.
        model.activation_checkpointing_enable(
            {"use_reentrant": False, "context_fn": recompute_with_the_same_attention}
        )
    if config.lora is not None:
        return add_lora(model, **config.lora.model_dump())
    if config.trainable_layers is not None:
        train_top_layers(model, config.trainable_layers)
    return model


def build_loss_inputs(
    config: TrainConfig,
    spec,
    model: torch.nn.Module,
    groups: list[TokenizedGroup],
    *,
    pad_token_id: int,
) -> LossInputs:
    """The method's input providers, prepared before training, and its reference."""
    run = RunData(config, groups, model, pad_token_id)
    providers = [provider(run) for provider in provider_classes(spec)]
    sequences = groups + [s for provider in providers for s in provider.reference_sequences()]
    trunk = build_trunk(config, model, sequences)
    reference = None
    if spec.needs_reference:
        reference = build_reference(config, model, sequences, pad_token_id, trunk=trunk)
    if trunk is not None:
        # a precomputed reference is this very model's full pass (no update yet)
        full_pass = reference if isinstance(reference, PrecomputedReference) else None
        trunk = _checked_trunk(config, model, trunk, sequences, pad_token_id, full_pass)
    return LossInputs(
        spec, groups, providers, reference=reference, pad_token_id=pad_token_id, trunk=trunk
    )


def _fingerprint(config: TrainConfig) -> str:
    precision = weights_label(config.dtype, config.quantization)  # a 4-bit reference differs
    return model_fingerprint(config.model, precision, config.attn_implementation)


def _trunk_refusal(config: TrainConfig, model: torch.nn.Module) -> str | None:
    """Why the frozen trunk cannot be cached in this run, or None."""
    from accelerate.state import PartialState

    if config.online is not None:
        return "online training scores fresh samples every step"
    if config.gradient_checkpointing:
        return "gradient_checkpointing is on (not verified with the cache)"
    if config.mixed_precision != "no":
        return "mixed_precision computes the trunk under autocast, the cache does not"
    if PartialState().distributed_type.value != "NO":
        return "a distributed backend runs the policy (the cache is for one process)"
    return unsupported_reason(model)


def build_trunk(config: TrainConfig, model, sequences: list[TokenizedGroup]) -> TrunkStates | None:
    """The frozen trunk's cache for `sequences` when `config.trunk_cache` asks for it and the
    run allows it (auto: also when it fits `DEFAULT_CAP_BYTES`), else None."""
    if config.trunk_cache == "off" or config.trainable_layers is None:
        return None
    reason = _trunk_refusal(config, model)
    if reason is not None:
        if config.trunk_cache == "on":
            raise ConfigError(f"trunk_cache: on, but {reason}")
        warnings.warn(f"trunk_cache: every layer runs each step: {reason}", stacklevel=2)
        return None
    depth = frozen_depth(model)
    folder = cache_dir() / "trunk" / _fingerprint(config) / f"depth-{depth}"
    size = estimated_bytes(model, sequences) + folder_bytes(folder)
    if config.trunk_cache == "auto" and size > DEFAULT_CAP_BYTES:
        warnings.warn(
            f"trunk_cache: not used, its states would take {size / 2**30:.2f} GiB in memory "
            f"(auto caps them at {DEFAULT_CAP_BYTES / 2**30:g} GiB, {folder} included); set "
            "trunk_cache: on to use it anyway",
            stacklevel=2,
        )
        return None
    return TrunkStates(folder, depth)


def _checked_trunk(
    config, model, trunk: TrunkStates, sequences, pad_token_id, full_pass=None
) -> TrunkStates | None:
    """Compute the states still missing, then compare a micro-batch both ways (`self_check`,
    the full pass from `full_pass` when given): the trunk when they agree; else None with a
    warning (auto) or an error (on)."""
    trunk.fill(
        model, sequences, groups_per_forward=config.groups_per_forward, pad_token_id=pad_token_id
    )
    mismatch = self_check(model, trunk, sequences, pad_token_id, full_pass=full_pass)
    if mismatch is None:
        return trunk
    message = f"trunk_cache: the cached path does not reproduce this model's log-probs: {mismatch}"
    if config.trunk_cache == "on":
        raise ConfigError(message)
    warnings.warn(f"{message}; every layer runs each step", stacklevel=2)
    return None


def build_reference(
    config: TrainConfig,
    model,
    sequences: list[TokenizedGroup],
    pad_token_id: int,
    *,
    trunk: TrunkStates | None = None,
):
    """The reference `config.reference` asks for: a live one, or `sequences` precomputed
    (keeping the frozen trunk's states in `trunk` from the same passes)."""
    lora = is_lora(model)
    if config.reference == "live":
        if lora:
            return LiveReference(model, pad_token_id, context=lambda: adapters_disabled(model))
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
        return LiveReference(frozen, pad_token_id)
    with adapters_disabled(model) if lora else nullcontext():
        return precompute_reference(
            model,
            sequences,
            _fingerprint(config),
            groups_per_forward=config.groups_per_forward,
            pad_token_id=pad_token_id,
            shard=(process_index(), process_count()),
            merge=merge_entries,
            write=process_index() == 0,
            trunk=trunk,
        )
