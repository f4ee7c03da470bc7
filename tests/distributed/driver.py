"""Runs training jobs in one multi-process launch (so the processes start once for all).

Usage: ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 driver.py JOBS.json 2, where JOBS.json
is a list of {"config": {...}, "kind": "train" (default) or "rm", "interrupt_at": N or null,
"interrupt_in": "module:function", "sampling": "per-prompt" or null} and 2 the number of
processes accelerate must see (it refuses to go on otherwise: `accelerate launch --cpu`
silently starts one process without mpirun).

With `interrupt_at`, every process raises at its Nth call of `interrupt_in` (default: the
preference loss, `preftune.train.trainer:compute`; the same point everywhere), as a crash would
stop the run; the job is then resumed from its last checkpoint with `resume: true`.

`sampling: per-prompt` makes online sampling a function of the prompt alone (see
`per_prompt_sampling`), so a run samples the same on 1 process and on 2.
"""

import importlib
import json
import sys
from pathlib import Path

import torch

from preftune.config import RewardModelConfig, build_train_config
from preftune.judges import register_gold
from preftune.train import train
from preftune.train.processes import process_count
from preftune.train.reward_model import train_reward_model

RUNNERS = {
    "train": lambda config: train(build_train_config(config)),
    "rm": lambda config: train_reward_model(RewardModelConfig(**config)),
}


class Interrupted(Exception):
    pass


def count_e(prompt, response: str) -> float:
    """The online tests' toy reward (tests/train/test_online.py)."""
    return float(response.count("e"))


def interrupting(function, at: int):
    calls = {"n": 0}

    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise Interrupted(f"interrupted at call {at}")
        return function(*args, **kwargs)

    return call


def per_prompt_sampling(sample_batch):
    """`sample_batch` that samples each sequence alone, seeded by its prompt and by how often
    that prompt was sampled before in this process: the same draws whichever process samples
    the prompt (each prompt is sampled by one process per step, the same steps in every run)."""
    seen: dict[tuple, int] = {}

    def sample(model, prompts, *args, **kwargs):
        results = []
        for prompt in prompts:
            key = tuple(prompt)
            seen[key] = seen.get(key, 0) + 1
            with torch.random.fork_rng():
                torch.manual_seed(hash((key, seen[key])) % 2**31)
                results += sample_batch(model, [prompt], *args, **kwargs)
        return results

    return sample


def main(path: str, processes: int) -> None:
    torch.set_num_threads(1)
    register_gold("test-count-e", count_e)
    rollout = importlib.import_module("preftune.train.online.rollout")
    sample_batch = rollout.sample_batch
    for job in json.loads(Path(path).read_text()):
        config, run = job["config"], RUNNERS[job.get("kind", "train")]
        rollout.sample_batch = (
            per_prompt_sampling(sample_batch)
            if job.get("sampling") == "per-prompt"
            else sample_batch
        )
        if job.get("interrupt_at"):
            module_name, name = job.get("interrupt_in", "preftune.train.trainer:compute").split(":")
            module = importlib.import_module(module_name)
            function = getattr(module, name)
            setattr(module, name, interrupting(function, job["interrupt_at"]))
            try:
                run(config)
                raise SystemExit("the run was not interrupted")
            except Interrupted:
                pass
            finally:
                setattr(module, name, function)
            config = {**config, "resume": True}
        run(config)
        if process_count() != processes:
            raise SystemExit(f"expected {processes} processes, training saw {process_count()}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
