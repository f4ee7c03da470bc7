"""Training dynamics read from a run's metrics.jsonl: the seed study's Table 2, derived.

The seed paper reads training logs by hand to say which methods train stably (policy entropy,
reward margins, accuracies, gradient norms). Here each logged series gets a trend (rising,
falling, flat: the mean of its last third against its first third, counted only when the
change is both 5% of the series' scale and twice its standard error) and a stability grade
(the mean step-to-step change relative to the series' range), and a few readings become flags,
e.g. "likelihood of chosen responses fell" (likelihood displacement, Razin et al. 2024,
arXiv 2410.08847).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Table 2's columns: a display name and the metrics.jsonl keys that may carry it, first found wins.
SERIES = {
    "loss": ("loss",),
    "reward margin": ("rewards/margins",),
    "reward accuracy": ("rewards/accuracies",),
    "chosen log-prob": ("logps/chosen",),
    "rejected log-prob": ("logps/rejected",),
    "gradient norm": ("grad_norm",),
    "KL estimate": ("kto/kl", "ppo/kl", "kl"),
    "entropy": ("ppo/entropy", "entropy"),
}
RELATIVE_CHANGE = 0.05
STANDARD_ERRORS = 2.0


def read_metrics(path: Path) -> list[dict]:
    """The logged steps of a run; a half-written last line (a killed run) is ignored."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _variance(values: list[float]) -> float:
    mean = _mean(values)
    return sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)


def trend(values: list[float]) -> str:
    """'rising', 'falling' or 'flat': last third's mean against the first third's."""
    if len(values) < 3:
        return "flat"
    third = max(len(values) // 3, 1)
    first, last = values[:third], values[-third:]
    change = _mean(last) - _mean(first)
    scale = max(abs(_mean(first)), abs(_mean(last)), math.sqrt(_variance(values)), 1e-12)
    standard_error = math.sqrt(_variance(first) / len(first) + _variance(last) / len(last))
    if abs(change) < RELATIVE_CHANGE * scale or abs(change) <= STANDARD_ERRORS * standard_error:
        return "flat"
    return "rising" if change > 0 else "falling"


def stability(values: list[float]) -> str:
    """'smooth', 'noisy' or 'erratic' from the mean step-to-step change over the range."""
    if len(values) < 3:
        return "too short"
    spread = max(values) - min(values)
    if spread == 0:
        return "smooth"
    jitter = _mean([abs(b - a) for a, b in zip(values, values[1:], strict=False)]) / spread
    if jitter < 0.2:
        return "smooth"
    return "noisy" if jitter < 0.45 else "erratic"


def _third_means(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    third = max(len(values) // 3, 1)
    return _mean(values[:third]), _mean(values[-third:])


def _series(rows: list[dict], keys: tuple[str, ...]) -> tuple[str | None, list[float]]:
    for key in keys:
        values = [row[key] for row in rows if isinstance(row.get(key), (int, float))]
        if values:
            return key, [float(v) for v in values]
    return None, []


def describe_run(metrics_path: Path) -> dict:
    """Per series: key, start and end (means of the first and last thirds), trend and
    stability; plus the flags a reader should see."""
    rows = read_metrics(metrics_path)
    series = {}
    for name, keys in SERIES.items():
        key, values = _series(rows, keys)
        if key is None:
            continue
        finite = [v for v in values if math.isfinite(v)]
        start, end = _third_means(finite)
        series[name] = {
            "key": key,
            "steps": len(values),
            "start": start,
            "end": end,
            "trend": trend(finite),
            "stability": stability(finite),
            "non_finite": len(values) - len(finite),
        }
    return {"steps": len(rows), "series": series, "flags": flags(series)}


def flags(series: dict) -> list[str]:
    """Readings worth a reader's attention, in words."""

    def has(name: str, trend_name: str) -> bool:
        return name in series and series[name]["trend"] == trend_name

    found = []
    if any(s["non_finite"] for s in series.values()):
        found.append("non-finite values logged")
    if has("chosen log-prob", "falling"):
        found.append("likelihood of chosen responses fell")
    if has("gradient norm", "rising"):
        found.append("gradient norm grew")
    if has("KL estimate", "rising"):
        found.append("KL estimate grew")
    if has("entropy", "falling"):
        found.append("entropy fell")
    if "loss" in series and series["loss"]["trend"] != "falling":
        found.append(f"loss did not fall ({series['loss']['trend']})")
    accuracy = series.get("reward accuracy")
    if accuracy and accuracy["end"] is not None and accuracy["end"] <= 0.55:
        found.append("reward accuracy ended near chance")
    if any(s["stability"] == "erratic" for s in series.values()):
        erratic = [name for name, s in series.items() if s["stability"] == "erratic"]
        found.append("erratic: " + ", ".join(erratic))
    return found
