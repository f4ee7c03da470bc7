"""Online training: the policy samples, a reward source scores, the method updates.

`prepare_online(config, accelerator)` gives the offline loop (train/loop.py) what it drives:
the run's step plan and an `OnlineTrainer`; the run folder, checkpoints, exact resume,
metrics and final save are the offline run's. See docs/online.md.
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


def prepare_online(config: TrainConfig, accelerator):
    """The prompts, reward source, tokenizer and trainer of an online run, checked in that
    order so bad prompts or an unloadable reward source fail before any model loads.
    Returns (the loop's `TrainingData`, the `OnlineTrainer`)."""
    from preftune.judges.rewards import reward_source
    from preftune.models.loading import load_tokenizer
    from preftune.train.dataset import StepOrder
    from preftune.train.loop import TrainingData
    from preftune.train.online.trainer import OnlineTrainer

    if accelerator.num_processes > 1:
        raise ConfigError(
            f"method '{config.method}': online training runs on one process for now "
            f"({accelerator.num_processes} were started)"
        )
    prompts = read_training_prompts(config.data)
    reward = reward_source(config.reward, cache_path=config.run_dir / "rewards.jsonl")
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
