"""Runs training jobs in one multi-process launch (so the processes start once for all).

Usage: ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 driver.py JOBS.json 2, where JOBS.json
is a list of {"config": {...TrainConfig values...}, "interrupt_at": N or null} and 2 the number
of processes accelerate must see (it refuses to go on otherwise: `accelerate launch --cpu`
silently starts one process without mpirun). With `interrupt_at`, every
process raises at its Nth loss computation (the same point everywhere), as a crash would stop
the run; the job is then resumed from its last checkpoint with `resume: true`.
"""

import json
import sys
from pathlib import Path

import torch

import preftune.train.trainer as trainer_module
from preftune.config import build_train_config
from preftune.train import train
from preftune.train.processes import process_count


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


def main(path: str, processes: int) -> None:
    torch.set_num_threads(1)
    compute = trainer_module.compute
    for job in json.loads(Path(path).read_text()):
        config = job["config"]
        if job.get("interrupt_at"):
            trainer_module.compute = interrupting(compute, job["interrupt_at"])
            try:
                train(build_train_config(config))
                raise SystemExit("the run was not interrupted")
            except Interrupted:
                pass
            trainer_module.compute = compute
            config = {**config, "resume": True}
        train(build_train_config(config))
        if process_count() != processes:
            raise SystemExit(f"expected {processes} processes, training saw {process_count()}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
