"""Online methods as ordinary entries of a study: config checks, and a tiny study where DPO
(offline, on-policy data), GRPO (online) and KTO in rounds run side by side with budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from preftune.errors import ConfigError
from preftune.experiments.config import load_study_config, study_from_dict, train_values
from preftune.experiments.layout import StudyLayout
from preftune.experiments.runner import StudyRunner
from preftune.io import read_jsonl

ONLINE = {"samples_per_prompt": 2, "max_new_tokens": 8, "generation_batch_size": 4}


@pytest.fixture()
def online_study(tiny_study):
    """The tiny study on 4 training prompts with DPO, GRPO and KTO in two rounds, or `methods`."""

    def build(methods=None) -> dict:
        raw = tiny_study()
        raw["data"]["train"]["limit"] = 4
        raw["evaluation"]["kl_samples"] = 0
        raw["methods"] = methods or [
            {"method": "dpo"},
            {"method": "grpo", "online": {**ONLINE, "prompts_per_step": 2}},
            {"method": "kto", "label": "kto-rounds", "online": {**ONLINE, "rounds": 2}},
        ]
        return raw

    return build


def test_online_entries_train_on_the_training_prompts_with_the_studys_reward(online_study):
    config = study_from_dict(online_study())
    grpo, rounds = config.methods[1], config.methods[2]
    values = train_values(config, config.model, grpo, grpo.train, {"path": "train.jsonl"})
    assert values["data"] == {"task": "sentiment", "limit": 4, "seed": 0, "pairs": "top-vs-worst"}
    assert values["reward"] == {"type": "gold", "name": "vader-sentiment"}  # the task's default
    assert values["online"]["prompts_per_step"] == 2
    assert train_values(config, config.model, rounds, {}, {})["online"]["rounds"] == 2
    offline = train_values(config, config.model, config.methods[0], {}, {"path": "train.jsonl"})
    assert offline["data"]["path"] == "train.jsonl" and "online" not in offline


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda raw: raw["methods"].append(
                {"method": "ipo", "online": {"samples_per_prompt": 4}}
            ),
            r"methods\.3\.online: 'ipo' trains offline; add 'rounds: N'",
        ),
        (
            lambda raw: raw["train"].update(reward={"type": "gold", "name": "vader-sentiment"}),
            r"'reward' is the study's, shared by every online method",
        ),
        (
            lambda raw: raw["methods"][0].update(train={"online": {"rounds": 2}}),
            r"methods\.0\.train: 'online' is a method entry's own key",
        ),
        (
            lambda raw: raw["methods"][1]["online"].update(samples_per_prompt=1),
            r"online\.samples_per_prompt: method 'grpo' compares samples of one prompt",
        ),
        (
            lambda raw: raw["methods"][2]["online"].update(samples_per_prompt=1),
            r"methods\.2\.train .*online\.samples_per_prompt: method 'kto' compares samples",
        ),
        (
            lambda raw: (
                raw["data"].update(
                    train={"path": "pairs.jsonl"}, heldout={"path": "pairs.jsonl"}, on_policy=None
                )
                or raw["evaluation"].update(
                    evaluations=[{"name": "j", "judge": {"type": "openai"}}]
                )
            ),
            r"methods\.1: an online method scores its own samples; set the study's 'reward'",
        ),
    ],
)
def test_bad_online_entries_name_their_key(online_study, change, message):
    raw = online_study()
    change(raw)
    with pytest.raises(ConfigError, match=message):
        study_from_dict(raw)


def test_a_study_of_online_methods_alone_needs_no_on_policy_step(online_study):
    raw = online_study(methods=[{"method": "grpo", "online": ONLINE}])
    del raw["data"]["on_policy"]
    assert study_from_dict(raw).methods[0].is_online
    raw["methods"].append({"method": "dpo"})
    with pytest.raises(ConfigError, match="data.on_policy: .* for dpo"):
        study_from_dict(raw)


def test_tiny_study_with_offline_online_and_iterative_rows(tmp_path, online_study, length_gold):
    raw = online_study()
    raw["methods"][1]["train"] = {"max_steps": 2}
    for method in ("rloo", "online-dpo"):  # one step each: they run, with a budget
        raw["methods"].append(
            {
                "method": method,
                "online": {**ONLINE, "prompts_per_step": 2},
                "train": {"max_steps": 1},
            }
        )
    config = study_from_dict(raw)
    out = tmp_path / "study"
    lines = []
    results = StudyRunner(config, out, log=lines.append).run()
    assert any("online: grpo, kto-rounds, rloo, online-dpo sample their own" in x for x in lines)

    layout = StudyLayout(out)
    rows = {row["label"]: row for row in results["rows"]}
    labels = ("start", "dpo", "grpo", "kto-rounds", "rloo", "online-dpo")
    assert {label: row["status"] for label, row in rows.items()} == dict.fromkeys(labels, "ok")
    for label in labels[1:]:
        gold = rows[label]["evaluations"]["gold"]
        assert gold["n"] == 4 and 0.0 <= gold["win_rate"] <= 1.0

    samples = read_jsonl(layout.train_data.with_name("samples.jsonl"))
    assert rows["dpo"]["budget"]["source"] == "on-policy sampling"
    assert rows["dpo"]["budget"]["samples"] == len(samples) == 12  # 4 prompts x 3

    grpo = rows["grpo"]["budget"]
    assert grpo["source"] == "online"
    assert (grpo["prompts"], grpo["samples"]) == (4, 8)  # 2 steps x 2 prompts x 2 samples
    grpo_config = yaml.safe_load((layout.run("grpo") / "config.yaml").read_text())
    assert grpo_config["data"]["task"] == "sentiment" and grpo_config["data"]["limit"] == 4
    assert grpo_config["reward"]["name"] == "vader-sentiment"

    iterative = rows["kto-rounds"]["budget"]
    summary = json.loads((layout.run("kto-rounds") / "summary.json").read_text())
    assert summary["rounds"] == 2 and iterative["source"] == "online"
    assert (iterative["prompts"], iterative["samples"]) == (8, 16)  # 2 rounds x 4 x 2
    assert rows["kto-rounds"]["dynamics"]["steps"] == summary["steps"]
    for label in ("rloo", "online-dpo"):
        assert rows[label]["budget"]["samples"] == 4  # 1 step x 2 prompts x 2 samples

    report = (out / "report.md").read_text()
    assert "## Sample budgets" in report
    assert "| grpo |" in report and "| online | 4 | 8 |" in report


def test_the_online_example_gives_grpo_twice_the_samples_of_the_others():
    config = load_study_config(Path(__file__).parents[2] / "examples" / "sentiment-online.yaml")
    assert [m.method for m in config.methods] == ["dpo", "online-dpo", "grpo", "rloo"]
    assert config.reward_settings == {"type": "gold", "name": "vader-sentiment"}
    prompts = config.data.train.limit
    assert prompts * config.data.on_policy.samples_per_prompt == 192  # sampled once, for DPO
    expected = {"online-dpo": 192, "grpo": 384, "rloo": 192}  # the comment's plan
    for entry in config.methods[1:]:
        values = train_values(config, config.model, entry, entry.train, {})
        online = values["online"]
        steps = values.get("epochs", 1) * -(-prompts // online["prompts_per_step"])
        samples = steps * online["prompts_per_step"] * online["samples_per_prompt"]
        assert samples == expected[entry.method], entry.method
