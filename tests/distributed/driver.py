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
from preftune.judges import gold_names, register_gold
from preftune.train import train
from preftune.train.processes import process_count
from preftune.train.reward_model import train_reward_model

RUNNERS = {
    "train": lambda config: train(build_train_config(config)),
    "rm": lambda config: train_reward_model(RewardModelConfig(**config)),
}


class Interrupted(Exception):
    pass


def text_length(prompt, response: str) -> float:
    """A toy reward for online runs ("dist-length"): the response's length in characters / 10,
    which differs between a random tiny model's samples."""
    return len(response) / 10


def distinct_text_length(prompt, response: str) -> float:
    """ "dist-length" with ties between different texts broken by their code points (< 1e-3,
    never reordering two lengths), so a prompt's samples give a preference pair whatever
    the sampler draws."""
    return text_length(prompt, response) + sum(map(ord, response)) * 1e-9


if "dist-length" not in gold_names():  # pytest's doctest collection imports this module too
    register_gold("dist-length", text_length)
    register_gold("dist-length-distinct", distinct_text_length)


def interrupting(function, at: int):
    calls = {"n": 0}

    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise Interrupted(f"interrupted at call {at}")
        return function(*args, **kwargs)

    return call


def per_prompt_sampling(rollout) -> tuple:
    """`rollout.Sampler.__call__` and `rollout.sample_batch` such that each sequence is sampled
    alone, seeded by (its prompt, the sampler call, which of the prompt's samples it is): the
    same draws whichever process samples the prompt, since every process calls its sampler
    once a step. (The count restarts with the process: not for resumed runs.)"""
    sampler_call, sample_batch = rollout.Sampler.__call__, rollout.sample_batch
    state = {"call": 0, "seen": {}}

    def call(self, model, rows):
        state["call"] += 1
        state["seen"] = {}
        return sampler_call(self, model, rows)

    def sample(model, prompts, *args, **kwargs):
        results = []
        for prompt in prompts:
            key = tuple(prompt)
            state["seen"][key] = state["seen"].get(key, 0) + 1
            with torch.random.fork_rng():
                torch.manual_seed(hash((key, state["call"], state["seen"][key])) % 2**31)
                results += sample_batch(model, [prompt], *args, **kwargs)
        return results

    return call, sample


def run_jobs(jobs: list[dict]) -> None:
    """Run `jobs` (see the module's docstring) one after another in this process."""
    rollout = importlib.import_module("preftune.train.online.rollout")
    sampler_call, sample_batch = rollout.Sampler.__call__, rollout.sample_batch
    for job in jobs:
        config, run = job["config"], RUNNERS[job.get("kind", "train")]
        if job.get("sampling") == "per-prompt":
            rollout.Sampler.__call__, rollout.sample_batch = per_prompt_sampling(rollout)
        try:
            if job.get("interrupt_at"):
                interrupted_run(run, config, job)
                config = {**config, "resume": True}
            run(config)
        finally:
            rollout.Sampler.__call__, rollout.sample_batch = sampler_call, sample_batch


def interrupted_run(run, config: dict, job: dict) -> None:
    """`run(config)` stopped at the `interrupt_at`-th call of `interrupt_in`."""
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


def main(path: str, processes: int) -> None:
    torch.set_num_threads(1)
    run_jobs(json.loads(Path(path).read_text()))
    if process_count() != processes:
        raise SystemExit(f"expected {processes} processes, training saw {process_count()}")
    if torch.distributed.is_initialized():  # as `preftune`'s CLI does on its way out
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
