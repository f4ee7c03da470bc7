"""Checkpoints that let a killed run continue bit for bit.

A checkpoint is a folder `checkpoints/step-<N>` holding the trainable weights (everything with
requires_grad, plus heads trained with the policy such as PPO's value head), the optimizer and
scheduler states, the RNG states (python, numpy, torch, CUDA), the loop's state (step,
progress, and under "inputs" the input providers' states, e.g. BCO's running mean) and the
metrics written so far. It is written into a temporary folder and renamed into place, so a run killed
while saving leaves the previous checkpoint intact; older checkpoints are removed only after.

Every file is read with `torch.load(weights_only=True)`: tensors and plain values only (the RNG
states are stored as such), so a crafted file in a run folder cannot run code on `--resume`.
The loop writes a checkpoint only from finite weights and optimizer state (`check_finite`), so
the one a diverged run keeps is the last good one.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from preftune.errors import TrainingError
from preftune.io import atomic_write, atomic_write_bytes, atomic_write_json, read_text
from preftune.models.disk_cache import UnreadableTensorFile, load_tensor_file

PREFIX = "step-"
FILES = ("trainable.pt", "optimizer.pt", "scheduler.pt", "rng.pt")
# Config keys a resumed run may change: they steer the optimizer or what the run writes, not
# the model, data or method (a run that diverged can go on from its last checkpoint with a
# lower learning rate).
RESUMABLE_CHANGES = (
    "lr",
    "weight_decay",
    "scheduler",
    "warmup_steps",
    "warmup_ratio",
    "max_grad_norm",
    "save_every",
    "keep_final_checkpoint",
    "log_every",
    "report_to",
    "tracker_project",
    "tracker_run",
    "push_to_hub",
)


def _rng_states() -> dict:
    """Every RNG's state as tensors and plain values (loadable with weights_only=True)."""
    version, python_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict) -> None:
    python, numpy = states["python"], states["numpy"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{name}": parameter.detach().cpu().clone()
        for prefix, module in modules.items()
        for name, parameter in module.named_parameters()
        if parameter.requires_grad
    }


def check_finite(
    modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, run_dir: Path, step: int
) -> None:
    """Raise TrainingError, naming what is kept, when a trainable weight or an optimizer state
    tensor holds NaN/inf: the run diverged after the last loss was checked, and a checkpoint
    written now would keep the diverged weights."""
    tensors = {
        f"weight {prefix}.{name}": parameter
        for prefix, module in modules.items()
        for name, parameter in module.named_parameters()
        if parameter.requires_grad
    }
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer state '{key}' of parameter {index}"] = value
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingError(
                f"{name} became NaN/inf by step {step}; no checkpoint was written for it. "
                f"{describe_kept(run_dir)}"
            )


def _save_tensors(path: Path, value) -> None:
    atomic_write(path, lambda stream: torch.save(value, stream))


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    metrics_path: Path,
) -> Path:
    """Write `checkpoints/step-<step>` atomically and drop the older ones (call
    `check_finite` first: a checkpoint is meant to hold a run that has not diverged)."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".partial-*"):  # left by a run killed while saving
        shutil.rmtree(stale)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
    _save_tensors(staging / "trainable.pt", trainable_state(modules))
    _save_tensors(staging / "optimizer.pt", optimizer.state_dict())
    _save_tensors(staging / "scheduler.pt", scheduler.state_dict())
    _save_tensors(staging / "rng.pt", _rng_states())
    atomic_write_json(staging / "state.json", {**state, "step": step})
    if metrics_path.exists():
        atomic_write_bytes(staging / "metrics.jsonl", metrics_path.read_bytes())
    target = folder / f"{PREFIX}{step}"
    staging.rename(target)
    for old in folder.glob(f"{PREFIX}*"):
        if old != target:
            shutil.rmtree(old)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    folders = [path for path in (run_dir / "checkpoints").glob(f"{PREFIX}*") if path.is_dir()]
    return max(folders, key=lambda path: int(path.name.removeprefix(PREFIX)), default=None)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(PREFIX))


def describe_kept(run_dir: Path) -> str:
    """What a stopped run leaves to resume from, for its error message."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return "No checkpoint was saved yet (set save_every to keep some)."
    return (
        f"The last finite checkpoint is {checkpoint}; --resume continues from it, and may "
        f"change {', '.join(RESUMABLE_CHANGES)}."
    )


def _read(checkpoint: Path) -> tuple:
    """The checkpoint's four tensor files and its state, or a TrainingError naming the file."""
    for name in (*FILES, "state.json"):
        if not (checkpoint / name).is_file():
            raise TrainingError(f"checkpoint {checkpoint} is incomplete: {name} is missing")
    try:
        tensors = tuple(load_tensor_file(checkpoint / name) for name in FILES)
    except UnreadableTensorFile as error:
        raise TrainingError(f"checkpoint file {error}") from None
    try:
        state = json.loads(read_text(checkpoint / "state.json"))
    except json.JSONDecodeError as error:
        raise TrainingError(
            f"checkpoint file {checkpoint / 'state.json'} is damaged ({error.msg})"
        ) from None
    return (*tensors, state)


def load_checkpoint(
    checkpoint: Path,
    *,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler,
    metrics_path: Path,
) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the loop's state.

    The optimizer's and scheduler's settings (learning rate, weight decay, betas...) stay the
    ones `optimizer` and `scheduler` were built with, so a run resumes with changed settings.
    """
    weights, optimizer_state, scheduler_state, rng, state = _read(checkpoint)
    current = trainable_state(modules)
    if not isinstance(weights, dict) or set(weights) != set(current):
        raise TrainingError(
            f"checkpoint {checkpoint} does not match this run's trainable parameters "
            "(was the config changed?)"
        )
    parameters = {
        f"{prefix}.{name}": parameter
        for prefix, module in modules.items()
        for name, parameter in module.named_parameters()
    }
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    base_lrs = list(scheduler.base_lrs)
    try:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        _apply_settings(optimizer, scheduler, settings, base_lrs)
        _restore_rng(rng)  # last: nothing below draws random numbers
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise TrainingError(
            f"checkpoint {checkpoint} does not hold this run's optimizer, schedule or RNG "
            f"states ({type(error).__name__}: {error})"
        ) from None
    if (checkpoint / "metrics.jsonl").exists():
        atomic_write_bytes(metrics_path, (checkpoint / "metrics.jsonl").read_bytes())
    else:
        metrics_path.unlink(missing_ok=True)
    return state


def _apply_settings(optimizer, scheduler, settings: list[dict], base_lrs: list[float]) -> None:
    """Put this run's optimizer settings and base learning rates back over the loaded ones and
    set the current learning rate from the schedule, as LambdaLR computes it."""
    scheduler.base_lrs = base_lrs
    step = scheduler.last_epoch
    lrs = [base * factor(step) for base, factor in zip(base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, setting, lr in zip(optimizer.param_groups, settings, lrs, strict=True):
        group.update({**setting, "lr": lr})
    scheduler._last_lr = lrs
