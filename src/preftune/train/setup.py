"""Assemble what a run trains: the policy (full, top layers or LoRA), the loss inputs, the reference.

Reference-free methods load no reference. `reference: precompute` scores every training
sequence (and every sequence an input provider will ask for) once with the starting policy
itself (before its first update, so no second copy) and caches the result on disk;
`reference: live` keeps a frozen copy, or, for LoRA, runs the policy with its adapters disabled.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup
from preftune.models.loading import load_model, weights_label
from preftune.models.lora import adapters_disabled, add_lora, is_lora
from preftune.models.reference import LiveReference, model_fingerprint, precompute_reference
from preftune.models.trainable import train_top_layers
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
        # Only the training pass recomputes: the decoder layers skip checkpointing in eval mode
        # or without grad, which is how the reference (a frozen copy, the policy before any
        # update, or the LoRA policy with its adapters off) always runs.
        model.activation_checkpointing_enable({"use_reentrant": False})
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
    reference = None
    if spec.needs_reference:
        sequences = groups + [s for provider in providers for s in provider.reference_sequences()]
        reference = build_reference(config, model, sequences, pad_token_id)
    return LossInputs(spec, groups, providers, reference=reference, pad_token_id=pad_token_id)


def build_reference(config: TrainConfig, model, sequences: list[TokenizedGroup], pad_token_id: int):
    """The reference `config.reference` asks for: a live one, or `sequences` precomputed."""
    lora = is_lora(model)
    if config.reference == "live":
        if lora:
            return LiveReference(model, pad_token_id, context=lambda: adapters_disabled(model))
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
        return LiveReference(frozen, pad_token_id)
    precision = weights_label(config.dtype, config.quantization)  # a 4-bit reference differs
    fingerprint = model_fingerprint(config.model, precision, config.attn_implementation)
    with adapters_disabled(model) if lora else nullcontext():
        return precompute_reference(
            model,
            sequences,
            fingerprint,
            groups_per_forward=config.groups_per_forward,
            pad_token_id=pad_token_id,
            shard=(process_index(), process_count()),
            merge=merge_entries,
            write=process_index() == 0,
        )
