"""Study configs: the examples and the built-in study validate; mistakes name their field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from preftune.errors import ConfigError
from preftune.experiments import onpolicy
from preftune.experiments.builtin import builtin_study
from preftune.experiments.config import load_study_config, study_from_dict

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_comparison_examples_keep_the_published_hyperparameters():
    for name, dataset in (("hh-comparison", "Anthropic/hh-rlhf"), ("tldr-comparison", "summarize")):
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
    assert set(kinds) == {"mt-bench", "arena-hard"}  # the paper's two benchmarks
    assert kinds["arena-hard"].baseline.endswith(".jsonl")  # a fixed baseline model's answers


def test_builtin_study_and_its_quick_version():
    full, quick = builtin_study(), builtin_study(quick=True)
    assert full.model == quick.model == "smollm2-135m-instruct"
    assert full.data.on_policy.samples_per_prompt == 4
    assert len(quick.methods) == 3 and "dpo" in {m.method for m in quick.methods}
    assert len(full.methods) > len(quick.methods)
    assert full.evaluation.evaluations[0].baseline == "start"
    assert full.evaluation.num_prompts >= 100 and full.data.heldout.limit >= 100
    assert full.data.dev.split == "dev" and full.evaluation.preference_prompts > 0
    assert quick.claims and full.claims


def test_sweep_points_are_the_grid_in_order_and_set_hparams_or_training():
    entry = study_from_dict(
        {
            **_raw(),
            "methods": [{"method": "dpo", "sweep": {"beta": [0.1, 0.5], "lr": [1e-4]}}],
            "claims": [],
        }
    ).methods[0]
    assert entry.sweep_points() == [{"beta": 0.1, "lr": 1e-4}, {"beta": 0.5, "lr": 1e-4}]
    sweep = yaml.safe_load("lr: [1e-4, 3.0e-4]")  # YAML 1.1 reads 1e-4 (no dot) as text
    raw = {**_raw(), "methods": [{"method": "dpo", "sweep": sweep}], "claims": []}
    assert study_from_dict(raw).methods[0].sweep == {"lr": [1e-4, 3e-4]}
    point = entry.at_point({"beta": 0.5, "lr": 1e-4})
    assert point.hparams == {"beta": 0.5} and point.train == {"lr": 1e-4} and point.sweep is None


def _raw() -> dict:
    return builtin_study(quick=True).model_dump(mode="json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["methods"].append({"method": "dpo-plus"}), r"methods\.3\.method: 'dpo-plus'"),
        (
            lambda r: r["methods"][0].update(hparams={"gamma": 1}),
            r"methods\.0\.hparams\.gamma: method 'dpo' has no hyperparameter 'gamma'",
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
        (lambda r: r["methods"][0].update(label="dpo\n"), r"methods\.0\.label: 'dpo\\n' must be"),
        (lambda r: r["methods"][0].update(label="start"), r"methods\.0\.label: 'start' is a row"),
        (lambda r: r["methods"][1].update(label="sft"), r"methods\.1\.label: 'sft' is a row"),
        (lambda r: r["methods"][1].update(label="dpo"), r"methods\.1\.label: 'dpo' names two"),
        (
            lambda r: r["evaluation"]["evaluations"][0].update(name="../../x"),
            r"evaluations\.0: name: '\.\./\.\./x' must be",
        ),
        (
            lambda r: r["evaluation"]["evaluations"][0].update(name="$x$"),
            r"evaluations\.0: name: '\$x\$' must be",
        ),
        (
            lambda r: r["evaluation"]["evaluations"][0].update(baseline="strat"),
            r"evaluations\.0: baseline: 'strat' is not one of",
        ),
        (
            lambda r: r["methods"][0].update(sweep={"gamma": [1, 2]}),
            r"methods\.0\.sweep\.gamma: not a hyperparameter of 'dpo'",
        ),
        (
            lambda r: r["methods"][0].update(sweep={"beta": [0.1, -1]}),
            r"methods\.0\.sweep\.beta: method 'dpo': hyperparameter beta must be a finite number > 0",
        ),
        (
            lambda r: r["methods"][0].update(hparams={"beta": float("nan")}),
            r"methods\.0\.hparams\.beta: method 'dpo': hyperparameter beta must be",
        ),
        (lambda r: r["methods"][0].update(sweep={"beta": []}), r"methods\.0\.sweep\.beta"),
        (
            lambda r: r["data"].update(dev={"task": "sentiment", "split": "heldout"}),
            r"data\.dev: the dev split is the test split",
        ),
        (lambda r: r.update(claims=["dpo > kto"]), r"claims\.0: \['kto'\] not rows"),
        (lambda r: r.update(claims=["dpo beats simpo"]), r"claims\.0: 'dpo beats simpo' is not"),
        (lambda r: r.update(seeds=[0, 0]), r"seeds: \[0, 0\] repeats"),
        (
            lambda r: r["evaluation"]["evaluations"][0].update(pairs="some"),
            r"evaluations\.0\.pairs",
        ),
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


def test_a_sweep_without_dev_prompts_is_refused(tmp_path):
    raw = _raw()
    data = tmp_path / "pairs.jsonl"
    data.write_text("")
    raw["data"] = {"train": {"path": str(data)}, "heldout": {"path": str(data)}}
    raw["evaluation"]["evaluations"][0]["judge"] = {"type": "hf-llm", "model": "m"}
    raw["methods"][0]["sweep"] = {"beta": [0.1, 0.2]}
    with pytest.raises(ConfigError, match=r"methods\.0\.sweep: .* add data\.dev"):
        study_from_dict(raw)
    raw["data"]["dev"] = {"path": str(data)}  # the same source as the test prompts
    with pytest.raises(ConfigError, match=r"dev: the dev prompts are the test prompts"):
        study_from_dict(raw)


def test_dev_prompts_that_are_test_prompts_are_refused(tmp_path):
    test = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(3)]
    dev = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(2, 5)]
    paths = {}
    for name, rows in (("test", test), ("dev", dev)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = _raw()
    raw["data"] = {
        "train": {"path": str(paths["test"])},
        "heldout": {"path": str(paths["test"])},
        "dev": {"path": str(paths["dev"])},
    }
    raw["evaluation"]["evaluations"][0]["judge"] = {"type": "hf-llm", "model": "m"}
    config = study_from_dict(raw)
    test_rows = onpolicy.write_heldout(config, tmp_path / "heldout.jsonl")
    assert test_rows[0]["response"] == "good" and test_rows[0]["rejected"] == "bad"
    with pytest.raises(ConfigError, match=r"data\.dev: 1 dev prompts are also test prompts"):
        onpolicy.write_dev(config, tmp_path / "dev.jsonl", test_rows)


def test_a_mistake_in_the_new_keys_exits_2_with_one_line(tmp_path, capsys):
    from preftune.cli import main

    raw = _raw()
    raw["methods"][0]["sweep"] = {"gamma": [1]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["compare", "--config", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "methods.0.sweep" in error
