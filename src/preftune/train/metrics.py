"""Metrics: averaged over a step's micro-batches, one JSON line per logging step; the run's speed
and peak memory for summary.json."""

from __future__ import annotations

import math
import resource
import statistics
import sys
from pathlib import Path

import torch

from preftune.io import JsonlAppender, read_jsonl

# differ between otherwise identical runs
TIMING_KEYS = ("tokens_per_s", "elapsed_s", "step_seconds")


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


def speed_summary(steady_seconds: list[float], train_seconds: float, tokens: int) -> dict:
    """summary.json's speed: median s/step over the steps after each session's first (which
    pays for warm-up), and tokens/s over the time spent in steps.

    >>> speed_summary([1.0, 3.0, 2.0], 10.0, 500)["s_per_step_median"]
    2.0
    """
    median = statistics.median(steady_seconds) if steady_seconds else None
    return {
        "s_per_step_median": median,
        "s_per_step_note": (
            f"median over {len(steady_seconds)} steps, leaving out the first step of each "
            "session (warm-up)"
        ),
        "tokens_per_s": tokens / train_seconds if train_seconds > 0 else None,
        "train_seconds": train_seconds,
    }
