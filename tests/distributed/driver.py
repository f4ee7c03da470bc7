"""Runs training jobs inside one `accelerate launch` (so the processes start once for all).

Usage: accelerate launch --num_processes 2 --cpu driver.py JOBS.json, where JOBS.json is a list
of {"config": {...TrainConfig values...}, "interrupt_at": N or null}. With `interrupt_at`, every
process raises at its Nth loss computation (the same point everywhere), as a crash would stop
the run; the job is then resumed from its last checkpoint with `resume: true`.
"""

import json
import sys
from pathlib import Path

import torch

import preftune.train.loop as loop
from preftune.config import build_train_config
from preftune.train import train


class Interrupted(Exception):
    pass


def interrupting(compute, at: int):
    calls = {"n": 0}

    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise Interrupted(f"interrupted at loss computation {at}")
        return compute(*args, **kwargs)

    return call


def main(path: str) -> None:
    torch.set_num_threads(1)
    compute = loop.compute
    for job in json.loads(Path(path).read_text()):
        config = job["config"]
        if job.get("interrupt_at"):
            loop.compute = interrupting(compute, job["interrupt_at"])
            try:
                train(build_train_config(config))
                raise SystemExit("the run was not interrupted")
            except Interrupted:
                pass
            loop.compute = compute
            config = {**config, "resume": True}
        train(build_train_config(config))


if __name__ == "__main__":
    main(sys.argv[1])
