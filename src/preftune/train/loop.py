"""`train(config) -> run folder`: one loop for every method, on accelerate.

records -> view -> tokens -> `Trainer` (trainer.py: policy, loss inputs, optimizer; one
optimizer step at a time) over the run's step order, with the run folder, metrics log,
progress bar, checkpoints and resume around it. Nothing here depends on the method.

A run can be killed at any point and resumed: checkpoints, final/ and summary.json are each
written atomically, in that order, and summary.json marks the run finished. The run folder is
held by one process (`preftune.io.FolderLock`), so a second `train` on it is refused.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from preftune.config import TrainConfig
from preftune.errors import ConfigError, TrainingError
from preftune.io import FolderLock, atomic_write_json, atomic_write_text, read_text
from preftune.losses import METHODS
from preftune.models.loading import load_tokenizer
from preftune.models.lora import is_lora
from preftune.train import tracking
from preftune.train.checkpoint import (
    RESUMABLE_CHANGES,
    check_finite,
    checkpoint_step,
    describe_kept,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from preftune.train.dataset import StepOrder, read_view, tokenize_view
from preftune.train.distributed import all_processes, check_shardable, full_policy
from preftune.train.inputs import RunningMean
from preftune.train.metrics import MetricsLog, Progress
from preftune.train.setup import build_policy
from preftune.train.trainer import Trainer


def train(config: TrainConfig) -> Path:
    """Train `config.method` on `config.data`; returns the run folder (see docs/internals.md)."""
    from accelerate import Accelerator

    accelerator = _accelerator(Accelerator, config.mixed_precision, **tracking.run_options(config))
    lock = _hold(config.run_dir, accelerator.is_main_process)
    try:
        return _train(config, accelerator)
    finally:
        tracking.finish(accelerator)
        lock.release()


def _hold(run_dir: Path, main: bool) -> FolderLock:
    """The run folder's lock, taken by the main process; every process raises if it is held."""
    lock = FolderLock(run_dir, what="run folder")
    refusal = None
    if main:
        try:
            lock.acquire()
        except ConfigError as error:
            refusal = str(error)
    refusal = all_processes(refusal)[0]
    if refusal is not None:
        raise ConfigError(refusal)
    return lock


def _train(config: TrainConfig, accelerator) -> Path:
    spec = METHODS[config.method]
    main = accelerator.is_main_process
    run_dir, changed = _check_run_dir(config)
    if config.resume and (run_dir / "summary.json").exists():
        if main:
            _drop_unkept_checkpoints(config)
        return run_dir  # finished earlier
    accelerator.wait_for_everyone()  # every process checked the folder before one writes it
    if main:
        if changed:
            warnings.warn(f"resume: continuing with changed settings: {changed}", stacklevel=3)
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    tracking.start_run(accelerator, config)
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
    state: dict = {}
    checkpoint = latest_checkpoint(run_dir) if config.resume else None
    saved_step = None  # the step of the checkpoint on disk
    if checkpoint is not None:
        state = load_checkpoint(
            checkpoint,
            modules=modules,
            optimizer=trainer.optimizer,
            scheduler=trainer.scheduler,
            metrics_path=metrics_path,
        )
        saved_step = checkpoint_step(checkpoint)
        if inputs.reward_mean is not None:
            inputs.reward_mean = RunningMean(**state["reward_mean"])
    elif main:
        metrics_path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()  # metrics.jsonl is in place before anyone reads it

    log = MetricsLog(metrics_path) if main else None
    start_step = state.get("step", 0)
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=config.method,
        unit="step",
        disable=not main,
    )
    interval_tokens, interval_start = 0, time.perf_counter()
    progress = Progress.from_state(state)
    clock_offset = progress.elapsed_s - started  # + perf_counter() = wall time over all sessions

    def save(step: int) -> None:
        check_finite(modules, trainer.optimizer, run_dir, step)  # every process stops alike
        progress.elapsed_s = clock_offset + time.perf_counter()
        progress.note_memory(accelerator.device)
        loop_state = dataclasses.asdict(progress)
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

    try:
        for step in range(start_step, total_steps):
            step_start = time.perf_counter()
            try:
                metrics, tokens = trainer.step(step, order.indices(step))
            except TrainingError as error:
                raise TrainingError(f"{error}. {describe_kept(run_dir)}") from None
            seconds = time.perf_counter() - step_start
            progress.add_step(seconds, tokens, warm_up=step == start_step)
            interval_tokens += tokens
            done = step + 1
            if main and (done % config.log_every == 0 or done == total_steps):
                now = time.perf_counter()
                record = {"step": done, "epoch": done / order.steps_per_epoch, **metrics}
                record["tokens_per_s"] = interval_tokens / max(now - interval_start, 1e-9)
                record["step_seconds"] = seconds
                log.write(record)
                tracking.log(accelerator, record)
                interval_tokens, interval_start = 0, now
                shown = {"loss": f"{metrics['loss']:.4f}", "tok_s": f"{record['tokens_per_s']:.0f}"}
                if "rewards/accuracies" in metrics:
                    shown["acc"] = f"{metrics['rewards/accuracies']:.2f}"
                shown["s/step"] = f"{seconds:.2f}"
                bar.set_postfix(shown)
            bar.update(1)
            if config.save_every and done % config.save_every == 0 and done < total_steps:
                save(done)
                saved_step = done
    finally:  # also when a step fails: the bar ends, metrics.jsonl is closed
        bar.close()
        if log is not None:
            log.close()
    if _keeps_checkpoint(config) and saved_step != total_steps:
        save(total_steps)  # before final/: a run killed while writing it resumes from here
    final_model = full_policy(accelerator, trainer.policy, lambda: build_policy(config, spec)[0])
    if not main:
        return run_dir
    _save_final(final_model, tokenizer, run_dir)
    memory_measure = progress.note_memory(accelerator.device)
    summary = {
        "method": config.method,
        "model": config.model,
        "steps": total_steps,
        "epochs": total_steps / order.steps_per_epoch,
        "train_groups": len(groups),
        "data": vars(counts),
        "tokens": progress.tokens,
        "wall_time_s": clock_offset + time.perf_counter(),
        "speed": progress.speed(),
        "peak_memory_mib": progress.peak_memory_mib,
        "peak_memory_measure": memory_measure,
        "final_metrics": log.last,
        "final_dir": str(run_dir / "final"),
    }
    atomic_write_json(run_dir / "summary.json", summary)  # marks the run finished
    _drop_unkept_checkpoints(config)
    return run_dir


def _keeps_checkpoint(config: TrainConfig) -> bool:
    """A finished run keeps its last checkpoint (optimizer state included) only when asked."""
    return bool(config.save_every or config.keep_final_checkpoint)


def _drop_unkept_checkpoints(config: TrainConfig) -> None:
    if not _keeps_checkpoint(config):
        shutil.rmtree(config.run_dir / "checkpoints", ignore_errors=True)


def _accelerator(accelerator_class, mixed_precision: str, **options):
    """An Accelerator with this run's mixed precision, also when an earlier run in this process
    (a study trains several) used another: accelerate keeps the precision in a per-process
    singleton and refuses a change, so that part of its state (not the process group) is reset.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return accelerator_class(mixed_precision=mixed_precision, **options)


def _check_run_dir(config: TrainConfig) -> tuple[Path, str]:
    """The run folder, checked: a new run needs a new folder, a resumed one the same config
    up to `RESUMABLE_CHANGES`. Returns the folder and the resumable changes ("" if none)."""
    run_dir = config.run_dir
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        return run_dir, ""
    if not config.resume:
        raise ConfigError(
            f"run_name: run folder {run_dir} already exists; pass --resume (resume=true) to "
            "continue it, or choose another run_name / output_dir"
        )
    try:
        previous = yaml.safe_load(read_text(config_path, what="run config"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{config_path}: not valid YAML ({error.problem})") from None
    if not isinstance(previous, dict):
        raise ConfigError(f"{config_path}: not a run config (a YAML mapping)")
    current = config.model_dump(mode="json")
    # a key the run's config.yaml lacks (added to preftune since) had its default there
    defaults = {
        k: f.get_default(call_default_factory=True) for k, f in TrainConfig.model_fields.items()
    }
    previous = {**{k: v for k, v in defaults.items() if k not in previous}, **previous}
    changed = sorted(k for k in current if k != "resume" and previous.get(k) != current[k])
    refused = [key for key in changed if key not in RESUMABLE_CHANGES]
    if refused:
        raise ConfigError(
            f"resume: the config differs from the run's config.yaml in {', '.join(refused)}; "
            "resume with the same model, data and method settings (only "
            f"{', '.join(RESUMABLE_CHANGES)} may change), or start a new run_name"
        )
    return run_dir, ", ".join(f"{key} {previous.get(key)} -> {current[key]}" for key in changed)


def _save_final(model, tokenizer, run_dir: Path) -> None:
    """The final model in Hugging Face format; for LoRA, adapters apart and merged weights."""
    for stale in run_dir.glob(".final-*"):  # left by a run killed while writing final/
        shutil.rmtree(stale)
    if is_lora(model):
        _atomic_save(run_dir / "final-adapter", model.save_pretrained)
        model = model.merge_and_unload()
    _atomic_save(run_dir / "final", model.save_pretrained, tokenizer.save_pretrained)


def _atomic_save(target: Path, *writers) -> None:
    """Write a folder beside `target`, then swap it in (an old `target` is moved aside first)."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    for write in writers:
        write(staging)
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
        target.rename(old / target.name)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
