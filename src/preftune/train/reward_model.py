"""`train_reward_model(config) -> run folder`: `preftune rm`, a scalar reward head on a causal LM.

records -> (held-out split) -> the objective's view (Bradley-Terry: pairs; Plackett-Luce:
ranked lists) -> tokens (`preftune.data`, as the preference methods tokenize) -> rewards
(`preftune.models.reward`) -> loss (`preftune.losses.reward`) -> step. The run folder,
checkpoints with exact resume, metrics.jsonl, trackers and final/ are the preference loop's
(`preftune.train.run`). final/ is what `AutoModelForSequenceClassification.from_pretrained`
loads (num_labels 1, pad_token_id set) with the tokenizer; summary.json carries the held-out
ranking accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
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
from preftune.train.dataset import StepOrder, ViewCounts, read_data, tokenize_view
from preftune.train.metrics import MetricsLog, weighted_mean
from preftune.train.optim import apply_gradients, build_optimizer, build_scheduler
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
    if accelerator.num_processes > 1:
        raise ConfigError(
            "preftune rm trains in one process; run it without accelerate launch / torchrun"
        )
    with running(config, accelerator):
        return _train(config, accelerator)


def _train(config: RewardModelConfig, accelerator) -> Path:
    run_dir, changed = config.run_dir, check_run_dir(config)
    if config.resume and (run_dir / "summary.json").exists():
        drop_unkept_checkpoints(config)
        return run_dir  # finished earlier
    started = time.perf_counter()
    data = prepare_data(config)  # data errors surface before the folder is written
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


def prepare_data(config: RewardModelConfig) -> RewardData:
    """Read, split off the held-out prompts, build the views and tokenize (no model loads)."""
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
        """The objective's loss and metrics on `groups` (one forward pass)."""
        config, batch = self.config, collate(groups)
        rewards = batch_rewards(self.model, batch, self.pad_token_id)
        if config.objective == "plackett-luce":
            return list_plackett_luce(rewards, batch.mask, centering=config.centering)
        margins = None
        if config.margin == "scores":
            margins = config.margin_scale * (batch.scores[:, 0] - batch.scores[:, 1])
        elif config.margin == "data":
            margins = torch.tensor([g.margin for g in groups], dtype=torch.float64)
        if margins is not None:
            margins = margins.to(rewards.device, rewards.dtype)
        return bradley_terry(rewards, margins=margins, centering=config.centering)

    def step(self, step: int, indices: list[int]) -> tuple[dict[str, float], int]:
        """One optimizer step on the groups `indices`, `micro_batch_size` groups per forward
        pass with accumulated gradients; returns the step's metrics and token count."""
        self.model.train()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        parts, tokens = [], 0
        size = self.config.groups_per_forward
        for start in range(0, len(indices), size):
            groups = [self.groups[i] for i in indices[start : start + size]]
            loss, metrics = self.loss(groups)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {step + 1} (batch ids: "
                    f"{[g.id for g in groups]})"
                )
            self.accelerator.backward(loss * len(groups) / len(indices))
            parts.append((len(groups), {"loss": loss.item(), **metrics}))
            tokens += collate(groups).num_tokens()
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
    chosen response gets the strictly higher reward, with the pair count."""
    if not pairs:
        return {"accuracy": None, "pairs": 0}
    model.eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            rewards = batch_rewards(model, collate(pairs[start : start + batch_size]), pad_token_id)
            chosen.append(rewards[:, 0])
            rejected.append(rewards[:, 1])
    return {
        "accuracy": ranking_accuracy(torch.cat(chosen), torch.cat(rejected)),
        "pairs": len(pairs),
    }


def _log_heldout(config: RewardModelConfig, accelerator, trainer: RewardTrainer, data) -> dict:
    """Score the held-out pairs; add the result to metrics.jsonl and the trackers."""
    result = pair_accuracy(
        trainer.model, data.heldout, trainer.pad_token_id, config.groups_per_forward
    )
    result["source"] = data.heldout_source
    if result["accuracy"] is None:
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
