"""Reward sources: gold, reward model (batched), pairwise judge; the cache; bad input."""

from __future__ import annotations

import math

import pytest

from preftune.config import RewardConfig, validate_section
from preftune.errors import ConfigError, DataError
from preftune.judges import register_gold
from preftune.judges.base import compare_by_scores
from preftune.judges.rewards import PairwiseSource, reward_source
from preftune.testing import save_tiny_reward_model

register_gold("test-length", lambda prompt, response: len(response))
register_gold("test-nan-for-bad", lambda prompt, response: math.nan if "bad" in response else 1.0)


def test_gold_rewards_are_the_function_and_cached(tmp_path):
    cache = tmp_path / "rewards.jsonl"
    source = reward_source({"type": "gold", "name": "test-length"}, cache_path=cache)
    assert source.score(["p", "q"], ["abc", "hello"]) == [3.0, 5.0]
    assert source.score(["p"], ["abc"]) == [3.0] and source.calls == 2  # the second: cached
    source.close()
    resumed = reward_source({"type": "gold", "name": "test-length"}, cache_path=cache)
    assert resumed.group_scores(["p", "q"], [["abc"], ["hello", "hi"]]) == [[3.0], [5.0, 2.0]]
    assert resumed.calls == 1  # only "hi" was new: a resumed run pays nothing twice


def test_an_unknown_gold_function_is_a_config_error():
    with pytest.raises(ConfigError, match="reward.name: gold function 'nope' is not one of"):
        reward_source({"type": "gold", "name": "nope"})


def test_a_nan_reward_names_the_prompt_id():
    source = reward_source({"type": "gold", "name": "test-nan-for-bad"})
    with pytest.raises(DataError, match="prompt id p7.*nan"):
        source.score([{"id": "p1", "prompt": "x"}, {"id": "p7", "prompt": "y"}], ["good", "bad"])


def test_reward_model_scores_in_batches_as_one_by_one(tmp_path):
    from preftune.judges.reward_model import RewardModelJudge

    path = str(save_tiny_reward_model(tmp_path / "rm"))
    source = reward_source({"type": "model", "path": path, "batch_size": 3})
    prompts = ["q", "review a film", "q", "what was the plot?"]
    responses = ["the movie was great", "bad", "a terrible film with a boring plot", "ok"]
    batched = source.score(prompts, responses)
    one_by_one = RewardModelJudge(path)
    expected = [one_by_one.score(p, r) for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(expected, abs=1e-5)
    assert len(set(batched)) == 4 and source.calls == 4


def test_reward_model_with_two_outputs_or_none_is_a_config_error(tmp_path):
    two = str(save_tiny_reward_model(tmp_path / "two", num_labels=2))
    with pytest.raises(ConfigError, match="reward.path: .* 2 outputs; need exactly 1"):
        reward_source({"type": "model", "path": two})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="reward.path: cannot load reward model"):
        reward_source({"type": "model", "path": str(tmp_path / "empty")})


class _CountingPairJudge:
    """Decides pairs only (no `score`): the longer response wins, equal lengths tie."""

    identity = "test:longer-wins"

    def __init__(self):
        self.calls = 0

    def compare(self, prompt, a, b):
        self.calls += 1
        return compare_by_scores(len(a), len(b))


def test_a_pairwise_judge_scores_a_group_by_round_robin(tmp_path):
    judge = _CountingPairJudge()
    source = PairwiseSource(judge, store_path=tmp_path / "judgments.jsonl")
    scores = source.group_scores(["p", "q"], [["aaa", "a", "aa"], ["x", "y"]])
    # "aaa" beats both, "aa" beats "a"; "x" and "y" tie: 0.5 each
    assert scores == [[2.0, 0.0, 1.0], [0.5, 0.5]]
    assert judge.calls == source.calls == 4
    source.close()
    again = PairwiseSource(judge, store_path=tmp_path / "judgments.jsonl")
    assert again.group_scores(["p"], [["aaa", "a", "aa"]]) == [[2.0, 0.0, 1.0]]
    assert judge.calls == 4 and again.calls == 0
    with pytest.raises(ConfigError, match="only decides pairs"):
        again.score(["p"], ["a"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"type": "gold", "path": "x"}, "reward: path: not a setting of type gold"),
        ({"type": "gold"}, "reward: name: type gold needs it"),
        ({"type": "model", "path": "/no/such/rm"}, "reward: path: '/no/such/rm' does not exist"),
        ({"type": "model", "path": ".", "batch_size": 0}, "reward.batch_size: Input should be"),
        ({"type": "judge", "judge": "openai", "colour": 1}, "reward.colour: unknown key"),
        ({"type": "vibes"}, "reward.type: Input should be 'gold', 'model' or 'judge'"),
    ],
)
def test_reward_config_errors_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        validate_section(RewardConfig, values, "reward")


def test_a_judge_reward_decides_pairs_with_the_preftune_judge_settings(tmp_path):
    config = validate_section(
        RewardConfig, {"type": "judge", "judge": "gold", "gold": "test-length"}, "reward"
    )
    source = reward_source(config, cache_path=tmp_path / "judgments.jsonl")
    assert source.pairwise and source.identity == "gold:test-length"
    assert source.group_scores(["p"], [["abcd", "ab"]]) == [[1.0, 0.0]]
    assert source.requests_for([2, 3]) == 1 + 3
    with pytest.raises(ConfigError, match="--judge openai needs --base-url"):
        reward_source({"type": "judge", "judge": "openai", "model": "gpt-4o"}, cache_path=tmp_path)
