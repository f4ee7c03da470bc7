"""Judges behind one protocol (`compare(prompt, a, b) -> Judgment`, optional `score`).

`build_judge(kind, ...)` makes one by name: "gold", "reward-model", "openai", "hf-llm".
"""

from __future__ import annotations

import math

from preftune.errors import ConfigError
from preftune.judges.base import Judge, JudgeError, Judgment, combine_orders, compare_by_scores
from preftune.judges.gold import GoldJudge, get_gold, gold_names, register_gold
from preftune.judges.runner import judge_pairs
from preftune.judges.store import JudgmentStore, judgment_key

JUDGES = ("gold", "reward-model", "openai", "hf-llm")


def build_judge(
    kind: str,
    *,
    gold: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    prompt: str = "pair-v2",
    concurrency: int = 8,
    timeout: float = 60.0,
    max_retries: int = 4,
    parse_retries: int = 2,
    backoff: float = 1.0,
    decision: str = "both-orders",
):
    """A judge from command-line style settings; each kind says which settings it needs.

    >>> judge = build_judge("gold", gold="vader-sentiment")  # the sentiment task's gold reward
    >>> judge.identity
    'gold:vader-sentiment'
    >>> judge.compare("Review the film.", "A wonderful, moving film.", "A dull, awful film.").winner
    'a'
    >>> build_judge("openai", model="gpt-4o")
    Traceback (most recent call last):
    preftune.errors.ConfigError: --judge openai needs --base-url (e.g. https://api.openai.com/v1)
    """
    _require("concurrency", concurrency, at_least=1, whole=True)
    _require("max_retries", max_retries, at_least=0, whole=True)
    _require("parse_retries", parse_retries, at_least=0, whole=True)
    _require("timeout", timeout, at_least=0, whole=False, above=True)
    _require("backoff", backoff, at_least=0, whole=False)
    if kind == "gold":
        if not gold:
            raise ConfigError(f"--judge gold needs --gold NAME, one of {gold_names()}")
        return GoldJudge(gold)
    if kind in ("reward-model", "hf-llm", "openai") and not model:
        raise ConfigError(f"--judge {kind} needs --judge-model")
    if kind == "reward-model":
        from preftune.judges.reward_model import RewardModelJudge

        return RewardModelJudge(model)
    if kind == "hf-llm":
        from preftune.judges.local_llm import LocalLLMJudge

        return LocalLLMJudge(model, prompt=prompt, decision=decision)
    if kind == "openai":
        if not base_url:
            raise ConfigError("--judge openai needs --base-url (e.g. https://api.openai.com/v1)")
        from preftune.judges.http_chat import ChatClient
        from preftune.judges.openai_judge import OpenAIJudge

        client = ChatClient(
            base_url,
            model,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )
        return OpenAIJudge(
            client, prompt=prompt, parse_retries=parse_retries, concurrency=concurrency
        )
    raise ConfigError(f"judge '{kind}' is not one of {list(JUDGES)}")


def _require(name: str, value, *, at_least: float, whole: bool, above: bool = False) -> None:
    """A ConfigError naming the option unless `value` is a finite (whole) number >= `at_least`
    (> when `above`): a negative retry count or a zero timeout would misbehave silently."""
    kinds = int if whole else (int, float)
    fits = (
        isinstance(value, kinds)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > at_least if above else value >= at_least)
    )
    if not fits:
        what = "a whole number" if whole else "a number"
        raise ConfigError(
            f"--{name.replace('_', '-')} ({name}) must be {what} {'>' if above else '>='} "
            f"{at_least:g}, got {value!r}"
        )


__all__ = [
    "JUDGES",
    "GoldJudge",
    "Judge",
    "JudgeError",
    "Judgment",
    "JudgmentStore",
    "build_judge",
    "combine_orders",
    "compare_by_scores",
    "get_gold",
    "gold_names",
    "judge_pairs",
    "judgment_key",
    "register_gold",
]
