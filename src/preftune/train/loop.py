"""`train(config) -> run folder`: one loop for every method, on accelerate.

records -> view -> tokens -> `Trainer` (trainer.py: policy, loss inputs, optimizer; one
optimizer step at a time) over the run's step order, with the run folder, metrics log,
progress bar, checkpoints and resume around it. Nothing here depends on the method.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from preftune.config import TrainConfig
from preftune.errors import ConfigError
from preftune.losses import METHODS
from preftune.models.loading import load_tokenizer
from preftune.models.lora import is_lora
from preftune.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from preftune.train.dataset import StepOrder, read_view, tokenize_view
from preftune.train.distributed import check_shardable, full_policy, is_sharded
from preftune.train.inputs import RunningMean
from preftune.train.metrics import MetricsLog
from preftune.train.setup import build_policy
from preftune.train.trainer import Trainer


def train(config: TrainConfig) -> Path:
    """Train `config.method` on `config.data`; returns the run folder (see docs/internals.md)."""
    from accelerate import Accelerator

    spec = METHODS[config.method]
    accelerator = _accelerator(Accelerator, config.mixed_precision)
    main = accelerator.is_main_process
    run_dir = _open_run_dir(config, write=False)
    accelerator.wait_for_everyone()  # every process checked the folder before one writes it
    if main:
        _open_run_dir(config, write=True)
    if config.resume and (run_dir / "summary.json").exists():
        return run_dir  # finished earlier
    started = time.perf_counter()
    view, counts = read_view(config, spec)  # data errors surface before any model loads
    tokenizer = load_tokenizer(config.model)
    groups = tokenize_view(view, tokenizer, config, counts)
    check_shardable(
        len(groups), config.batch_size, config.groups_per_forward, accelerator.num_processes
    )
    order = StepOrder(
        len(groups), config.batch_size, config.seed, shuffle=not config.data.curriculum
    )
    total_steps = config.max_steps or config.epochs * order.steps_per_epoch
    trainer = Trainer(
        config,
        accelerator,
        groups,
        pad_token_id=tokenizer.pad_token_id,
        total_steps=total_steps,
    )
    modules, inputs = trainer.modules, trainer.inputs

    metrics_path = run_dir / "metrics.jsonl"
    state = {"tokens": 0, "elapsed_s": 0.0}
    checkpoint = latest_checkpoint(run_dir) if config.resume else None
    if checkpoint is not None:
        state = load_checkpoint(
            checkpoint,
            modules=modules,
            optimizer=trainer.optimizer,
            scheduler=trainer.scheduler,
            metrics_path=metrics_path,
        )
        if inputs.reward_mean is not None:
            inputs.reward_mean = RunningMean(**state["reward_mean"])
    elif main:
        metrics_path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()  # metrics.jsonl is in place before anyone reads it

    log = MetricsLog(metrics_path)
    start_step = state.get("step", 0)
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=config.method,
        unit="step",
        disable=not main,
    )
    interval_tokens, interval_start = 0, time.perf_counter()
    clock_offset = state["elapsed_s"] - started  # + perf_counter() = wall time over all sessions

    def save(step: int) -> None:
        loop_state = {"tokens": state["tokens"], "elapsed_s": clock_offset + time.perf_counter()}
        if inputs.reward_mean is not None:
            loop_state["reward_mean"] = inputs.reward_mean.state()
        if main:
            save_checkpoint(
                run_dir,
                step,
                modules=modules,
                optimizer=trainer.optimizer,
                scheduler=trainer.scheduler,
                state=loop_state,
                metrics_path=metrics_path,
            )
        accelerator.wait_for_everyone()

    for step in range(start_step, total_steps):
        metrics, tokens = trainer.step(step, order.indices(step))
        state["tokens"] += tokens
        interval_tokens += tokens
        done = step + 1
        if main and (done % config.log_every == 0 or done == total_steps):
            now = time.perf_counter()
            record = {"step": done, "epoch": done / order.steps_per_epoch, **metrics}
            record["tokens_per_s"] = interval_tokens / max(now - interval_start, 1e-9)
            log.write(record)
            interval_tokens, interval_start = 0, now
            shown = {"loss": f"{metrics['loss']:.4f}", "tok_s": f"{record['tokens_per_s']:.0f}"}
            if "rewards/accuracies" in metrics:
                shown["acc"] = f"{metrics['rewards/accuracies']:.2f}"
            bar.set_postfix(shown)
        bar.update(1)
        if config.save_every and done % config.save_every == 0 and done < total_steps:
            save(done)
    bar.close()
    if not is_sharded(accelerator):  # whole-state checkpoints only (check_checkpointing)
        save(total_steps)
    final_model = full_policy(accelerator, trainer.policy, lambda: build_policy(config, spec)[0])
    if not main:
        return run_dir
    _save_final(final_model, tokenizer, run_dir)
    summary = {
        "method": config.method,
        "model": config.model,
        "steps": total_steps,
        "epochs": total_steps / order.steps_per_epoch,
        "train_groups": len(groups),
        "data": vars(counts),
        "tokens": state["tokens"],
        "wall_time_s": clock_offset + time.perf_counter(),
        "final_metrics": log.last,
        "final_dir": str(run_dir / "final"),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir


def _accelerator(accelerator_class, mixed_precision: str):
    """An Accelerator with this run's mixed precision, also when an earlier run in this process
    (a study trains several) used another: accelerate keeps the precision in a per-process
    singleton and refuses a change, so that part of its state (not the process group) is reset.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return accelerator_class(mixed_precision=mixed_precision)


def _open_run_dir(config: TrainConfig, *, write: bool) -> Path:
    """Check the run folder (resuming needs the same config); with `write`, create it and
    write config.yaml (only the main process writes, after every process has checked)."""
    run_dir = config.run_dir
    config_path = run_dir / "config.yaml"
    current = config.model_dump(mode="json")
    if config_path.exists():
        if not config.resume:
            raise ConfigError(
                f"run_name: run folder {run_dir} already exists; pass --resume (resume=true) to "
                "continue it, or choose another run_name / output_dir"
            )
        previous = yaml.safe_load(config_path.read_text())
        changed = sorted(k for k in current if k != "resume" and previous.get(k) != current[k])
        if changed:
            raise ConfigError(
                f"resume: the config differs from the run's config.yaml in {', '.join(changed)}; "
                "resume with the same config, or start a new run_name"
            )
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config.to_yaml())
    return run_dir


def _save_final(model, tokenizer, run_dir: Path) -> None:
    """The final model in Hugging Face format; for LoRA, adapters apart and merged weights."""
    if is_lora(model):
        _atomic_save(run_dir / "final-adapter", model.save_pretrained)
        model = model.merge_and_unload()
    _atomic_save(run_dir / "final", model.save_pretrained, tokenizer.save_pretrained)


def _atomic_save(target: Path, *writers) -> None:
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    for write in writers:
        write(staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
