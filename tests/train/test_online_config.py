"""The `reward:` and `online:` blocks of the training config and the checks on them."""

from __future__ import annotations

import pytest

from preftune.config import OnlineConfig, build_train_config, validate_section
from preftune.errors import ConfigError


def _values(**extra):
    return {
        "model": "smollm2-135m-instruct",
        "method": "dpo",
        "data": {"task": "sentiment"},
        **extra,
    }


def test_task_prompts_are_for_sampling_only():
    with pytest.raises(ConfigError, match="data.task: a task gives prompts only; method 'dpo'"):
        build_train_config(_values())
    config = build_train_config(_values(online={"rounds": 2}))
    assert config.data.task == "sentiment" and config.online.rounds == 2


def test_an_unknown_task_and_two_sources_are_config_errors():
    with pytest.raises(ConfigError, match="task 'poetry' is not one of"):
        build_train_config(_values(data={"task": "poetry"}, online={"rounds": 1}))
    with pytest.raises(ConfigError, match="give path .*, train .* or task"):
        build_train_config(_values(data={"task": "sentiment", "path": "x.jsonl"}))


def test_reward_and_online_errors_name_their_key():
    with pytest.raises(ConfigError, match="reward.colour: unknown key"):
        build_train_config(_values(online={"rounds": 1}, reward={"type": "gold", "colour": 1}))
    with pytest.raises(ConfigError, match="online.top_p: Input should be less than or equal to 1"):
        build_train_config(_values(online={"rounds": 1, "top_p": 2}))
    with pytest.raises(ConfigError, match="online.rounds: Input should be a valid integer"):
        build_train_config(_values(online={"rounds": "many"}))


def test_online_defaults_and_sampling_settings():
    online = validate_section(OnlineConfig, {}, "online")
    assert (online.samples_per_prompt, online.prompts_per_step, online.num_iterations) == (4, 8, 1)
    assert online.sampling == {"max_new_tokens": 40, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
