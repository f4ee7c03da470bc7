"""`gold` judge: a known reward function of (prompt, response), e.g. VADER for sentiment.

Named gold functions live in a small registry so the CLI can pick one (`--gold NAME`);
modules register theirs with `register_gold`, and built-in tasks are found by their
`gold_name`.
"""

from __future__ import annotations

from collections.abc import Callable

from preftune.errors import ConfigError
from preftune.judges.base import Judgment, compare_by_scores

GoldFunction = Callable[[object, str], float]
GOLD_FUNCTIONS: dict[str, GoldFunction] = {}


def register_gold(name: str, function: GoldFunction) -> GoldFunction:
    """Make `function` available to `get_gold(name)` and `--judge gold --gold NAME`."""
    if name in GOLD_FUNCTIONS and GOLD_FUNCTIONS[name] is not function:
        raise ConfigError(f"gold function '{name}' is already registered")
    GOLD_FUNCTIONS[name] = function
    return function


def _task_gold_functions() -> dict[str, GoldFunction]:
    from preftune.tasks import TASKS

    return {task.gold_name: task.gold for task in TASKS.values()}


def gold_names() -> list[str]:
    return sorted({**_task_gold_functions(), **GOLD_FUNCTIONS})


def get_gold(name: str) -> GoldFunction:
    functions = {**_task_gold_functions(), **GOLD_FUNCTIONS}
    if name not in functions:
        raise ConfigError(f"gold function '{name}' is not one of {sorted(functions)}")
    return functions[name]


class GoldJudge:
    """Scores both responses with a gold function; the higher score wins, equal is a tie.

    >>> longer_wins = GoldJudge(lambda prompt, response: len(response), name="length")
    >>> longer_wins.score("Hi", "Hello!")
    6.0
    >>> judgment = longer_wins.compare("Hi", "Hey", "Hello!")
    >>> judgment.winner, judgment.score_a, judgment.score_b
    ('b', 3.0, 6.0)
    """

    def __init__(self, function: GoldFunction | str, name: str | None = None):
        if isinstance(function, str):
            name, function = function, get_gold(function)
        self.function = function
        self.identity = f"gold:{name or getattr(function, '__qualname__', 'function')}"

    def score(self, prompt, response: str) -> float:
        return float(self.function(prompt, response))

    def compare(self, prompt, response_a: str, response_b: str) -> Judgment:
        return compare_by_scores(self.score(prompt, response_a), self.score(prompt, response_b))
