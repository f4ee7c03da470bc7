"""Training dynamics read from a run's metrics.jsonl, the counterpart of Table 2 of the
HH/TL;DR comparison study (the published comparison of SFT, PPO, DPO, SLiC, IPO, KTO and RPO
on Mistral-7B with Anthropic HH and TL;DR).

That study reads training logs by hand to say which methods train stably (policy entropy,
reward margins, accuracies, gradient norms). Here each logged series gets a trend and a
stability grade, and a few readings become flags, e.g. "likelihood of chosen responses fell"
(likelihood displacement, Razin et al. 2024, arXiv 2410.08847).

A trend is the Theil-Sen slope over steps (the median of the pairwise slopes, Sen 1968) with
its 95% interval (`scipy.stats.theilslopes`): a series is rising or falling only when the
interval excludes zero and the fitted change over the run is at least 5% of the series' scale.
Per-batch losses are noisy, so a short run whose loss wanders is "flat", never flagged; a flag
is raised only when its trend holds under that test. Spikes are steps further than 6 robust
standard deviations (1.4826 × the median absolute deviation) from the fitted line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import median_abs_deviation, theilslopes

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
CONFIDENCE = 0.95
SPIKE = 6.0


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


def trend_fit(values: list[float]) -> dict:
    """Theil-Sen slope per step with its 95% interval, the trend it supports, and the number
    of spikes: steps further than SPIKE robust standard deviations (1.4826 MAD) off the line."""
    if len(values) < 3:
        return {"slope": None, "slope_ci": None, "trend": "flat", "spikes": 0}
    slope, intercept, low, high = theilslopes(values, alpha=CONFIDENCE)
    change = abs(slope) * (len(values) - 1)
    scale = max(abs(_mean(values)), max(values) - min(values), 1e-12)
    direction = "flat"
    if change >= RELATIVE_CHANGE * scale and (low > 0 or high < 0):
        direction = "rising" if low > 0 else "falling"
    residuals = np.asarray(values) - (intercept + slope * np.arange(len(values)))
    spread = median_abs_deviation(residuals, scale="normal")
    spikes = int((np.abs(residuals - np.median(residuals)) > SPIKE * spread).sum()) if spread else 0
    return {
        "slope": float(slope),
        "slope_ci": [float(low), float(high)],
        "trend": direction,
        "spikes": spikes,
    }


def trend(values: list[float]) -> str:
    """'rising', 'falling' or 'flat' (see the module docstring for the test)."""
    return trend_fit(values)["trend"]


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
            **trend_fit(finite),
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
    if has("loss", "rising"):
        found.append("loss rose")
    accuracy = series.get("reward accuracy")
    if accuracy and accuracy["end"] is not None and accuracy["end"] <= 0.55:
        found.append("reward accuracy ended near chance")
    spiky = [f"{name} ({s['spikes']} steps)" for name, s in series.items() if s["spikes"]]
    if spiky:
        found.append("spikes: " + ", ".join(spiky))
    return found
