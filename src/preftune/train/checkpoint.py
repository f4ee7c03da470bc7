"""Checkpoints that let a killed run continue bit for bit.

A checkpoint is a folder `checkpoints/step-<N>` holding the trainable weights (everything with
requires_grad, plus the value head), the optimizer and scheduler states, the RNG states
(python, numpy, torch, CUDA), the loop's state (step, BCO's running mean...) and the metrics
written so far. It is written into a temporary folder and renamed into place, so a run killed
while saving leaves the previous checkpoint intact; older checkpoints are removed only after.
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

PREFIX = "step-"


def _rng_states() -> dict:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
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
    """Write `checkpoints/step-<step>` atomically and drop the older ones."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".partial-*"):  # left by a run killed while saving
        shutil.rmtree(stale)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
    torch.save(trainable_state(modules), staging / "trainable.pt")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    torch.save(_rng_states(), staging / "rng.pt")
    (staging / "state.json").write_text(json.dumps({**state, "step": step}))
    if metrics_path.exists():
        shutil.copyfile(metrics_path, staging / "metrics.jsonl")
    target = folder / f"{PREFIX}{step}"
    staging.rename(target)
    for old in folder.glob(f"{PREFIX}*"):
        if old != target:
            shutil.rmtree(old)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    folders = [path for path in (run_dir / "checkpoints").glob(f"{PREFIX}*") if path.is_dir()]
    return max(folders, key=lambda path: int(path.name.removeprefix(PREFIX)), default=None)


def load_checkpoint(
    checkpoint: Path,
    *,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler,
    metrics_path: Path,
) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the loop's state. RNG comes last."""
    try:
        weights = torch.load(checkpoint / "trainable.pt", weights_only=True)
        optimizer_state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        scheduler_state = torch.load(checkpoint / "scheduler.pt", weights_only=True)
        rng = torch.load(checkpoint / "rng.pt", weights_only=False)
        state = json.loads((checkpoint / "state.json").read_text())
    except (OSError, RuntimeError, ValueError) as error:
        raise TrainingError(f"checkpoint {checkpoint} is unreadable: {error}") from None
    current = trainable_state(modules)
    if set(weights) != set(current):
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
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    if (checkpoint / "metrics.jsonl").exists():
        shutil.copyfile(checkpoint / "metrics.jsonl", metrics_path)
    else:
        metrics_path.unlink(missing_ok=True)
    _restore_rng(rng)
    return state
