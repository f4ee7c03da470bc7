"""Study fixtures: a tiny sentiment study on the tiny random model, and a gold reward such a
model's answers can earn."""

from __future__ import annotations

import dataclasses

import pytest

import preftune.tasks as tasks


@pytest.fixture()
def tiny_study(tiny_model_dir):
    """`tiny_study(methods=("dpo", "simpo"))`: the config dict of a study of these methods on
    6 training and 4 test prompts of the sentiment task, with small batches and answers."""

    def build(methods=("dpo", "simpo")) -> dict:
        return {
            "name": "tiny",
            "model": str(tiny_model_dir),
            "seed": 0,
            "data": {
                "train": {"task": "sentiment", "limit": 6},
                "heldout": {"task": "sentiment", "limit": 4},
                "on_policy": {"samples_per_prompt": 3, "max_new_tokens": 8, "batch_size": 6},
            },
            "train": {
                "optimizer": "adamw",
                "lr": 1e-3,
                "batch_size": 2,
                "max_prompt_length": 48,
                "max_length": 64,
                "data": {"pairs": "top-vs-worst"},
            },
            "methods": [{"method": name} for name in methods],
            "evaluation": {
                "num_prompts": 4,
                "max_new_tokens": 8,
                "batch_size": 4,
                "evaluations": [{"name": "gold", "judge": {"type": "gold"}}],
            },
        }

    return build


@pytest.fixture()
def length_gold(monkeypatch):
    """A random tiny model rarely writes words VADER knows: reward the answer's length instead,
    so the sampled lists have real preferences (the gold function is the only stand-in; it is
    also the default reward of online methods in a sentiment study)."""
    task = dataclasses.replace(
        tasks.TASKS["sentiment"], gold=lambda prompt, response: float(len(response))
    )
    monkeypatch.setitem(tasks.TASKS, "sentiment", task)
