"""SmolLM2-135M-Instruct trains for 2 steps with a method of each view (slow: loads the model)."""

import json
import math

import pytest

from preftune.config import build_train_config
from preftune.train import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("method", "data_fixture"),
    [
        ("dpo", "paired_file"),
        ("kto", "paired_file"),
        ("mppo-pair-mnm", "scored_file"),
        ("sft", "paired_file"),
    ],
)
def test_smollm2_trains_two_steps(method, data_fixture, tmp_path, monkeypatch, request):
    monkeypatch.delenv("PREFTUNE_CACHE")  # the user's cache: the demo model is converted once
    config = build_train_config(
        {
            "model": "smollm2-135m-instruct",
            "method": method,
            "data": {"path": str(request.getfixturevalue(data_fixture)), "limit": 4},
            "batch_size": 2,
            "max_steps": 2,
            "max_length": 64,
            "max_prompt_length": 32,
            "lr": 1e-5,
            "trainable_layers": 2,
            "output_dir": str(tmp_path / "runs"),
        }
    )
    lines = [json.loads(x) for x in (train(config) / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(math.isfinite(line["loss"]) for line in lines)
    if method != "sft":
        assert "rewards/accuracies" in lines[-1]
