"""Table 2's trends and flags: a noisy flat series is never flagged, a real trend is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from preftune.experiments.dynamics import describe_run, trend_fit


def test_theil_sen_slope_is_the_median_of_the_pairwise_slopes():
    # pairwise slopes of [0, 2, 1, 3]: 2, 0.5, 1, -1, 0.5, 2 -> median (0.5 + 1) / 2
    fit = trend_fit([0.0, 2.0, 1.0, 3.0])
    assert fit["slope"] == pytest.approx(0.75)
    assert fit["slope_ci"][0] <= 0.75 <= fit["slope_ci"][1]


def _run(tmp_path, name, losses):
    path = tmp_path / name / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(
        "".join(json.dumps({"step": i, "loss": v}) + "\n" for i, v in enumerate(losses))
    )
    return describe_run(path)


def test_a_noisy_loss_without_a_trend_is_flat_and_not_flagged(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.05, size=20)
    run = _run(tmp_path, "flat", list(0.69 + noise))
    assert run["series"]["loss"]["trend"] == "flat"
    assert run["flags"] == []


def test_a_noisy_falling_loss_is_falling(tmp_path):
    noise = np.random.default_rng(1).normal(0, 0.02, size=20)
    run = _run(tmp_path, "falling", list(0.69 - 0.01 * np.arange(20) + noise))
    assert run["series"]["loss"]["trend"] == "falling"
    assert run["series"]["loss"]["slope_ci"][1] < 0
    assert run["flags"] == []


def test_a_rising_loss_and_a_spike_are_flagged(tmp_path):
    rising = _run(tmp_path, "rising", [0.5 + 0.02 * i for i in range(15)])
    assert rising["series"]["loss"]["trend"] == "rising"
    assert "loss rose" in rising["flags"]
    losses = list(0.7 - 0.01 * np.arange(15) + np.random.default_rng(2).normal(0, 0.01, 15))
    losses[7] = 3.0
    spiky = _run(tmp_path, "spiky", losses)
    assert spiky["series"]["loss"]["spikes"] == 1
    assert "spikes: loss (1 steps)" in spiky["flags"]
