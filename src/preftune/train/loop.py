"""`train(config) -> run folder`: one loop for every method, on accelerate.

records -> view -> tokens -> `Trainer` (trainer.py: policy, loss inputs, optimizer; one
optimizer step at a time) over the run's step order, with the run folder, metrics log,
progress bar, checkpoints and resume around it. Nothing here depends on the method; an
online method (view "online") brings its prompts and its own trainer, which samples and
scores as it steps (`preftune.train.online`), and the rest is the same.

A run can be killed at any point and resumed: checkpoints, final/ and summary.json are each
written atomically, in that order, and summary.json marks the run finished. The run folder is
held by one process (`preftune.io.FolderLock`), so a second `train` on it is refused.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup
from preftune.io import atomic_write_json
from preftune.losses import METHODS
from preftune.models.loading import load_tokenizer
from preftune.train import tracking
from preftune.train.backend import full_policy
from preftune.train.batching import check_shardable
from preftune.train.dataset import StepOrder, ViewCounts, read_view, tokenize_view
from preftune.train.run import (
    Session,
    check_run_dir,
    drop_unkept_checkpoints,
    make_accelerator,
    running,
    save_final,
    start_run_folder,
    train_steps,
)
from preftune.train.setup import build_policy
from preftune.train.trainer import Trainer


def train(config: TrainConfig) -> Path:
    """Train `config.method` on `config.data`; returns the run folder (see docs/internals.md).
    With `online.rounds`, an offline method trains in rounds on its own samples
    (train/rounds.py)."""
    if config.online is not None and config.online.rounds is not None:
        from preftune.train.rounds import train_rounds

        return train_rounds(config)
    accelerator = make_accelerator(config.mixed_precision, **tracking.run_options(config))
    with running(config, accelerator):
        return _train(config, accelerator)


def _train(config: TrainConfig, accelerator) -> Path:
    """A run, step by step: check the folder, prepare the data, build the trainer, restore a
    checkpoint, run the steps, then write the last checkpoint, final/ and summary.json."""
    spec = METHODS[config.method]
    run_dir, changed = config.run_dir, check_run_dir(config)
    if config.resume and (run_dir / "summary.json").exists():
        if accelerator.is_main_process:
            drop_unkept_checkpoints(config)
        return run_dir  # finished earlier
    start_run_folder(config, accelerator, changed)
    tracking.start_run(accelerator, config)
    started = time.perf_counter()
    if spec.view == "online":
        from preftune.train.online import prepare_online

        data, trainer = prepare_online(config, accelerator)
    else:
        data = _prepare_data(config, spec, accelerator.num_processes)
        trainer = Trainer(
            config,
            accelerator,
            data.groups,
            pad_token_id=data.tokenizer.pad_token_id,
            total_steps=data.total_steps,
        )
    session, final_metrics = train_steps(
        config,
        accelerator,
        trainer,
        data.order,
        data.total_steps,
        started=started,
        name=config.method,
    )
    final_model = full_policy(accelerator, trainer.policy, lambda: build_policy(config))
    if accelerator.is_main_process:
        extra = trainer.final_writers() if hasattr(trainer, "final_writers") else ()
        save_final(final_model, data.tokenizer, run_dir, *extra)
        _write_summary(config, data, session, final_metrics)  # marks the run finished
        drop_unkept_checkpoints(config)
    return run_dir


@dataclass(frozen=True)
class TrainingData:
    """What a run's steps draw from (tokenized groups; an online run's prompt rows), what
    happened to the data (summary.json's "data"), the tokenizer and the step order."""

    groups: list[TokenizedGroup] | list[dict]
    counts: ViewCounts | object
    tokenizer: object
    order: StepOrder
    total_steps: int


def _prepare_data(config: TrainConfig, spec, processes: int) -> TrainingData:
    view, counts = read_view(config, spec)  # data errors surface before any model loads
    tokenizer = load_tokenizer(config.model)
    groups = tokenize_view(view, tokenizer, config, counts)
    check_shardable(len(groups), config.batch_size, config.groups_per_forward, processes)
    order = StepOrder(
        len(groups), config.batch_size, config.seed, shuffle=not config.data.curriculum
    )
    total_steps = config.max_steps or config.epochs * order.steps_per_epoch
    return TrainingData(groups, counts, tokenizer, order, total_steps)


def _write_summary(
    config: TrainConfig, data: TrainingData, session: Session, final_metrics
) -> None:
    summary = {
        "method": config.method,
        "model": config.model,
        "steps": data.total_steps,
        "epochs": data.total_steps / data.order.steps_per_epoch,
        "train_groups": len(data.groups),
        "data": vars(data.counts),
        **session.totals(),
        "final_metrics": final_metrics,
        "final_dir": str(config.run_dir / "final"),
    }
    if hasattr(session.trainer, "budget"):  # online runs: what they sampled and scored
        summary["budget"] = asdict(session.trainer.budget)
    atomic_write_json(config.run_dir / "summary.json", summary)
