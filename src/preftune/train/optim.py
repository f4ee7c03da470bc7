"""The optimizer and learning-rate schedule (defaults as in the DPO authors' code: RMSprop,
lr 5e-7, linear warm-up)."""

from __future__ import annotations

import math

import torch

from preftune.config import TrainConfig
from preftune.errors import TrainingError

OPTIMIZERS = {
    "rmsprop": torch.optim.RMSprop,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}
FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW kernel runs (floating-point only)


def build_optimizer(parameters: list[torch.nn.Parameter], config: TrainConfig):
    """`config.optimizer` over `parameters`. AdamW runs torch's fused kernel (one pass over
    each parameter instead of six elementwise ops) where it has one for the parameters' device
    and dtype: the same update to within float rounding (~1e-7 relative)."""
    optimizer = OPTIMIZERS[config.optimizer]
    fused = optimizer is torch.optim.AdamW and all(
        p.is_floating_point() and p.device.type in FUSED_DEVICES for p in parameters
    )
    settings = {"fused": True} if fused else {}
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay, **settings)


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    if config.warmup_steps is not None:
        return config.warmup_steps
    return math.ceil(config.warmup_ratio * total_steps)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """Linear warm-up from 0, then constant, linear decay to 0, or cosine decay to 0."""
    warmup = warmup_steps(config, total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def apply_gradients(accelerator, parameters, optimizer, scheduler, max_grad_norm, where) -> dict:
    """Clip the accumulated gradients to `max_grad_norm` (None = no clipping), refuse a
    non-finite norm (TrainingError; `where` says which step and batch), then step the optimizer
    and the schedule. Returns {"grad_norm": ...} ({} where DeepSpeed keeps the norm)."""
    norm = accelerator.clip_grad_norm_(parameters, max_grad_norm or math.inf)
    grad_norm = math.nan if norm is None else float(norm)
    if norm is not None and not math.isfinite(grad_norm):
        raise TrainingError(f"gradient norm became {grad_norm} at {where}")
    optimizer.step()
    scheduler.step()
    return {} if norm is None else {"grad_norm": grad_norm}
