"""The same global batch gives the same loss, metrics and update on 1 process or 2 (issue 8).

Two CPU processes (gloo: accelerate's MULTI_CPU mode under torchrun) against one process, for
methods whose loss spans the batch (KTO's KL point z, BCO's running reward mean, RPO's
contrast matrix, MPPO's ranked lists), DPO with an uneven split (3 + 2 groups: a mean of means
would be wrong), and a DPO run with accumulation interrupted mid-step and resumed from its
checkpoint. float32, 1e-5.
Select with `pytest -m dist`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preftune.config import build_train_config
from preftune.train import train

pytestmark = pytest.mark.dist  # 35-60 s on a shared 2-core machine


def _jobs(data: dict, model_dir, output_dir: Path, run_config) -> list[dict]:
    common = run_config(model_dir, output_dir, lr=0.1)

    def job(method, path, interrupt_at=None, **values):
        config = {**common, "method": method, "data": {"path": str(path)}, **values}
        return {"config": config, "interrupt_at": interrupt_at}

    return [
        job("dpo", data["paired"], run_name="dpo", batch_size=5),
        job("kto", data["binary"], run_name="kto", batch_size=6),
        job("bco", data["binary"], run_name="bco", batch_size=6, max_steps=3),  # running mean
        job("rpo", data["paired"], run_name="rpo", batch_size=4, prompt_embedder=str(model_dir)),
        job("mppo-pair-mnm", data["scored"], run_name="mppo", batch_size=3, lr=10.0),
        # 2 micro-batches a step on each process; stopped in step 2, resumed from step 1's checkpoint
        job(
            "dpo",
            data["paired"],
            interrupt_at=4,
            run_name="dpo-resumed",
            batch_size=4,
            micro_batch_size=1,
            save_every=1,
            max_steps=3,
        ),
    ]


def test_one_and_two_processes_train_the_same(
    tiny_model_dir, data_files, run_config, one_and_two, same_runs
):
    def run_one(jobs):
        for job in jobs:
            train(build_train_config(job["config"]))  # straight through, one process

    one, two, start = one_and_two(
        lambda folder: _jobs(data_files, tiny_model_dir, folder, run_config), run_one
    )
    for name in ("dpo", "kto", "bco", "rpo", "mppo", "dpo-resumed"):
        same_runs(one / name, two / name, start)

    resumed = two / "dpo-resumed"
    assert [p.name for p in (resumed / "checkpoints").iterdir()] == ["step-3"]
    assert json.loads((resumed / "summary.json").read_text())["steps"] == 3


def test_cli_run_under_two_processes_reports_once(
    tmp_path, tiny_model_dir, data_files, two_processes
):
    overrides = [
        f"model={tiny_model_dir}",
        f"data.path={data_files['paired']}",
        "method=dpo",
        "batch_size=4",
        "max_steps=1",
        "max_length=64",
        "max_prompt_length=32",
        f"output_dir={tmp_path / 'runs'}",
        "run_name=cli",
    ]
    stdout = two_processes(["-m", "preftune.cli", "train", *overrides])
    assert stdout.count("run finished") == 1, stdout
    assert json.loads((tmp_path / "runs" / "cli" / "summary.json").read_text())["steps"] == 1
