"""One declaration of the training loop's settings: `TrainConfig` and `RewardModelConfig` share
`LoopConfig` (the same keys and checks, each with its own defaults), write a config.yaml that
loads back, and a run folder written with the keys in their earlier order still resumes."""

from __future__ import annotations

import json
import warnings

import pytest
import yaml

import preftune.train.trainer as trainer_module
from preftune.config import (
    LoopConfig,
    RewardModelConfig,
    TrainConfig,
    build_train_config,
    load_reward_model_config,
)
from preftune.errors import ConfigError
from preftune.train import train

# TrainConfig's keys in the order config.yaml listed them before the loop's settings moved to
# LoopConfig (preftune up to the change); the resume check must not depend on it
EARLIER_ORDER = [
    "model", "method", "hparams", "data", "max_prompt_length", "max_length", "batch_size",
    "micro_batch_size", "optimizer", "lr", "scheduler", "epochs", "max_steps", "warmup_steps",
    "warmup_ratio", "weight_decay", "max_grad_norm", "seed", "dtype", "mixed_precision",
    "attn_implementation", "reference", "lora", "quantization", "trainable_layers",
    "gradient_checkpointing", "prompt_embedder", "output_dir", "run_name", "save_every",
    "keep_final_checkpoint", "log_every", "resume", "report_to", "tracker_project",
    "tracker_run", "push_to_hub", "reward", "online",
]  # fmt: skip


def _reward_config(model_dir, data, *overrides):
    return load_reward_model_config(None, [f"model={model_dir}", f"data.path={data}", *overrides])


def test_both_run_configs_take_every_loop_key(tiny_model_dir, paired_file):
    loop_keys = set(LoopConfig.model_fields)
    assert loop_keys <= set(TrainConfig.model_fields) and loop_keys <= set(
        RewardModelConfig.model_fields
    )
    assert {"optimizer", "lr", "scheduler", "save_every", "report_to", "seed"} <= loop_keys
    config = _reward_config(tiny_model_dir, paired_file, "weight_decay=0.1", "warmup_steps=3")
    assert (config.weight_decay, config.warmup_steps) == (0.1, 3)


def test_each_config_keeps_its_own_defaults(tiny_model_dir, paired_file):
    reward = _reward_config(tiny_model_dir, paired_file)
    trained = build_train_config(
        {"model": str(tiny_model_dir), "method": "dpo", "data": {"path": str(paired_file)}}
    )
    keys = ("optimizer", "lr", "scheduler", "warmup_ratio", "max_grad_norm", "batch_size")
    assert tuple(getattr(reward, key) for key in keys) == ("adamw", 1e-5, "linear", 0.0, 1.0, 16)
    assert tuple(getattr(trained, key) for key in keys) == ("rmsprop", 5e-7, "constant", 0.1, 10.0, 64)  # fmt: skip
    assert (reward.run_dir.name, trained.run_dir.name) == ("reward-model", "dpo")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=1000", "invalid config: lr: Input should be less than or equal to 100"),
        ("batch_size=0", "invalid config: batch_size: Input should be greater than 0"),
        ("warmup_ratio=2", "invalid config: warmup_ratio: Input should be less than or equal to 1"),
        ("max_grad_norm=-1", "invalid config: max_grad_norm: Input should be greater than 0"),
        ("optimizer=lion", "invalid config: optimizer: Input should be 'rmsprop', 'adamw' or"),
        ("report_to=nope", "invalid config: report_to: 'nope' is not one of: none"),
        ("trainable_layers=0", "invalid config: trainable_layers: Input should be greater than 0"),
    ],
)
def test_a_reward_model_loop_key_keeps_its_check_and_names_it(
    tiny_model_dir, paired_file, override, message
):
    with pytest.raises(ConfigError) as error:
        _reward_config(tiny_model_dir, paired_file, override)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_an_unknown_key_lists_the_run_config_keys_first(tiny_model_dir, paired_file):
    values = {"model": str(tiny_model_dir), "method": "dpo", "data": {"path": str(paired_file)}}
    with pytest.raises(ConfigError, match=r"unknown key \(allowed: model, method, hparams, data,"):
        build_train_config({**values, "bogus": 1})


def test_config_yaml_loads_back_to_the_same_config(make_config, tiny_model_dir, paired_file):
    trained = make_config("dpo", paired_file, lora={}, report_to="none", run_name="x")
    reward = _reward_config(tiny_model_dir, paired_file, "objective=plackett-luce", "seed=3")
    for config in (trained, reward):
        text = config.to_yaml()
        loaded = yaml.safe_load(text)
        assert type(config).model_validate(loaded) == config
        assert text.startswith(f"model: {config.model}\n")
    assert list(yaml.safe_load(trained.to_yaml()))[:4] == ["model", "method", "hparams", "data"]


def test_a_run_folder_with_the_earlier_key_order_resumes(make_config, paired_file, stopped_run):
    config = make_config("dpo", paired_file, max_steps=3, save_every=1)
    stopped_run(trainer_module.Trainer, 2, lambda: train(config))
    saved = yaml.safe_load((config.run_dir / "config.yaml").read_text())
    # keys added since (absent from an earlier folder's config.yaml, so left out here too)
    assert set(saved) - set(EARLIER_ORDER) == {"trunk_cache"}
    assert set(EARLIER_ORDER) <= set(saved), "the test's order lists only existing keys"
    earlier = yaml.safe_dump({key: saved[key] for key in EARLIER_ORDER}, sort_keys=False)
    assert earlier != (config.run_dir / "config.yaml").read_text()  # the order did change
    (config.run_dir / "config.yaml").write_text(earlier)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = train(config.model_copy(update={"resume": True}))
    assert not [w for w in caught if "changed settings" in str(w.message)]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
    assert (run_dir / "summary.json").exists()
