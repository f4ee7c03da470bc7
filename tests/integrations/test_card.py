"""Model cards: metadata the Hub's parser reads, and the run's method, training and evaluation."""

from __future__ import annotations

import json

import yaml
from huggingface_hub import ModelCard

from preftune.cli import main
from preftune.integrations.card import DEMO_HUB_ID, base_model, model_card


def _card(text: str) -> ModelCard:
    return ModelCard(text)


def test_card_of_a_run_states_method_hparams_data_and_time(finished_runs, tmp_path):
    run = finished_runs["full"]
    card = _card(model_card(run, license="apache-2.0"))
    metadata = card.data.to_dict()
    assert metadata["tags"] == ["preftune", "dpo"]
    assert metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "transformers"
    assert "base_model" not in metadata  # the tiny model is a local folder, not a Hub id
    assert "datasets" not in metadata  # a local .jsonl file
    summary = json.loads((run / "summary.json").read_text())
    body = card.text
    assert "**dpo**" in body and "Rafailov" in body
    assert "- beta: 0.2" in body
    assert f"- training time: {summary['wall_time_s']:.0f} s" in body
    assert f"- steps: 2 ({summary['epochs']:.2f} epochs" in body
    assert "paired.jsonl" in body
    assert "## Evaluation" not in body  # not a study's run


def test_a_lora_card_is_the_adapters_unless_merged(finished_runs):
    run = finished_runs["lora"]
    adapter = _card(model_card(run)).data.to_dict()
    merged = _card(model_card(run, merge=True)).data.to_dict()
    assert adapter["library_name"] == "peft" and "lora" in adapter["tags"]
    assert merged["library_name"] == "transformers"


def test_base_model_follows_a_chain_of_runs_to_the_hub_id(tmp_path):
    sft = tmp_path / "runs" / "sft"
    (sft / "final").mkdir(parents=True)
    (sft / "config.yaml").write_text(yaml.safe_dump({"model": "smollm2-135m-instruct"}))
    assert base_model(str(sft / "final")) == DEMO_HUB_ID
    assert base_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert base_model(str(tmp_path)) is None


def test_a_study_runs_card_has_its_row_and_rank(finished_runs, make_study):
    layout, _ = make_study(finished_runs["full"])
    body = _card(model_card(layout.run("dpo"))).text
    assert "Row `dpo` of the study `synthetic` (2 rows)" in body
    assert "- judge win % vs start [95% CI]: 75.0 [60.0, 88.0]" in body
    assert "- rank on judge: 1 of 2 (score 0.750 [0.600, 0.900], tier 1)" in body


def test_cli_card_writes_readme(finished_runs, tmp_path, capsys):
    out = tmp_path / "card.md"
    assert main(["card", str(finished_runs["full"]), "--out", str(out), "--repo-id", "a/b"]) == 0
    assert str(out) in capsys.readouterr().out
    card = ModelCard.load(out)
    assert 'from_pretrained("a/b")' in card.text
    assert main(["card", str(tmp_path)]) == 2
    assert "not a finished training run" in capsys.readouterr().err


def test_cards_of_mixed_and_task_prompted_runs_name_every_source(finished_runs, tmp_path):
    import shutil

    for data, expected, hub in (
        (
            {"train": [{"path": "org/prefs"}, {"path": "/data/local.jsonl"}]},
            "`org/prefs`, `local.jsonl`",
            ["org/prefs"],
        ),
        ({"task": "sentiment"}, "the built-in sentiment task's prompts", None),
    ):
        run = tmp_path / next(iter(data))
        shutil.copytree(finished_runs["full"], run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["data"] = {**{k: None for k in ("path", "train", "task")}, **data}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        card = _card(model_card(run))
        assert f"- source: {expected}" in card.text
        assert card.data.to_dict().get("datasets") == hub
