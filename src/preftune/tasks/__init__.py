"""Built-in tasks that run offline: prompts with a train/held-out split and a gold reward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from preftune.errors import ConfigError
from preftune.tasks import sentiment


@dataclass(frozen=True)
class Task:
    """A task: `prompts(split, limit)` gives {"id", "prompt"} dicts; `gold(prompt, response)`
    scores a response (higher is better); `gold_name` is the name its judge is known by."""

    name: str
    description: str
    prompts: Callable[..., list[dict]]
    gold: Callable[[object, str], float]
    gold_name: str


TASKS = {
    "sentiment": Task(
        name="sentiment",
        description="short reviews; gold reward = VADER compound sentiment (positive is better)",
        prompts=sentiment.prompts,
        gold=sentiment.vader_compound,
        gold_name="vader-sentiment",
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task '{name}' is not one of {sorted(TASKS)}")
    return TASKS[name]
