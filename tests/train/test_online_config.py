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
    rounds = {"online": {"rounds": 2}, "reward": {"type": "gold", "name": "vader-sentiment"}}
    config = build_train_config(_values(**rounds))
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


def _online(method="grpo", **extra):
    return {
        **_values(method=method),
        "reward": {"type": "gold", "name": "vader-sentiment"},
        **extra,
    }


def test_an_online_method_gets_the_online_defaults_and_a_live_reference():
    config = build_train_config(_online())
    assert config.online == OnlineConfig() and config.reference == "live"


@pytest.mark.parametrize("method", ["grpo", "rloo", "online-dpo"])
def test_group_methods_need_two_samples_per_prompt(method):
    with pytest.raises(ConfigError, match=f"online.samples_per_prompt: method '{method}'.*got 1"):
        build_train_config(_online(method, online={"samples_per_prompt": 1}))


def test_an_online_method_needs_a_reward():
    with pytest.raises(ConfigError, match="reward: method 'grpo' trains on rewards"):
        build_train_config(_values(method="grpo"))


def test_cli_nan_rewards_and_unloadable_reward_models_exit_2_on_one_line(
    tmp_path, tiny_model_dir, capsys
):
    from preftune.cli import main
    from preftune.judges import register_gold

    register_gold("test-nan", lambda prompt, response: float("nan"))
    common = [
        f"model={tiny_model_dir}",
        "method=grpo",
        "data.task=sentiment",
        "data.limit=2",
        "online.prompts_per_step=2",
        "online.samples_per_prompt=2",
        "online.max_new_tokens=4",
        "max_length=64",
        "max_prompt_length=32",
        f"output_dir={tmp_path}",
    ]
    assert main(["train", *common, "reward.type=gold", "reward.name=test-nan"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert error.startswith("preftune train: error: prompt id sentiment-000: ")
    assert "gave nan" in error
    (tmp_path / "not-a-model").mkdir()
    overrides = ["reward.type=model", f"reward.path={tmp_path / 'not-a-model'}", "run_name=b"]
    assert main(["train", *common, *overrides]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("preftune train: error: reward.path: cannot load reward model")
    assert "\n" not in error  # refused before any model loads: no progress bar either
