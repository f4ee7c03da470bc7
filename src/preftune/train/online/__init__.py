"""Online training: the policy samples, a reward source scores, the method updates.

`prepare_online(config, accelerator)` gives the offline loop (train/loop.py) what it drives:
the run's step plan and an `OnlineTrainer`; the run folder, checkpoints, exact resume,
metrics and final save are the offline run's. One process or several under DDP (the trainer
shares the sampling between them). See docs/online.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from preftune.config import DataConfig, TrainConfig
from preftune.errors import ConfigError


@dataclass
class PromptCounts:
    """What the run's data was (summary.json's "data")."""

    prompts: int


def read_training_prompts(data: DataConfig) -> list[dict]:
    """{"id", "prompt"} rows from `data.path` (a prompts file or any preference data file: its
    prompts) or `data.task` (the task's `data.split`, default "train"), at most `data.limit`.

    >>> from preftune.config import DataConfig
    >>> rows = read_training_prompts(DataConfig(task="sentiment", limit=2))
    >>> [row["id"] for row in rows]
    ['sentiment-000', 'sentiment-002']
    """
    from preftune.generate.prompt_sources import read_prompts

    if data.train is not None:
        raise ConfigError(
            "data.train: online training samples from one prompt source; use data.path or data.task"
        )
    source = f"task:{data.task}:{data.split or 'train'}" if data.task else data.path
    prompts = read_prompts(source, limit=data.limit)
    if not prompts:
        raise ConfigError(f"data: {source} holds no prompts")
    return prompts


def check_processes(config: TrainConfig, accelerator, num_prompts: int) -> None:
    """Online training runs on one process or several under DDP: each samples with the whole
    policy, which FSDP and DeepSpeed shard (or, ZeRO-1/2, step inside `backward`, which the
    update's accumulation does not follow); every process needs a prompt in every step."""
    from preftune.train.backend import is_sharded

    processes = accelerator.num_processes
    if is_sharded(accelerator):
        raise ConfigError(
            f"distributed_type: online training ({config.method}) runs on one process or under "
            f"DDP, not {accelerator.distributed_type.value}: each process samples with the "
            "whole policy, which FSDP / DeepSpeed shard; use examples/accelerate/ddp.yaml"
        )
    per_step = config.online.prompts_per_step
    sizes = {min(per_step, num_prompts), num_prompts % per_step} - {0}
    if min(sizes) < processes:
        raise ConfigError(
            f"online.prompts_per_step: with {num_prompts} prompts, a step of {min(sizes)} "
            f"prompts cannot be shared by {processes} processes; make online.prompts_per_step "
            "and the prompt count (data.limit) multiples of the process count"
        )


def prepare_online(config: TrainConfig, accelerator):
    """The prompts, reward source, tokenizer and trainer of an online run, checked in that
    order so bad prompts or an unloadable reward source fail before any model loads.
    Returns (the loop's `TrainingData`, the `OnlineTrainer`)."""
    from preftune.judges.rewards import reward_source
    from preftune.models.loading import load_tokenizer
    from preftune.train.dataset import StepOrder
    from preftune.train.loop import TrainingData
    from preftune.train.online.trainer import OnlineTrainer
    from preftune.train.processes import main_outcome

    prompts = read_training_prompts(config.data)
    check_processes(config, accelerator, len(prompts))
    reward = main_outcome(  # the main process scores every sample (and writes the cache)
        accelerator.is_main_process,
        lambda: reward_source(config.reward, cache_path=config.run_dir / "rewards.jsonl"),
        share=False,
    )
    tokenizer = load_tokenizer(config.model)
    if config.data.template is not None:  # the run's saved tokenizer keeps it for sampling
        tokenizer.chat_template = config.data.template
    order = StepOrder(len(prompts), config.online.prompts_per_step, config.seed)
    total_steps = config.max_steps or config.epochs * order.steps_per_epoch
    trainer = OnlineTrainer(
        config, accelerator, prompts, tokenizer, reward, total_steps=total_steps
    )
    data = TrainingData(prompts, PromptCounts(len(prompts)), tokenizer, order, total_steps)
    return data, trainer
