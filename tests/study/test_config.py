"""Study configs: the examples and the built-in study validate; mistakes name their field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from preftune.errors import ConfigError
from preftune.experiments.builtin import builtin_study
from preftune.experiments.config import load_study_config, study_from_dict

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_seed_study_examples_keep_the_seed_hyperparameters():
    for name, dataset in (("seed-study-hh", "Anthropic/hh-rlhf"), ("seed-study-tldr", "summarize")):
        config = load_study_config(EXAMPLES / f"{name}.yaml")
        assert dataset in config.data.train.path
        assert "Mistral-7B" in config.model and config.sft is not None
        train = config.train
        assert (train["batch_size"], train["lr"], train["optimizer"]) == (64, 5e-7, "rmsprop")
        assert config.evaluation.num_prompts == 128
        methods = {m.method for m in config.methods}
        assert {"dpo", "ipo", "slic", "kto", "kto-tanh", "ppo-offline"} <= methods
        judge = config.evaluation.evaluations[0].judge
        assert judge.type == "openai" and judge.options["model"].startswith("gpt-4")
        assert config.evaluation.evaluations[0].baseline == "reference"


def test_mppo_example_has_every_variant_and_both_evaluations():
    config = load_study_config(EXAMPLES / "mppo-study.yaml")
    assert "UltraFeedback" in config.data.train.path and config.data.train.format == "scored"
    assert "Llama-3" in config.model
    methods = {m.method for m in config.methods}
    assert {"dpo", "kto", "orpo", "simpo"} <= methods
    assert len([m for m in methods if m.startswith("mppo-")]) == 8
    kinds = {e.kind: e for e in config.evaluation.evaluations}
    assert set(kinds) == {"mt-bench", "pairwise"}
    assert kinds["pairwise"].baseline.endswith(".jsonl")  # a fixed baseline model's answers


def test_builtin_study_and_its_quick_version():
    full, quick = builtin_study(), builtin_study(quick=True)
    assert full.model == quick.model == "smollm2-135m-instruct"
    assert full.data.on_policy.samples_per_prompt == 4
    assert len(quick.methods) == 3 and "dpo" in {m.method for m in quick.methods}
    assert len(full.methods) > len(quick.methods)
    assert full.evaluation.evaluations[0].baseline == "start"


def _raw() -> dict:
    return builtin_study(quick=True).model_dump(mode="json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["methods"].append({"method": "dpo-plus"}), r"methods\.3\.method: 'dpo-plus'"),
        (
            lambda r: r["methods"][0].update(hparams={"gamma": 1}),
            r"methods\.0\.hparams: \['gamma'\]",
        ),
        (lambda r: r.update(epochs=2), r"epochs: Extra inputs are not permitted"),
        (lambda r: r["methods"].append({"method": "dpo"}), r"methods\.3\.label: 'dpo' names two"),
        (lambda r: r["train"].update(lr="fast"), r"lr: Input should be a valid number"),
        (lambda r: r["methods"][1].update(train={"optimizer": "lion"}), r"methods\.1\.train"),
        (lambda r: r["train"].update(model="x"), r"'model' is set by the study"),
        (lambda r: r["data"].update(on_policy=None), r"add 'on_policy'"),
        (lambda r: r["data"]["heldout"].update(task="poetry"), r"task 'poetry'"),
        (
            lambda r: r["evaluation"]["evaluations"][0].update(baseline="sft"),
            r"'sft' needs an 'sft' step",
        ),
        (lambda r: r["evaluation"]["evaluations"][0]["judge"].update(type="gpt"), r"judge\.type"),
        (
            lambda r: r["evaluation"]["evaluations"][0]["judge"].update(temperature=0),
            r"judge: \['temperature'\] not judge settings",
        ),
    ],
)
def test_mistakes_name_their_field(change, message):
    raw = _raw()
    change(raw)
    with pytest.raises(ConfigError, match=message):
        study_from_dict(raw)


def test_gold_judge_needs_a_task(tmp_path):
    raw = _raw()
    data = tmp_path / "pairs.jsonl"
    data.write_text("")
    raw["data"] = {"train": {"path": str(data)}, "heldout": {"path": str(data)}}
    with pytest.raises(ConfigError, match="gold judge needs a task"):
        study_from_dict(raw)


def test_loading_a_file_reports_the_file(tmp_path):
    path = tmp_path / "study.yaml"
    raw = _raw()
    raw["methods"][0]["method"] = "nope"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=f"{path}: methods.0.method"):
        load_study_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_study_config(tmp_path / "missing.yaml")
