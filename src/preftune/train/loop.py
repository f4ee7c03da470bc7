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

import dataclasses
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from preftune.config import TrainConfig
from preftune.data.batch import TokenizedGroup
from preftune.errors import ConfigError, TrainingError
from preftune.io import FolderLock, atomic_write_json, atomic_write_text, read_text
from preftune.losses import METHODS
from preftune.models.loading import load_tokenizer
from preftune.models.lora import is_lora
from preftune.train import tracking
from preftune.train.backend import full_policy
from preftune.train.batching import check_shardable
from preftune.train.checkpoint import (
    RESUMABLE_CHANGES,
    check_finite,
    checkpoint_step,
    describe_kept,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from preftune.train.dataset import StepOrder, ViewCounts, read_view, tokenize_view
from preftune.train.metrics import MetricsLog, Progress
from preftune.train.processes import all_processes
from preftune.train.setup import build_policy
from preftune.train.trainer import Trainer


def train(config: TrainConfig) -> Path:
    """Train `config.method` on `config.data`; returns the run folder (see docs/internals.md).
    With `online.rounds`, an offline method trains in rounds on its own samples
    (train/rounds.py)."""
    if config.online is not None and config.online.rounds is not None:
        from preftune.train.rounds import train_rounds

        return train_rounds(config)
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
    """A run, step by step: check the folder, prepare the data, build the trainer, restore a
    checkpoint, run the steps, then write the last checkpoint, final/ and summary.json."""
    spec = METHODS[config.method]
    run_dir, changed = check_run_dir(config)
    if config.resume and (run_dir / "summary.json").exists():
        if accelerator.is_main_process:
            _drop_unkept_checkpoints(config)
        return run_dir  # finished earlier
    _start_run_folder(config, accelerator, changed)
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
    session = _Session(config, accelerator, trainer, started)
    final_metrics = _run_steps(session, data, first_step=session.resume())
    if _keeps_checkpoint(config) and session.saved_step != data.total_steps:
        session.save(data.total_steps)  # before final/: a run killed writing it resumes here
    final_model = full_policy(accelerator, trainer.policy, lambda: build_policy(config))
    if accelerator.is_main_process:
        _save_final(final_model, data.tokenizer, run_dir)
        _write_summary(config, data, session, final_metrics)  # marks the run finished
        _drop_unkept_checkpoints(config)
    return run_dir


def _start_run_folder(config: TrainConfig, accelerator, changed: str) -> None:
    """Write the run's config.yaml (main process), once every process checked the folder."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if changed:
            warnings.warn(f"resume: continuing with changed settings: {changed}", stacklevel=4)
        atomic_write_text(config.run_dir / "config.yaml", config.to_yaml())


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


class _Session:
    """What a run carries from step to step and across resumes: the trainer, its progress
    totals, the wall clock and the step of the checkpoint on disk."""

    def __init__(self, config: TrainConfig, accelerator, trainer: Trainer, started: float):
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


def _run_steps(session: _Session, data: TrainingData, *, first_step: int) -> dict:
    """The optimizer steps from `first_step` on, logged and checkpointed as configured;
    returns the last logged metrics (main process; {} elsewhere)."""
    config = session.config
    log = _StepLog(session, data, first_step)
    try:
        for step in range(first_step, data.total_steps):
            started = time.perf_counter()
            try:
                metrics, tokens = session.trainer.step(step, data.order.indices(step))
            except TrainingError as error:
                raise TrainingError(f"{error}. {describe_kept(config.run_dir)}") from None
            seconds = time.perf_counter() - started
            session.progress.add_step(seconds, tokens, warm_up=step == first_step)
            done = step + 1
            log.step_done(done, metrics, tokens, seconds)
            if config.save_every and done % config.save_every == 0 and done < data.total_steps:
                session.save(done)
    finally:  # also when a step fails: the bar ends, metrics.jsonl is closed
        log.close()
    return log.last


class _StepLog:
    """metrics.jsonl and the progress bar (main process only): a line every `log_every` steps
    and at the end, with the step's metrics, tokens/s since the last line and its seconds."""

    def __init__(self, session: _Session, data: TrainingData, first_step: int):
        config, main = session.config, session.accelerator.is_main_process
        self.accelerator = session.accelerator
        self.every, self.total = config.log_every, data.total_steps
        self.steps_per_epoch = data.order.steps_per_epoch
        self.log = MetricsLog(session.metrics_path) if main else None
        self.bar = tqdm(
            total=data.total_steps,
            initial=first_step,
            desc=config.method,
            unit="step",
            disable=not main,
        )
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


def _write_summary(
    config: TrainConfig, data: TrainingData, session: _Session, final_metrics
) -> None:
    progress = session.progress
    memory_measure = progress.note_memory(session.accelerator.device)
    summary = {
        "method": config.method,
        "model": config.model,
        "steps": data.total_steps,
        "epochs": data.total_steps / data.order.steps_per_epoch,
        "train_groups": len(data.groups),
        "data": vars(data.counts),
        "tokens": progress.tokens,
        "wall_time_s": session.wall_time(),
        "speed": progress.speed(),
        "peak_memory_mib": progress.peak_memory_mib,
        "peak_memory_measure": memory_measure,
        "final_metrics": final_metrics,
        "final_dir": str(config.run_dir / "final"),
    }
    if hasattr(session.trainer, "budget"):  # online runs: what they sampled and scored
        summary["budget"] = dataclasses.asdict(session.trainer.budget)
    atomic_write_json(config.run_dir / "summary.json", summary)


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


def check_run_dir(config: TrainConfig) -> tuple[Path, str]:
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
