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
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from preftune.config import build_train_config
from preftune.train import train
from preftune.train.metrics import TIMING_KEYS

pytestmark = pytest.mark.dist  # 35-60 s on a shared 2-core machine

DRIVER = Path(__file__).with_name("driver.py")
TOLERANCE = 1e-5


def _jobs(data: dict, model_dir, output_dir: Path) -> list[dict]:
    common = {
        "model": str(model_dir),
        "optimizer": "sgd",
        "lr": 0.1,
        "warmup_steps": 0,
        "max_steps": 2,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(output_dir),
    }

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


def _launch_two_processes(jobs: list[dict], tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(jobs))
    _two_processes([str(DRIVER), str(path), "2"], tmp_path)


def _two_processes(arguments: list[str], tmp_path: Path) -> str:
    """torchrun with ACCELERATE_USE_CPU: accelerate's gloo multi-CPU mode. (`accelerate launch
    --cpu --num_processes 2` starts a single process unless mpirun is set up.) Returns stdout."""
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "PREFTUNE_CACHE": str(tmp_path / "cache-2"),  # reference scored again, sharded
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, f"--master_port={_free_port()}", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _weights(run_dir: Path) -> dict:
    return load_file(run_dir / "final" / "model.safetensors")


def test_one_and_two_processes_train_the_same(tmp_path, tiny_model_dir, data_files):
    one, two = tmp_path / "one", tmp_path / "two"
    for job in _jobs(data_files, tiny_model_dir, one):
        train(build_train_config(job["config"]))  # straight through, one process
    _launch_two_processes(_jobs(data_files, tiny_model_dir, two), tmp_path)

    start = load_file(Path(tiny_model_dir) / "model.safetensors")
    for name in ("dpo", "kto", "bco", "rpo", "mppo", "dpo-resumed"):
        expected, got = _metrics(one / name), _metrics(two / name)
        assert [m["step"] for m in got] == [m["step"] for m in expected], name
        for step_expected, step_got in zip(expected, got, strict=True):
            assert step_got.keys() == step_expected.keys(), name
            for key, value in step_expected.items():
                assert math.isclose(step_got[key], value, rel_tol=TOLERANCE, abs_tol=TOLERANCE), (
                    f"{name} step {step_expected['step']} {key}: {step_got[key]} != {value}"
                )
        assert expected[-1]["loss"] != expected[0]["loss"], f"{name}: training changed nothing"

        weights_one, weights_two = _weights(one / name), _weights(two / name)
        assert weights_two.keys() == weights_one.keys()
        moved = max((weights_one[k] - start[k]).abs().max().item() for k in start)
        assert moved > 1e-3, f"{name}: the update is too small to compare"
        gap = max((weights_two[k] - weights_one[k]).abs().max().item() for k in weights_one)
        assert gap <= TOLERANCE, f"{name}: 1 and 2 processes differ by {gap}"

    resumed = two / "dpo-resumed"
    assert [p.name for p in (resumed / "checkpoints").iterdir()] == ["step-3"]
    assert json.loads((resumed / "summary.json").read_text())["steps"] == 3


def test_cli_run_under_two_processes_reports_once(tmp_path, tiny_model_dir, data_files):
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
    stdout = _two_processes(["-m", "preftune.cli", "train", *overrides], tmp_path)
    assert stdout.count("run finished") == 1, stdout
    assert json.loads((tmp_path / "runs" / "cli" / "summary.json").read_text())["steps"] == 1
