"""A run SIGKILLed (while training, and while saving) and resumed ends as if never stopped."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from preftune.config import build_train_config
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint
from preftune.train.metrics import TIMING_KEYS

# The child process trains and, with `die` = "compute:N", SIGKILLs itself at the Nth call of
# the loss, so the kill lands at an exact point instead of racing a timer.
CHILD = """
import json, os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[3]))  # as many threads as the uninterrupted run
from preftune.config import build_train_config
import preftune.train.trainer as trainer_module
from preftune.train import train

values, die = json.loads(sys.argv[1]), sys.argv[2]
where, _, count = die.partition(":")
calls = {"n": 0}

def dying(original):
    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(count):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return call

if where == "compute":
    trainer_module.compute = dying(trainer_module.compute)
train(build_train_config(values))
"""


def _run(values: dict, die: str = "never:0") -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(values), die, str(torch.get_num_threads())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def _metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS} for x in lines]


def test_sigkilled_run_resumes_to_the_same_weights_and_metrics(
    tmp_path, tiny_model_dir, paired_file
):
    values = {
        "model": str(tiny_model_dir),
        "method": "dpo",
        "data": {"path": str(paired_file)},
        "batch_size": 2,
        "micro_batch_size": 1,
        "max_steps": 6,  # 3 steps an epoch: the resumed run crosses an epoch boundary
        "save_every": 2,
        "lr": 1e-3,
        "optimizer": "adamw",
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(tmp_path / "runs"),
    }
    straight = train(build_train_config({**values, "run_name": "straight"}))  # in this process

    killed = tmp_path / "runs" / "killed"
    # 2 loss calls a step: call 9 is inside step 5, after the checkpoint of step 4.
    assert _run({**values, "run_name": "killed"}, "compute:9") == -signal.SIGKILL
    assert latest_checkpoint(killed).name == "step-4"
    assert len(_metrics(killed)) == 4
    assert not (killed / "summary.json").exists()

    resumed = {**values, "run_name": "killed", "resume": True}
    assert _run(resumed) == 0
    assert _metrics(killed) == _metrics(straight)
    assert len(_metrics(killed)) == 6
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(killed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_run_stopped_while_saving_keeps_its_previous_checkpoint(
    make_config, paired_file, monkeypatch
):
    import preftune.train.checkpoint as checkpoint

    straight = train(make_config("dpo", paired_file, max_steps=4, save_every=1, run_name="a"))
    real_save, writes = torch.save, {"n": 0}

    def failing_save(*args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 6:  # 4 files a checkpoint: inside the second one
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    config = make_config("dpo", paired_file, max_steps=4, save_every=1, run_name="b")
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert latest_checkpoint(config.run_dir).name == "step-1"
    assert list((config.run_dir / "checkpoints").glob(".partial-*"))

    resumed = train(config.model_copy(update={"resume": True}))
    assert _metrics(resumed) == _metrics(straight)
    assert not list((resumed / "checkpoints").glob(".partial-*"))
