"""Small data files for multi-process runs, a private cache per test, and the launcher of
2-process jobs (torchrun, gloo) with the helpers that compare their runs."""

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

from preftune.testing import write_preference_files
from preftune.train.metrics import TIMING_KEYS

DRIVER = Path(__file__).with_name("driver.py")
TOLERANCE = 1e-5  # float32


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    return cache


@pytest.fixture()
def data_files(tmp_path):
    """paired, binary and scored (4 responses a prompt) versions of the same 8 prompts."""
    return write_preference_files(tmp_path)


@pytest.fixture()
def two_processes(tmp_path):
    """Runs `arguments` under torchrun with ACCELERATE_USE_CPU: accelerate's gloo multi-CPU
    mode. (`accelerate launch --cpu --num_processes 2` starts a single process unless mpirun
    is set up.) Returns stdout."""

    def launch(arguments: list[str]) -> str:
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

    return launch


@pytest.fixture()
def launch_jobs(tmp_path, two_processes):
    """Runs driver.py's jobs in one 2-process launch."""

    def launch(jobs: list[dict]) -> None:
        path = tmp_path / "jobs.json"
        path.write_text(json.dumps(jobs))
        two_processes([str(DRIVER), str(path), "2"])

    return launch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without its timings."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def final_weights(run_dir: Path, name: str = "model.safetensors") -> dict:
    return load_file(run_dir / "final" / name)


def assert_same_runs(one: Path, two: Path, start: dict, *, skip=(), loss_moves=True) -> None:
    """Every logged metric (but `skip`) of every step, and final/'s weights, within TOLERANCE;
    the training moved the weights (and the loss, unless `loss_moves` is False: RLOO's is 0 at
    ratio 1, its leave-one-out advantages summing to 0), so the comparison means something."""
    expected, got = run_metrics(one), run_metrics(two)
    assert [m["step"] for m in got] == [m["step"] for m in expected], one.name
    for step_expected, step_got in zip(expected, got, strict=True):
        assert step_got.keys() == step_expected.keys(), one.name
        for key, value in step_expected.items():
            if key in skip:
                continue
            assert math.isclose(step_got[key], value, rel_tol=TOLERANCE, abs_tol=TOLERANCE), (
                f"{one.name} step {step_expected['step']} {key}: {step_got[key]} != {value}"
            )
    losses = [m["loss"] for m in expected if "loss" in m]
    assert losses[-1] != losses[0] or not loss_moves, f"{one.name}: training changed nothing"
    weights_one, weights_two = final_weights(one), final_weights(two)
    assert weights_two.keys() == weights_one.keys()
    moved = max((weights_one[k] - start[k]).abs().max().item() for k in start if k in weights_one)
    assert moved > 1e-3, f"{one.name}: the update is too small to compare"
    gap = max((weights_two[k] - weights_one[k]).abs().max().item() for k in weights_one)
    assert gap <= TOLERANCE, f"{one.name}: 1 and 2 processes differ by {gap}"


@pytest.fixture()
def same_runs():
    """`assert_same_runs`, for the tests."""
    return assert_same_runs


@pytest.fixture(scope="session")
def driver():
    """driver.py as a module (loaded once: it registers a gold reward), to run its jobs on one
    process in the test itself."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("preftune_dist_driver", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_run(model_dir, output_dir: Path, **values) -> dict:
    """A short run's config on the tiny model: plain SGD, 2 steps, short sequences."""
    return {
        "model": str(model_dir),
        "optimizer": "sgd",
        "lr": 0.5,
        "warmup_steps": 0,
        "max_steps": 2,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(output_dir),
        **values,
    }


@pytest.fixture()
def run_config():
    """`tiny_run`, for the tests."""
    return tiny_run


@pytest.fixture()
def one_and_two(tmp_path, tiny_model_dir, launch_jobs):
    """Runs the jobs `jobs_for(output_dir)` gives on one process (`run_one`, in this process)
    and on two (driver.py); returns the two output folders and the tiny model's weights."""

    def run(jobs_for, run_one) -> tuple[Path, Path, dict]:
        one, two = tmp_path / "one", tmp_path / "two"
        run_one(jobs_for(one))
        launch_jobs(jobs_for(two))
        return one, two, load_file(Path(tiny_model_dir) / "model.safetensors")

    return run
