"""Assemble what a run trains: the policy (full, top layers or LoRA), the critic, the reference.

Reference-free methods load no reference. `reference: precompute` scores every training
sequence once with the starting policy itself (before its first update, so no second copy)
and caches the result on disk; `reference: live` keeps a frozen copy, or, for LoRA, runs the
policy with its adapters disabled.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup
from preftune.models.embeddings import embed_prompts
from preftune.models.loading import load_model, weights_label
from preftune.models.lora import adapters_disabled, add_lora, is_lora
from preftune.models.reference import LiveReference, model_fingerprint, precompute_reference
from preftune.models.trainable import train_top_layers
from preftune.models.value_head import ValueHead
from preftune.train.distributed import merge_entries, process_count, process_index
from preftune.train.inputs import KL_INPUTS, LossInputs, RunningMean, mismatched_pairs


def build_policy(
    config: TrainConfig, spec, *, model: torch.nn.Module | None = None
) -> tuple[torch.nn.Module, ValueHead | None]:
    """The model to train (with adapters or frozen lower layers) and, for PPO, its value head;
    `model` is used instead of loading `config.model`."""
    if model is None:
        model = load_model(
            config.model,
            config.dtype,
            config.attn_implementation,
            quantization=config.quantization,
        )
    if config.lora is not None:
        lora = config.lora
        model = add_lora(
            model,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
        )
    elif config.trainable_layers is not None:
        train_top_layers(model, config.trainable_layers)
    value_head = None
    if "values" in spec.extra_inputs:
        value_head = ValueHead(model.config.get_text_config().hidden_size)
    return model, value_head


def build_loss_inputs(
    config: TrainConfig,
    spec,
    model: torch.nn.Module,
    groups: list[TokenizedGroup],
    *,
    pad_token_id: int,
) -> LossInputs:
    """Everything the method declares beyond the policy's log-probs, computed before training."""
    extra = set(spec.extra_inputs)
    companions = None
    if extra & set(KL_INPUTS):
        companions = mismatched_pairs(groups, config.seed, config.max_length)
    reference = None
    if spec.needs_reference:
        reference = _reference(config, model, groups + (companions or []), pad_token_id)
    embeddings = None
    if "prompt_embeddings" in extra:
        embeddings = embed_prompts([g.prompt_text for g in groups], config.prompt_embedder)
    return LossInputs(
        spec,
        reference=reference,
        pad_token_id=pad_token_id,
        companions=companions,
        embeddings=embeddings,
        reward_mean=RunningMean() if "reward_mean" in extra else None,
    )


def _reference(config: TrainConfig, model, sequences: list[TokenizedGroup], pad_token_id: int):
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
