"""The run machinery every trainer shares (preference training, reward models).

A trainer is any object with `modules` (name -> the trained modules checkpoints save),
`optimizer`, `scheduler`, `step(step, indices) -> (metrics, tokens)` and `state_dict()` /
`load_state_dict(state)` for what else a checkpoint keeps (saved under "inputs"). Around it: the run
folder (held by one process with `preftune.io.FolderLock`, checked against its config.yaml on
resume), the accelerator, the `Session` that checkpoints and resumes it exactly (weights,
optimizer, schedule, RNG, progress and any extra state), the step loop with metrics.jsonl,
trackers and the progress bar, and the atomic write of final/.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from preftune.errors import ConfigError, TrainingError
from preftune.io import FolderLock, atomic_write_text, read_text
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
from preftune.train.dataset import StepOrder
from preftune.train.metrics import MetricsLog, Progress
from preftune.train.processes import all_processes


def hold_run_folder(run_dir: Path, main: bool) -> FolderLock:
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


@contextmanager
def running(config, accelerator):
    """The run folder held (`hold_run_folder`) while the run lasts, and its trackers finished
    and the folder released afterwards, also when the run fails."""
    lock = hold_run_folder(config.run_dir, accelerator.is_main_process)
    try:
        yield
    finally:
        tracking.finish(accelerator)
        lock.release()


def make_accelerator(mixed_precision: str, **options):
    """An Accelerator with this run's mixed precision, also when an earlier run in this process
    (a study trains several) used another: accelerate keeps the precision in a per-process
    singleton and refuses a change, so that part of its state (not the process group) is reset.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, **options)


def check_run_dir(config) -> str:
    """Check `config.run_dir`: a new run needs a new folder, a resumed one the same config (a
    pydantic model) up to `RESUMABLE_CHANGES`. Returns the resumable changes ("" if none)."""
    config_path = config.run_dir / "config.yaml"
    if not config_path.exists():
        return ""
    if not config.resume:
        raise ConfigError(
            f"run_name: run folder {config.run_dir} already exists; pass --resume (resume=true) "
            "to continue it, or choose another run_name / output_dir"
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
        k: f.get_default(call_default_factory=True) for k, f in type(config).model_fields.items()
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
    return ", ".join(f"{key} {previous.get(key)} -> {current[key]}" for key in changed)


def start_run_folder(config, accelerator, changed: str) -> None:
    """Write the run's config.yaml (main process), once every process checked the folder."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if changed:
            warnings.warn(f"resume: continuing with changed settings: {changed}", stacklevel=4)
        atomic_write_text(config.run_dir / "config.yaml", config.to_yaml())


class Session:
    """What a run carries from step to step and across resumes: the trainer, its progress
    totals, the wall clock and the step of the checkpoint on disk."""

    def __init__(self, config, accelerator, trainer, started: float):
        self.config, self.accelerator, self.trainer = config, accelerator, trainer
        self.metrics_path = config.run_dir / "metrics.jsonl"
        self.started = started
        self.progress = Progress()
        self.clock_offset = -started  # + perf_counter() = wall time over all sessions
        self.saved_step: int | None = None

    def resume(self) -> int:
        """Restore the latest checkpoint when resuming (else start metrics.jsonl afresh);
        returns the first step to run."""
        trainer = self.trainer
        checkpoint = latest_checkpoint(self.config.run_dir) if self.config.resume else None
        state: dict = {}
        if checkpoint is not None:
            state = load_checkpoint(
                checkpoint,
                modules=trainer.modules,
                optimizer=trainer.optimizer,
                scheduler=trainer.scheduler,
                metrics_path=self.metrics_path,
            )
            self.saved_step = checkpoint_step(checkpoint)
            trainer.load_state_dict(state.get("inputs", {}))
        elif self.accelerator.is_main_process:
            self.metrics_path.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()  # metrics.jsonl is in place before anyone reads it
        self.progress = Progress.from_state(state)
        self.clock_offset = self.progress.elapsed_s - self.started
        return state.get("step", 0)

    def wall_time(self) -> float:
        return self.clock_offset + time.perf_counter()

    def totals(self) -> dict:
        """summary.json's account of the run: tokens, wall time, speed and peak memory."""
        measure = self.progress.note_memory(self.accelerator.device)
        return {
            "tokens": self.progress.tokens,
            "wall_time_s": self.wall_time(),
            "speed": self.progress.speed(),
            "peak_memory_mib": self.progress.peak_memory_mib,
            "peak_memory_measure": measure,
        }

    def save(self, step: int) -> None:
        """A checkpoint of the run after `step` steps (every process checks, one writes)."""
        trainer = self.trainer
        check_finite(trainer.modules, trainer.optimizer, self.config.run_dir, step)
        self.progress.elapsed_s = self.wall_time()
        self.progress.note_memory(self.accelerator.device)
        state = {**dataclasses.asdict(self.progress), "inputs": trainer.state_dict()}
        if self.accelerator.is_main_process:
            save_checkpoint(
                self.config.run_dir,
                step,
                modules=trainer.modules,
                optimizer=trainer.optimizer,
                scheduler=trainer.scheduler,
                state=state,
                metrics_path=self.metrics_path,
            )
        self.accelerator.wait_for_everyone()
        self.saved_step = step


def run_steps(
    session: Session, order: StepOrder, total_steps: int, *, first_step: int, name: str
) -> dict:
    """The optimizer steps from `first_step` on, logged and checkpointed as configured;
    returns the last logged metrics (main process; {} elsewhere)."""
    config = session.config
    log = StepLog(session, order.steps_per_epoch, total_steps, first_step, name)
    try:
        for step in range(first_step, total_steps):
            started = time.perf_counter()
            try:
                metrics, tokens = session.trainer.step(step, order.indices(step))
            except TrainingError as error:
                raise TrainingError(f"{error}. {describe_kept(config.run_dir)}") from None
            seconds = time.perf_counter() - started
            session.progress.add_step(seconds, tokens, warm_up=step == first_step)
            done = step + 1
            log.step_done(done, metrics, tokens, seconds)
            if config.save_every and done % config.save_every == 0 and done < total_steps:
                session.save(done)
    finally:  # also when a step fails: the bar ends, metrics.jsonl is closed
        log.close()
    return log.last


def train_steps(config, accelerator, trainer, order: StepOrder, total_steps: int, *, started, name):
    """Restore the latest checkpoint when resuming, run the remaining steps, and save the last
    checkpoint when the run keeps one; returns (session, the last logged metrics)."""
    session = Session(config, accelerator, trainer, started)
    first_step = session.resume()
    final_metrics = run_steps(session, order, total_steps, first_step=first_step, name=name)
    if keeps_checkpoint(config) and session.saved_step != total_steps:
        session.save(total_steps)  # before final/: a run killed writing it resumes here
    return session, final_metrics


class StepLog:
    """metrics.jsonl and the progress bar (main process only): a line every `log_every` steps
    and at the end, with the step's metrics, tokens/s since the last line and its seconds."""

    def __init__(
        self, session: Session, steps_per_epoch: int, total: int, first_step: int, name: str
    ):
        config, main = session.config, session.accelerator.is_main_process
        self.accelerator = session.accelerator
        self.every, self.total = config.log_every, total
        self.steps_per_epoch = steps_per_epoch
        self.log = MetricsLog(session.metrics_path) if main else None
        self.bar = tqdm(total=total, initial=first_step, desc=name, unit="step", disable=not main)
        self.tokens, self.since = 0, time.perf_counter()

    @property
    def last(self) -> dict:
        return self.log.last if self.log is not None else {}

    def step_done(self, done: int, metrics: dict, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        if self.log is not None and (done % self.every == 0 or done == self.total):
            now = time.perf_counter()
            record = {"step": done, "epoch": done / self.steps_per_epoch, **metrics}
            record["tokens_per_s"] = self.tokens / max(now - self.since, 1e-9)
            record["step_seconds"] = seconds
            self.log.write(record)
            tracking.log(self.accelerator, record)
            self.tokens, self.since = 0, now
            shown = {"loss": f"{metrics['loss']:.4f}"} if "loss" in metrics else {}
            shown["tok_s"] = f"{record['tokens_per_s']:.0f}"
            if "rewards/accuracies" in metrics:
                shown["acc"] = f"{metrics['rewards/accuracies']:.2f}"
            if "reward_mean" in metrics:  # online methods
                shown["reward"] = f"{metrics['reward_mean']:.3f}"
            shown["s/step"] = f"{seconds:.2f}"
            self.bar.set_postfix(shown)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()


def keeps_checkpoint(config) -> bool:
    """A finished run keeps its last checkpoint (optimizer state included) only when asked."""
    return bool(config.save_every or config.keep_final_checkpoint)


def drop_unkept_checkpoints(config) -> None:
    if not keeps_checkpoint(config):
        shutil.rmtree(config.run_dir / "checkpoints", ignore_errors=True)


def save_final(model, tokenizer, run_dir: Path, *writers) -> None:
    """The final model in Hugging Face format; for LoRA, adapters apart and merged weights.
    `writers` add files to final/ (each called with the folder), written with it atomically."""
    for stale in run_dir.glob(".final-*"):  # left by a run killed while writing final/
        shutil.rmtree(stale)
    if is_lora(model):
        atomic_save(run_dir / "final-adapter", model.save_pretrained)
        model = model.merge_and_unload()
    atomic_save(run_dir / "final", model.save_pretrained, tokenizer.save_pretrained, *writers)


def atomic_save(target: Path, *writers) -> None:
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
