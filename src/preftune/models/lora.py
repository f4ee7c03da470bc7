"""LoRA adapters through peft (Hu et al. 2021, "LoRA", arXiv 2106.09685).

The reference of a LoRA run is the same model with its adapters disabled: no second copy.
"""

from __future__ import annotations

import torch


def add_lora(
    model: torch.nn.Module,
    *,
    r: int,
    alpha: float,
    dropout: float,
    target_modules,
    task_type: str = "CAUSAL_LM",
) -> torch.nn.Module:
    """Wrap `model` with fresh adapters (B = 0, so it starts equal to the base model);
    `task_type="SEQ_CLS"` (a reward model) also trains its output head in full."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, config)


def is_lora(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def adapters_disabled(model: torch.nn.Module):
    """A context in which a LoRA model computes as its base model."""
    return model.disable_adapter()
