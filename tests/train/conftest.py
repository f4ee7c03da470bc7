"""Training fixtures: small data files in each shape, a private cache, a config builder."""

from __future__ import annotations

import json

import pytest

PROMPTS = [
    "write a short review of a film",
    "how do I bake bread?",
    "summarize the post: my cat",
    "write a review of a science fiction film",
    "review a film about robots",
    "tell me about the movie",
]
GOOD = [
    "the movie was great and the actors were wonderful",
    "mix flour, water and yeast, then bake it.",
    "my cat knocks cups off the table",
    "wonderful robots and great actors",
    "great film",
    "the actors were wonderful",
]
BAD = [
    "a terrible film",
    "bad acting",
    "the plot was boring",
    "terrible and boring",
    "bad film",
    "boring",
]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Reference log-probs and embeddings go to a per-test cache, never ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    return cache


@pytest.fixture()
def paired_file(tmp_path):
    rows = [
        {"prompt": p, "chosen": g, "rejected": b}
        for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)
    ]
    return _write(tmp_path / "paired.jsonl", rows)


@pytest.fixture()
def binary_file(tmp_path):
    rows = [
        {"prompt": p, "completion": g, "label": True} for p, g in zip(PROMPTS, GOOD, strict=True)
    ]
    rows += [
        {"prompt": p, "completion": b, "label": False} for p, b in zip(PROMPTS, BAD, strict=True)
    ]
    return _write(tmp_path / "binary.jsonl", rows)


@pytest.fixture()
def scored_file(tmp_path):
    rows = [
        {"prompt": p, "responses": [g, b, f"{g} and {b}", "ok"], "scores": [9.0, 2.0, 5.0, 4.0]}
        for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)
    ]
    return _write(tmp_path / "scored.jsonl", rows)


@pytest.fixture()
def make_config(tmp_path, tiny_model_dir):
    """A small, fast TrainConfig for the tiny model; keyword arguments override."""
    from preftune.config import build_train_config

    def build(method: str, data, **overrides):
        values = {
            "model": str(tiny_model_dir),
            "method": method,
            "data": {"path": str(data)},
            "batch_size": 4,
            "micro_batch_size": 2,
            "lr": 1e-3,
            "max_length": 64,
            "max_prompt_length": 32,
            "output_dir": str(tmp_path / "runs"),
            **overrides,
        }
        return build_train_config(values)

    return build
