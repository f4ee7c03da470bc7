"""The built-in sentiment task: the DPO paper's controlled sentiment generation, offline.

Rafailov et al. 2023 (arXiv 2305.18290, section 6.1) steer a model towards positive movie
reviews, scored by a sentiment classifier. Here the prompts are neutral requests for short
reviews of films, books, restaurants, products and places (templates in
`sentiment_prompts.json`), and the gold reward is VADER's compound sentiment score in [-1, 1]
(Hutto & Gilbert 2014), so the whole study runs without a download.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
from pathlib import Path

from preftune.errors import ConfigError

TEMPLATES_FILE = Path(__file__).with_name("sentiment_prompts.json")
CATALOGUE_SIZE = 600  # prompts in the task, every split together
HELDOUT_PERCENT = 25  # share of the catalogue kept for the test (the held-out prompts)
DEV_PERCENT = 10  # share kept for tuning (sweeps) and held-out preference pairs
SPLITS = ("train", "dev", "heldout")


def _split_of(prompt_id: str) -> str:
    """A prompt's split depends on its id only, so it never moves when sizes change."""
    bucket = int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % 100
    if bucket < HELDOUT_PERCENT:
        return "heldout"
    return "dev" if bucket < HELDOUT_PERCENT + DEV_PERCENT else "train"


@functools.cache
def catalogue() -> tuple[dict, ...]:
    """Every prompt of the task, in a fixed shuffled order: {"id", "prompt", "kind", "split"}."""
    spec = json.loads(TEMPLATES_FILE.read_text())["kinds"]
    prompts = []
    for kind, parts in spec.items():
        combos = itertools.product(range(len(parts["templates"])), parts["genres"], parts["topics"])
        for template_index, genre, topic in combos:
            text = parts["templates"][template_index].format(genre=genre, topic=topic)
            prompts.append({"kind": kind, "prompt": text})
    random.Random(0).shuffle(prompts)
    chosen = prompts[:CATALOGUE_SIZE]
    for index, prompt in enumerate(chosen):
        prompt["id"] = f"sentiment-{index:03d}"
        prompt["split"] = _split_of(prompt["id"])
    return tuple(chosen)


def prompts(split: str, limit: int | None = None) -> list[dict]:
    """The first `limit` prompts of `split` ("train", "dev" or "heldout", disjoint) as
    {"id", "prompt"} dicts."""
    if split not in SPLITS:
        raise ConfigError(f"sentiment task: split '{split}' is not one of {list(SPLITS)}")
    rows = [{"id": p["id"], "prompt": p["prompt"]} for p in catalogue() if p["split"] == split]
    if limit is not None and limit > len(rows):
        raise ConfigError(
            f"sentiment task: {limit} {split} prompts asked for, the task has {len(rows)}"
        )
    return rows[:limit]


@functools.cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(prompt: object, response: str) -> float:
    """Gold reward: VADER compound sentiment of the response, in [-1, 1]; the prompt is unused."""
    return float(_analyzer().polarity_scores(response)["compound"])
