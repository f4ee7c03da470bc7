"""Metrics: averaged over a step's micro-batches, one JSON line per logging step."""

from __future__ import annotations

import json
import math
from pathlib import Path

TIMING_KEYS = ("tokens_per_s", "elapsed_s")  # differ between otherwise identical runs


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
        self.path = path
        self.last: dict = {}
        if path.exists():
            lines = path.read_text().splitlines()
            self.last = json.loads(lines[-1]) if lines else {}

    def write(self, record: dict) -> None:
        self.last = record
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
