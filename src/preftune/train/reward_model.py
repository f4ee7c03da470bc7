"""`train_reward_model(config) -> run folder`: `preftune rm`, a scalar reward head on a causal LM.

records -> (held-out split) -> the objective's view (Bradley-Terry: pairs; Plackett-Luce:
ranked lists) -> tokens (`preftune.data`, as the preference methods tokenize) -> rewards
(`preftune.models.reward`) -> loss (`preftune.losses.reward`) -> step. The run folder,
checkpoints with exact resume, metrics.jsonl, trackers and final/ are the preference loop's
(`preftune.train.run`). final/ is what `AutoModelForSequenceClassification.from_pretrained`
loads (num_labels 1, pad_token_id set) with the tokenizer; summary.json carries the held-out
ranking accuracy.

Under `accelerate launch` (DDP) every global micro-batch is split between the processes, a
group with all its responses on one process, and the rewards are gathered
(`preftune.train.processes`), so the loss, its gradient and the metrics are the global batch's,
as on one process; the main process writes the run folder.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from preftune.config import RewardModelConfig
from preftune.data import collate, drop_ties, make_view, read_records, validate_for
from preftune.data.batch import TokenizedGroup
from preftune.data.records import PromptGroup
from preftune.errors import ConfigError, MethodDataError, TrainingError
from preftune.io import atomic_write_json
from preftune.losses.reward import bradley_terry, list_plackett_luce, ranking_accuracy
from preftune.models.loading import load_reward_model, load_tokenizer
from preftune.models.lora import add_lora
from preftune.models.reward import batch_rewards
from preftune.models.trainable import train_top_layers
from preftune.train import tracking
from preftune.train.backend import is_sharded
from preftune.train.batching import check_shardable, micro_batches
from preftune.train.dataset import StepOrder, ViewCounts, read_data, tokenize_view
from preftune.train.metrics import MetricsLog, weighted_mean
from preftune.train.optim import apply_gradients, build_optimizer, build_scheduler
from preftune.train.processes import (
    all_processes,
    gather_rows,
    process_count,
    process_index,
)
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

NAME = "reward-model"  # what errors, the progress bar and the default run_name call the run


def train_reward_model(config: RewardModelConfig) -> Path:
    """Train the reward model `config` describes; returns the run folder (docs/reward-models.md).

    >>> import tempfile
    >>> from preftune.config import RewardModelConfig
    >>> from preftune.testing import save_tiny_model, write_preference_files
    >>> folder = Path(tempfile.mkdtemp())
    >>> config = RewardModelConfig(
    ...     model=str(save_tiny_model(folder / "lm")),
    ...     data={"path": str(write_preference_files(folder)["paired"])},
    ...     batch_size=4, max_steps=2, max_length=64, max_prompt_length=32,
    ...     output_dir=str(folder / "runs"))
    >>> run_dir = train_reward_model(config)
    >>> import json
    >>> json.loads((run_dir / "summary.json").read_text())["heldout"]["pairs"]  # 1 prompt of 8
    1
    """
    accelerator = make_accelerator(
        "no", **tracking.accelerator_options(config.report_to, config.run_dir / "trackers")
    )
    if is_sharded(accelerator):
        raise ConfigError(
            f"distributed_type: preftune rm runs on one process or under DDP, not "
            f"{accelerator.distributed_type.value} (its checkpoints and held-out scoring need "
            "whole weights on every process); use examples/accelerate/ddp.yaml"
        )
    with running(config, accelerator):
        return _train(config, accelerator)


def _train(config: RewardModelConfig, accelerator) -> Path:
    run_dir, changed = config.run_dir, check_run_dir(config)
    main = accelerator.is_main_process
    if config.resume and (run_dir / "summary.json").exists():
        if main:
            drop_unkept_checkpoints(config)
        return run_dir  # finished earlier
    started = time.perf_counter()
    # data errors surface before the folder is written
    data = prepare_data(config, processes=accelerator.num_processes)
    start_run_folder(config, accelerator, changed)
    run = config.tracker_run or config.run_name or NAME
    values = config.model_dump(mode="json")
    tracking.start(
        accelerator, config.report_to, project=config.tracker_project, run=run, values=values
    )
    trainer = RewardTrainer(
        config,
        accelerator,
        data.train,
        pad_token_id=data.tokenizer.pad_token_id,
        total_steps=data.total_steps,
    )
    session, final_metrics = train_steps(
        config, accelerator, trainer, data.order, data.total_steps, started=started, name=NAME
    )
    heldout = _log_heldout(config, accelerator, trainer, data)
    if main:
        save_final(trainer.modules["model"], data.tokenizer, run_dir)
        _write_summary(config, data, session, final_metrics, heldout)  # marks the run finished
        drop_unkept_checkpoints(config)
    return run_dir


@dataclass(frozen=True)
class RewardData:
    """What a reward model trains on (the objective's view) and is checked on (held-out
    pairs), tokenized; the step order; and what happened to the data on the way."""

    train: list[TokenizedGroup]
    heldout: list[TokenizedGroup]
    heldout_source: str
    counts: ViewCounts
    tokenizer: object
    order: StepOrder
    total_steps: int


def prepare_data(config: RewardModelConfig, processes: int = 1) -> RewardData:
    """Read, split off the held-out prompts, build the views and tokenize (no model loads);
    refuse steps too small to share between `processes`."""
    data = config.data
    result = read_data(data)
    validate_for(result.groups, config.needs, NAME)
    if data.heldout is not None:
        train_groups = result.groups
        heldout_groups = read_records(data.heldout, skip_invalid=data.skip_invalid).groups
        heldout_source = f"data.heldout ({data.heldout})"
    else:
        train_groups, heldout_groups = split_heldout(
            result.groups, data.heldout_fraction, data.seed
        )
        heldout_source = f"{len(heldout_groups)} prompts held out of the training data"
        heldout_source += f" (data.heldout_fraction={data.heldout_fraction}, seed {data.seed})"
    view = make_view(
        train_groups,
        config.view,
        pairs=data.pairs,
        seed=data.seed,
        curriculum=data.curriculum,
        method=NAME,
    )
    counts = ViewCounts(records=len(result.groups), skipped_invalid=result.skipped)
    view, counts.ties_dropped = drop_ties(view)
    if not view:
        raise MethodDataError(f"{NAME}: no {config.view} with an order to learn in the data")
    counts.view_groups = len(view)
    heldout_pairs = heldout_view(heldout_groups, data.seed)
    tokenizer = load_tokenizer(config.model)
    train = tokenize_view(view, tokenizer, config, counts)
    heldout = tokenize_view(heldout_pairs, tokenizer, config, ViewCounts()) if heldout_pairs else []
    check_shardable(len(train), config.batch_size, config.groups_per_forward, processes)
    order = StepOrder(len(train), config.batch_size, config.seed, shuffle=not data.curriculum)
    total_steps = config.max_steps or config.epochs * order.steps_per_epoch
    return RewardData(train, heldout, heldout_source, counts, tokenizer, order, total_steps)


def split_heldout(
    groups: list[PromptGroup], fraction: float, seed: int
) -> tuple[list[PromptGroup], list[PromptGroup]]:
    """A seeded share of the prompts (at least one when `fraction` > 0, never all) held out,
    whole prompt groups at a time so no prompt is on both sides; both keep the data's order.

    >>> from preftune.data import Response
    >>> groups = [PromptGroup(f"p{i}", [Response("a")], id=str(i)) for i in range(5)]
    >>> kept, held = split_heldout(groups, 0.3, seed=0)
    >>> len(kept), len(held), sorted(g.id for g in kept + held) == [str(i) for i in range(5)]
    (3, 2, True)
    """
    if fraction == 0 or len(groups) < 2:
        return groups, []
    count = min(math.ceil(fraction * len(groups)), len(groups) - 1)
    held = set(random.Random(seed).sample(range(len(groups)), count))
    return (
        [g for i, g in enumerate(groups) if i not in held],
        [g for i, g in enumerate(groups) if i in held],
    )


def heldout_view(groups: list[PromptGroup], seed: int) -> list[PromptGroup]:
    """Every score-ordered pair of the groups (ties left out: they have no order to check)."""
    if not groups:
        return []
    return drop_ties(make_view(groups, "pair", pairs="all", seed=seed, method=NAME))[0]


def build_reward_model(config: RewardModelConfig, pad_token_id: int) -> torch.nn.Module:
    """The model to train: a fresh scalar head on `config.model`, all of it trained, or LoRA
    adapters plus the head, or the top layers plus the head."""
    model = load_reward_model(
        config.model, config.dtype, config.attn_implementation, pad_token_id=pad_token_id
    )
    if config.lora is not None:
        return add_lora(model, **config.lora.model_dump(), task_type="SEQ_CLS")
    if config.trainable_layers is not None:
        train_top_layers(model, config.trainable_layers)
        for name, parameter in model.named_parameters():
            if not name.startswith(f"{model.base_model_prefix}."):  # the reward head
                parameter.requires_grad_(True)
    return model


class RewardTrainer:
    """A reward model, its optimizer and schedule, stepped one optimizer step at a time (the
    interface `preftune.train.run` drives: `modules`, `optimizer`, `scheduler`, `step`)."""

    def __init__(
        self,
        config: RewardModelConfig,
        accelerator,
        groups: list[TokenizedGroup],
        *,
        pad_token_id: int,
        total_steps: int,
    ):
        from accelerate.utils import set_seed

        set_seed(config.seed)
        self.pad_token_id = pad_token_id
        model = build_reward_model(config, self.pad_token_id).to(accelerator.device)
        self.modules = {"model": model}
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(self.parameters, config)
        self.scheduler = build_scheduler(optimizer, config, total_steps)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.config, self.accelerator, self.groups = config, accelerator, groups

    def state_dict(self) -> dict:
        """Nothing beyond weights, optimizer, schedule and RNG: a reward model's step depends
        on no running state."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see `state_dict`)."""

    def loss(self, groups: list[TokenizedGroup]) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective's loss and metrics on the global micro-batch of which `groups` is
        this process's part (one forward pass; the rewards gathered with their gradients)."""
        config, batch = self.config, collate(groups)
        rewards = batch_rewards(self.model, batch, self.pad_token_id)
        margins = None
        if config.margin == "scores":
            margins = config.margin_scale * (batch.scores[:, 0] - batch.scores[:, 1])
        elif config.margin == "data":
            margins = torch.tensor([g.margin for g in groups], dtype=torch.float64)
        if margins is not None:
            margins = margins.to(rewards.device, rewards.dtype)
        local = {"rewards": rewards, "mask": batch.mask.to(rewards.device), "margins": margins}
        inputs = gather_rows(local, rows=len(groups))
        rewards, centering = inputs["rewards"], config.centering
        if config.objective == "plackett-luce":
            return list_plackett_luce(rewards, inputs["mask"], centering=centering)
        return bradley_terry(rewards, margins=inputs["margins"], centering=centering)

    def step(self, step: int, indices: list[int]) -> tuple[dict[str, float], int]:
        """One optimizer step on the groups `indices` (the same on every process), in global
        micro-batches of `micro_batch_size` groups per process with accumulated gradients;
        returns the step's metrics and token count (over all processes)."""
        accelerator = self.accelerator
        self.model.train()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        plan = micro_batches(
            indices,
            self.config.groups_per_forward,
            accelerator.process_index,
            accelerator.num_processes,
        )
        parts, tokens = [], 0
        for k, (chunk, global_size) in enumerate(plan):
            groups = [self.groups[i] for i in chunk]
            syncing = k == len(plan) - 1
            with nullcontext() if syncing else accelerator.no_sync(self.model):
                loss, metrics = self.loss(groups)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step + 1} (batch ids: "
                        f"{[g.id for g in groups]})"
                    )
                accelerator.backward(loss * global_size / len(indices))
            parts.append((global_size, {"loss": loss.item(), **metrics}))
            tokens += collate(groups).num_tokens()
        tokens = sum(all_processes(tokens))
        where = f"step {step + 1} (batch ids: {[self.groups[i].id for i in indices]})"
        norms = apply_gradients(
            self.accelerator,
            self.parameters,
            self.optimizer,
            self.scheduler,
            self.config.max_grad_norm,
            where,
        )
        return {**weighted_mean(parts), "lr": lr, **norms}, tokens


def pair_accuracy(
    model: torch.nn.Module, pairs: list[TokenizedGroup], pad_token_id: int, batch_size: int
) -> dict:
    """The held-out ranking accuracy: the share of `pairs` ([chosen, rejected] groups) whose
    chosen response gets the strictly higher reward, with the pair count. Several processes
    each score every P-th pair and share the rewards; `model` is unwrapped (no DDP forward).
    """
    if not pairs:
        return {"accuracy": None, "pairs": 0}
    model.eval()
    mine = pairs[process_index() :: process_count()]
    chosen, rejected = [], []
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            rewards = batch_rewards(model, collate(mine[start : start + batch_size]), pad_token_id)
            chosen += rewards[:, 0].tolist()
            rejected += rewards[:, 1].tolist()
    everyone = all_processes((chosen, rejected))
    return {
        "accuracy": ranking_accuracy(
            torch.tensor([r for c, _ in everyone for r in c]),
            torch.tensor([r for _, c in everyone for r in c]),
        ),
        "pairs": len(pairs),
    }


def _log_heldout(config: RewardModelConfig, accelerator, trainer: RewardTrainer, data) -> dict:
    """Score the held-out pairs (every process its share); the main process adds the result
    to metrics.jsonl and the trackers."""
    result = pair_accuracy(
        trainer.modules["model"], data.heldout, trainer.pad_token_id, config.groups_per_forward
    )
    result["source"] = data.heldout_source
    if result["accuracy"] is None or not accelerator.is_main_process:
        return result
    record = {
        "step": data.total_steps,
        "heldout/accuracy": result["accuracy"],
        "heldout/pairs": result["pairs"],
    }
    log = MetricsLog(config.run_dir / "metrics.jsonl")
    try:
        log.write(record)
    finally:
        log.close()
    tracking.log(accelerator, record)
    return result


def _write_summary(config, data: RewardData, session: Session, final_metrics, heldout) -> None:
    summary = {
        "kind": NAME,
        "model": config.model,
        "objective": config.objective,
        "steps": data.total_steps,
        "epochs": data.total_steps / data.order.steps_per_epoch,
        "train_groups": len(data.train),
        "heldout": heldout,
        "data": dataclasses.asdict(data.counts),
        **session.totals(),
        "final_metrics": final_metrics,
        "final_dir": str(config.run_dir / "final"),
    }
    atomic_write_json(config.run_dir / "summary.json", summary)
