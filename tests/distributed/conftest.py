"""Small data files for multi-process runs, and a private cache per test."""

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
    "a film about robots and actors",
    "what was the plot?",
]
GOOD = [
    "the movie was great and the actors were wonderful",
    "mix flour, water and yeast, then bake it.",
    "my cat knocks cups off the table",
    "wonderful robots and great actors",
    "great film",
    "the actors were wonderful",
    "great acting from every robot",
    "a wonderful plot",
]
BAD = [
    "a terrible film",
    "bad acting",
    "the plot was boring",
    "terrible and boring",
    "bad film",
    "boring",
    "bad robots",
    "terrible",
]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    return cache


@pytest.fixture()
def data_files(tmp_path):
    """paired, binary and scored (4 responses a prompt) versions of the same 8 prompts."""
    paired = [
        {"prompt": p, "chosen": g, "rejected": b}
        for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)
    ]
    binary = [
        {"prompt": p, "completion": g, "label": True} for p, g in zip(PROMPTS, GOOD, strict=True)
    ]
    binary += [
        {"prompt": p, "completion": b, "label": False} for p, b in zip(PROMPTS, BAD, strict=True)
    ]
    scored = [
        {"prompt": p, "responses": [g, b, f"{g} and {b}", "ok"], "scores": [9.0, 2.0, 5.0, 4.0]}
        for p, g, b in zip(PROMPTS, GOOD, BAD, strict=True)
    ]
    return {
        "paired": _write(tmp_path / "paired.jsonl", paired),
        "binary": _write(tmp_path / "binary.jsonl", binary),
        "scored": _write(tmp_path / "scored.jsonl", scored),
    }
