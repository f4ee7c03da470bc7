"""`preftune rm` on 2 processes trains as on 1: the global batch's loss, metrics, held-out
accuracy and update, for Bradley-Terry with score margins and centering (a batch mean of the
squared reward sums), Plackett-Luce over ragged lists (4 responses a prompt, padded where a
process's lists are shorter) and a run with 2 micro-batches per process, interrupted mid-step
and resumed from its checkpoint. float32, 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preftune.config import RewardModelConfig
from preftune.train.reward_model import train_reward_model

pytestmark = pytest.mark.dist  # about 30 s on a shared 2-core machine


def _jobs(data: dict, model_dir, output_dir: Path, run_config) -> list[dict]:
    common = run_config(model_dir, output_dir)

    def job(path, interrupt_at=None, heldout_fraction=0.1, **values):
        data = {"path": str(path), "heldout_fraction": heldout_fraction}
        config = {**common, "data": data, **values}
        interrupt = "preftune.train.reward_model:bradley_terry"
        return {
            "kind": "rm",
            "config": config,
            "interrupt_at": interrupt_at,
            "interrupt_in": interrupt,
        }

    return [
        # 7 training pairs (1 prompt held out): steps of 5 groups, split 3 + 2
        job(
            data["scored"],
            run_name="bt",
            batch_size=5,
            margin="scores",
            margin_scale=0.1,
            centering=0.1,
        ),
        job(data["scored"], run_name="pl", objective="plackett-luce", batch_size=4, centering=0.1),
        job(
            data["paired"],
            interrupt_at=4,  # step 2's second micro-batch
            heldout_fraction=0,  # 8 pairs: steps of 4, 2 micro-batches of 1 per process
            run_name="resumed",
            batch_size=4,
            micro_batch_size=1,
            save_every=1,
            max_steps=3,
        ),
    ]


def test_one_and_two_processes_train_the_same_reward_model(
    tiny_model_dir, data_files, run_config, one_and_two, same_runs
):
    def run_one(jobs):
        for job in jobs:
            train_reward_model(RewardModelConfig(**job["config"]))

    one, two, start = one_and_two(
        lambda folder: _jobs(data_files, tiny_model_dir, folder, run_config), run_one
    )
    for name in ("bt", "pl", "resumed"):
        same_runs(one / name, two / name, start)
        summary_one = json.loads((one / name / "summary.json").read_text())
        summary_two = json.loads((two / name / "summary.json").read_text())
        assert summary_two["heldout"] == summary_one["heldout"]
        assert summary_two["tokens"] == summary_one["tokens"]
    assert json.loads((one / "bt" / "summary.json").read_text())["heldout"]["pairs"] > 0
    assert [p.name for p in (two / "resumed" / "checkpoints").iterdir()] == ["step-3"]
