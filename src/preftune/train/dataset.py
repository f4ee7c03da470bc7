"""From the config's data source to the tokenized groups the loop trains on, and their order.

Reading and building the method's view happen before any model loads, so a method given data
it cannot use fails in seconds, naming what is missing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from preftune.config import DataConfig, TrainConfig
from preftune.data import drop_ties, make_view, tokenize, validate_for
from preftune.data.batch import TokenizedGroup
from preftune.data.mixing import read_mixture
from preftune.data.records import PromptGroup
from preftune.errors import ConfigError, MethodDataError


@dataclass
class ViewCounts:
    """What happened to the data on its way to the trainer (reported in summary.json)."""

    records: int = 0
    skipped_invalid: int = 0
    view_groups: int = 0
    ties_dropped: int = 0
    tokenize: dict = field(default_factory=dict)


def read_data(data: DataConfig):
    """The records of every source of `data` (a `ReadResult`: groups, skipped rows...)."""
    return read_mixture(
        data.sources,
        data.format,
        split=data.split,
        limit=data.limit,
        seed=data.seed,
        skip_invalid=data.skip_invalid,
    )


def read_view(config: TrainConfig, spec) -> tuple[list[PromptGroup], ViewCounts]:
    """Read the data and build the method's view; raises before any model is loaded."""
    data = config.data
    result = read_data(data)
    validate_for(result.groups, spec.needs, config.method)
    view = make_view(
        result.groups,
        spec.view,
        pairs=data.pairs,
        seed=data.seed,
        curriculum=data.curriculum,
        method=config.method,
    )
    counts = ViewCounts(records=len(result.groups), skipped_invalid=result.skipped)
    if spec.view == "pair" and not spec.keeps_ties:
        view, counts.ties_dropped = drop_ties(view)
    if not view:
        raise MethodDataError(
            f"method '{config.method}': no usable {spec.view} examples in {data.path or result.source}"
        )
    counts.view_groups = len(view)
    return view, counts


def tokenize_view(
    view: list[PromptGroup], tokenizer, config: TrainConfig, counts: ViewCounts
) -> list[TokenizedGroup]:
    if config.data.template is not None:  # the run's saved tokenizer keeps it for sampling
        tokenizer.chat_template = config.data.template
    groups, stats = tokenize(
        view, tokenizer, max_prompt_length=config.max_prompt_length, max_length=config.max_length
    )
    counts.tokenize = (
        dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(vars(stats))
    )
    if not groups:
        raise MethodDataError(
            f"method '{config.method}': every example was dropped by tokenization"
        )
    compared = sum(len(group.responses) > 1 for group in view)
    if compared and stats.identical_after_truncation == compared:
        raise ConfigError(
            f"max_length: truncation to {config.max_length} tokens (prompt up to "
            f"max_prompt_length={config.max_prompt_length}) leaves every group's responses "
            "identical, so training would have no gradient; raise max_length"
        )
    return groups


@dataclass(frozen=True)
class StepOrder:
    """Which groups each optimizer step trains on: a seeded shuffle per epoch.

    The order is a function of (seed, step) alone, so a resumed run picks up exactly where
    the interrupted one stopped. With `shuffle=False` (curriculum) the data order is kept.
    """

    num_groups: int
    batch_size: int
    seed: int
    shuffle: bool = True

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_groups / self.batch_size)

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_groups, generator=generator)
        else:
            order = torch.arange(self.num_groups)
        start = position * self.batch_size
        return order[start : start + self.batch_size].tolist()
