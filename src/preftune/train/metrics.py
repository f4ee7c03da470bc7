"""Metrics: averaged over a step's micro-batches, one JSON line per logging step; the run's speed
and peak memory for summary.json."""

from __future__ import annotations

import math
import resource
import statistics
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from preftune.io import JsonlAppender, read_jsonl

# differ between otherwise identical runs
TIMING_KEYS = (
    "tokens_per_s",
    "elapsed_s",
    "step_seconds",
    "samples_per_second",
    "generation_share",
)


def weighted_mean(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Average each metric over micro-batches, weighted by their number of groups."""
    totals: dict[str, float] = {}
    weights: dict[str, int] = {}
    for weight, metrics in parts:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                totals[name] = totals.get(name, 0.0) + weight * float(value)
                weights[name] = weights.get(name, 0) + weight
    return {name: totals[name] / weights[name] for name in totals}


class MetricsLog:
    """Appends one line per logged step to `metrics.jsonl` and remembers the last one."""

    def __init__(self, path: Path):
        rows = read_jsonl(path)
        self.last: dict = rows[-1] if rows else {}
        self._appender = JsonlAppender(path)

    def write(self, record: dict) -> None:
        self.last = record
        self._appender.write(record)

    def close(self) -> None:
        self._appender.close()


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """This process's peak memory so far and what was measured: CUDA's allocated tensors on a
    GPU, the process's maximum resident set size (RSS) otherwise."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10), "process max RSS"


@dataclass
class Progress:
    """A run's totals, carried across resumes in its checkpoints' state.json: tokens, wall time
    (`elapsed_s`, at the last checkpoint), time inside optimizer steps, the seconds of every
    step but each session's first (which pays for warm-up) and the peak memory.

    >>> progress = Progress()
    >>> for seconds in (9.0, 1.0, 3.0, 2.0):
    ...     progress.add_step(seconds, tokens=150, warm_up=seconds == 9.0)
    >>> progress.speed()["s_per_step_median"], progress.speed()["tokens_per_s"]
    (2.0, 40.0)
    """

    tokens: int = 0
    elapsed_s: float = 0.0
    train_seconds: float = 0.0
    steady_step_seconds: list[float] = field(default_factory=list)
    peak_memory_mib: float = 0.0

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        """From a checkpoint's state (keys this class does not know are the loop's)."""
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})

    def add_step(self, seconds: float, tokens: int, *, warm_up: bool) -> None:
        self.tokens += tokens
        self.train_seconds += seconds
        if not warm_up:
            self.steady_step_seconds.append(seconds)

    def note_memory(self, device: torch.device) -> str:
        """Update the peak with this session's; returns what was measured."""
        peak, measure = peak_memory_mib(device)
        self.peak_memory_mib = max(self.peak_memory_mib, peak)
        return measure

    def speed(self) -> dict:
        """summary.json's speed: the median s/step over the steady steps, tokens/s over the time
        spent in steps."""
        steady = self.steady_step_seconds
        return {
            "s_per_step_median": statistics.median(steady) if steady else None,
            "s_per_step_note": (
                f"median over {len(steady)} steps, leaving out the first step of each session "
                "(warm-up)"
            ),
            "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds > 0 else None,
            "train_seconds": self.train_seconds,
        }
