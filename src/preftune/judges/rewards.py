"""Reward sources for online training: one `reward:` block, three kinds.

- `{type: gold, name: vader-sentiment}`: a gold function of (prompt, response), e.g. a task's;
- `{type: model, path: RM_DIR, batch_size: 16}`: a reward model (`preftune rm`, or any
  sequence-classification model with one output), scored in batches;
- `{type: judge, judge: openai, ...}`: a `preftune judge` judge deciding pairs, as in a win
  rate: a group of samples is scored by a round robin (a win 1, a tie or an unusable verdict
  0.5), so its rewards rank samples within their group only.

Every reward is cached by (source, prompt, response) in a JSONL file (pairwise decisions in a
`preftune judge` judgments file), so a resumed run pays for nothing twice; `calls` counts only
real scorer calls.
"""

from __future__ import annotations

import hashlib
import json
import math
from itertools import combinations
from pathlib import Path

from preftune.errors import ConfigError, DataError
from preftune.io import JsonlAppender, read_jsonl
from preftune.judges.base import JudgeError


def reward_source(config, *, cache_path: str | Path | None = None) -> RewardSource:
    """The source a `reward:` block (a RewardConfig or its dict) describes; loads it now so a
    source that cannot load fails before any training.

    >>> source = reward_source({"type": "gold", "name": "vader-sentiment"})
    >>> [round(r, 3) for r in source.score(["Review it."], ["A wonderful film."])]
    [0.572]
    >>> source.calls
    1
    """
    from preftune.config import RewardConfig, validate_section

    if not isinstance(config, RewardConfig):
        config = validate_section(RewardConfig, config, "reward")
    if config.type == "gold":
        from preftune.judges.gold import GoldJudge

        try:
            judge, batch_size = GoldJudge(config.name), 1
        except ConfigError as error:
            raise ConfigError(f"reward.name: {error}") from None
    elif config.type == "model":
        judge, batch_size = _load_reward_model(config.path), config.batch_size
    else:
        if cache_path is None:
            raise ValueError("a pairwise judge keeps its decisions in a file: give cache_path")
        return PairwiseSource(_build_configured_judge(config), store_path=cache_path)
    cache = RewardCache(cache_path) if cache_path is not None else None
    return PointwiseSource(judge, cache=cache, batch_size=batch_size)


def _load_reward_model(path: str):
    from preftune.judges.reward_model import RewardModelJudge

    try:
        return RewardModelJudge(path)
    except JudgeError as error:
        raise ConfigError(f"reward.path: {error}") from None


def _build_configured_judge(config):
    from preftune.judges import build_judge

    try:
        return build_judge(config.judge, **config.judge_settings())
    except (ConfigError, JudgeError) as error:  # worded for the CLI's --options
        raise ConfigError(f"reward (type judge, judge {config.judge}): {error}") from None


def _prompt_and_id(prompt, index: int) -> tuple[object, str]:
    """A prompt row {"id", "prompt"} or a bare prompt (its id: its position)."""
    if isinstance(prompt, dict) and "prompt" in prompt:
        return prompt["prompt"], str(prompt.get("id", index))
    return prompt, str(index)


def reward_key(identity: str, prompt, response: str) -> str:
    payload = json.dumps([identity, prompt, response], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RewardCache:
    """rewards.jsonl: {"key", "id", "response", "reward"} rows, appended as they are scored."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rewards = {row["key"]: float(row["reward"]) for row in read_jsonl(self.path)}
        self._appender = JsonlAppender(self.path)

    def get(self, key: str) -> float | None:
        return self.rewards.get(key)

    def put(self, key: str, reward: float, **context) -> None:
        self._appender.write({"key": key, **context, "reward": reward})
        self.rewards[key] = reward

    def close(self) -> None:
        self._appender.close()


class RewardSource:
    """`score(prompts, responses)` -> one float per response; `group_scores` for groups of
    samples of one prompt each. `pairwise` says the rewards are only meaningful within a
    group (a judge's round robin)."""

    identity: str
    pairwise: bool = False
    calls: int = 0

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        raise NotImplementedError

    def group_scores(self, prompts: list, groups: list[list[str]]) -> list[list[float]]:
        flat_prompts = [p for p, group in zip(prompts, groups, strict=True) for _ in group]
        flat = self.score(flat_prompts, [r for group in groups for r in group])
        scores, start = [], 0
        for group in groups:
            scores.append(flat[start : start + len(group)])
            start += len(group)
        return scores

    def requests_for(self, group_sizes: list[int]) -> int:
        """How many reward evaluations scoring groups of these sizes asks for (cache hits
        included): one per response."""
        return sum(group_sizes)

    def close(self) -> None:
        """Close the cache file."""


class PointwiseSource(RewardSource):
    """A gold function or reward model: `score(prompt, response)` (and, when it has one,
    `score_batch`)."""

    def __init__(self, judge, *, cache: RewardCache | None = None, batch_size: int = 16):
        self.judge = judge
        self.identity = judge.identity
        self.cache = cache
        self.batch_size = batch_size
        self.calls = 0

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        pairs = enumerate(zip(prompts, responses, strict=True))
        items = [(*_prompt_and_id(p, i), r) for i, (p, r) in pairs]
        keys = [reward_key(self.identity, prompt, response) for prompt, _, response in items]
        rewards = [self.cache.get(key) if self.cache else None for key in keys]
        todo = [i for i, reward in enumerate(rewards) if reward is None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            scored = self._score_chunk([items[i][0] for i in chunk], [items[i][2] for i in chunk])
            self.calls += len(chunk)
            for index, reward in zip(chunk, scored, strict=True):
                prompt, prompt_id, response = items[index]
                if not math.isfinite(reward):
                    raise DataError(
                        f"the reward source {self.identity} gave {reward} for a response; "
                        "rewards must be finite numbers",
                        source=f"prompt id {prompt_id}",
                    )
                rewards[index] = reward
                if self.cache:
                    self.cache.put(keys[index], reward, id=prompt_id, response=response)
        return rewards

    def _score_chunk(self, prompts: list, responses: list[str]) -> list[float]:
        if hasattr(self.judge, "score_batch"):
            return [float(r) for r in self.judge.score_batch(prompts, responses)]
        return [float(self.judge.score(p, r)) for p, r in zip(prompts, responses, strict=True)]

    def close(self) -> None:
        if self.cache:
            self.cache.close()


class PairwiseSource(RewardSource):
    """A judge that only decides pairs: each group is scored by a round robin, every pair of
    its samples decided once (cached in a judgments file); a win counts 1, a tie or an
    unusable verdict 0.5 (so a group's scores always sum to the number of pairs)."""

    pairwise = True

    def __init__(self, judge, *, store_path: str | Path):
        from preftune.judges.store import JudgmentStore

        self.judge = judge
        self.identity = judge.identity
        self.store = JudgmentStore(store_path)
        self.calls = 0

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        raise ConfigError(
            f"reward: the judge {self.identity} only decides pairs; it rewards groups of samples "
            "(online methods), not single responses"
        )

    def group_scores(self, prompts: list, groups: list[list[str]]) -> list[list[float]]:
        from preftune.judges.runner import judge_pairs

        pairs, slots = [], []
        for index, (prompt, group) in enumerate(zip(prompts, groups, strict=True)):
            text, prompt_id = _prompt_and_id(prompt, index)
            for i, j in combinations(range(len(group)), 2):
                pairs.append({"id": prompt_id, "prompt": text, "a": group[i], "b": group[j]})
                slots.append((index, i, j))
        judgments, cache_hits = judge_pairs(self.judge, pairs, self.store)
        self.calls += len(pairs) - cache_hits
        scores = [[0.0] * len(group) for group in groups]
        for (index, i, j), judgment in zip(slots, judgments, strict=True):
            win_a = {"a": 1.0, "b": 0.0}.get(judgment.winner, 0.5)
            scores[index][i] += win_a
            scores[index][j] += 1.0 - win_a
        return scores

    def requests_for(self, group_sizes: list[int]) -> int:
        """One decision per pair of a group's samples."""
        return sum(size * (size - 1) // 2 for size in group_sizes)

    def close(self) -> None:
        self.store.close()
