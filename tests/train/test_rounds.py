"""Iterative training of an offline method (`online.rounds`) on the tiny model: each round
samples, scores and trains from the last round's model; a kill at any point resumes to the
run an uninterrupted call gives."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import preftune.generate as generate_module
import preftune.judges.gold as gold_module
import preftune.train.trainer as trainer_module
from preftune.config import build_train_config
from preftune.errors import ConfigError, TrainingError
from preftune.io import read_jsonl
from preftune.judges.base import JudgeError
from preftune.judges.gold import register_gold
from preftune.train import train
from preftune.train.metrics import TIMING_KEYS


def answer_length(prompt, response: str) -> float:
    """The test's reward: longer answers are better (a random tiny model writes no words a
    sentiment scorer knows, so the lists need another real preference)."""
    return float(len(response))


register_gold("test-answer-length", answer_length)


@pytest.fixture()
def rounds_config(tmp_path, tiny_model_dir):
    def build(method="kto", run_name="iterative", **overrides):
        values = {
            "model": str(tiny_model_dir),
            "method": method,
            "data": {"task": "sentiment", "limit": 4, "pairs": "top-vs-worst"},
            "online": {
                "rounds": 2,
                "samples_per_prompt": 3,
                "max_new_tokens": 8,
                "generation_batch_size": 6,  # two prompts per samples file
            },
            "reward": {"type": "gold", "name": "test-answer-length"},
            "batch_size": 2,
            "optimizer": "adamw",
            "lr": 1e-3,
            "max_length": 64,
            "max_prompt_length": 48,
            "save_every": 1,
            "output_dir": str(tmp_path / "runs"),
            "run_name": run_name,
            **overrides,
        }
        return build_train_config(values)

    return build


def _metrics(run_dir):
    return [
        {k: v for k, v in row.items() if k not in TIMING_KEYS}
        for row in read_jsonl(run_dir / "metrics.jsonl")
    ]


def _same_model(a, b) -> bool:
    a, b = (load_file(x / "final" / "model.safetensors") for x in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def _summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_two_rounds_of_kto_sample_score_and_train_from_the_last_model(rounds_config):
    config = rounds_config()
    run = train(config)

    r1, r2 = run / "rounds" / "r1", run / "rounds" / "r2"
    for folder in (r1, r2):
        lists = read_jsonl(folder / "lists.jsonl")
        assert lists and all(len(row["responses"]) >= 2 for row in lists)
        for row in lists:  # scored by the reward source: the answer's length
            assert row["scores"] == [float(len(text)) for text in row["responses"]]
        assert len(list((folder / "samples").glob("*.jsonl"))) == 2  # 4 prompts, 2 per file
    round_two = yaml.safe_load((r2 / "train" / "config.yaml").read_text())
    assert round_two["model"] == str(r1 / "train" / "final")  # starts from round 1's model
    assert round_two["method"] == "kto" and round_two["data"]["format"] == "scored"
    assert read_jsonl(r1 / "samples" / "00000.jsonl") != read_jsonl(r2 / "samples" / "00000.jsonl")

    summary = _summary(run)
    samples = [row for f in (r1, r2) for row in read_jsonl_all(f / "samples")]
    scored = [row for f in (r1, r2) for row in read_jsonl(f / "lists.jsonl")]
    assert summary["budget"] == {
        "prompts": 8,
        "samples": 24,  # 2 rounds x 4 prompts x 3 samples
        "tokens": sum(row["num_tokens"] for row in samples),
        "reward_calls": sum(len(row["responses"]) for row in scored),  # distinct answers only
    }
    steps = [r["steps"] for r in summary["per_round"]]
    assert summary["steps"] == sum(steps)
    assert summary["train_groups"] == sum(r["train"]["train_groups"] for r in summary["per_round"])
    metrics = _metrics(run)
    assert [row["step"] for row in metrics] == list(range(1, sum(steps) + 1))
    assert [row["round"] for row in metrics] == [1] * steps[0] + [2] * steps[1]
    assert (run / "final" / "model.safetensors").is_file()
    assert not (r2 / "train" / "final").exists()  # moved to the run's final/
    assert train(config.model_copy(update={"resume": True})) == run  # finished: returns


def read_jsonl_all(folder):
    """Every row of a folder's .jsonl files, in name order."""
    return [row for path in sorted(folder.glob("*.jsonl")) for row in read_jsonl(path)]


class Stop(KeyboardInterrupt):
    """What a kill leaves: the work so far on disk, nothing after."""


def _stop_in_round_two_sampling(patch):
    real = generate_module.generate

    def generate(model, prompts, out_path, **options):
        if "r2" in str(out_path) and "00001" in str(out_path):
            out_path.write_text('{"id": "half-written"')  # a torn row in the partial file
            raise Stop
        return real(model, prompts, out_path, **options)

    patch.setattr(generate_module, "generate", generate)


def _stop_in_round_two_scoring(patch):
    """Round 2 stops after scoring three answers (they are in its reward cache)."""
    real, state = generate_module.generate, {"round two": False, "scored": 0}

    def generate(model, prompts, out_path, **options):
        state["round two"] = "r2" in str(out_path)
        return real(model, prompts, out_path, **options)

    def reward(prompt, response):
        if state["round two"]:
            state["scored"] += 1
            if state["scored"] > 3:
                raise Stop
        return answer_length(prompt, response)

    patch.setattr(generate_module, "generate", generate)
    patch.setitem(gold_module.GOLD_FUNCTIONS, "test-answer-length", reward)


def _stop_in_round_two_training(patch):
    real, seen = trainer_module.Trainer.step, []

    def step(self, number, indices):
        if "r2" in str(self.config.run_dir) and number == 1:
            raise Stop  # step 1 of round 2 was checkpointed (save_every 1)
        seen.append(number)
        return real(self, number, indices)

    patch.setattr(trainer_module.Trainer, "step", step)


STOPS = {
    "sampling": _stop_in_round_two_sampling,
    "scoring": _stop_in_round_two_scoring,
    "training": _stop_in_round_two_training,
}


def test_a_kill_in_round_two_resumes_to_the_uninterrupted_run(rounds_config, monkeypatch):
    straight = train(rounds_config(run_name="straight"))
    for where, stop in STOPS.items():
        config = rounds_config(run_name=f"stopped-{where}")
        with monkeypatch.context() as patch:
            stop(patch)
            with pytest.raises(Stop):
                train(config)
        assert not (config.run_dir / "summary.json").exists(), where
        resumed = train(config.model_copy(update={"resume": True}))
        assert _same_model(resumed, straight), where
        assert _metrics(resumed) == _metrics(straight), where
        assert _summary(resumed)["budget"] == _summary(straight)["budget"], where
        assert not list((resumed / "rounds" / "r2" / "samples").glob(".*partial")), where
    with pytest.raises(ConfigError, match="already exists"):
        train(config)  # without resume a run folder is refused


def test_mppo_iterates_through_the_list_view(rounds_config):
    online = {"rounds": 1, "samples_per_prompt": 3, "max_new_tokens": 8}
    run = train(rounds_config(method="mppo-list-mle", run_name="mppo", online=online))
    [first] = _summary(run)["per_round"]
    assert first["groups"] == len(read_jsonl(run / "rounds" / "r1" / "lists.jsonl")) > 0
    assert first["train"]["data"]["view_groups"] == first["groups"]  # one list per prompt


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "kto", "online": {"rounds": 2, "samples_per_prompt": 1}}, "samples_per_prompt"),
        ({"reward": None}, "reward:"),
        ({"method": "grpo"}, "online.rounds: 'grpo' samples every step already"),
    ],
)
def test_bad_rounds_settings_name_their_key(rounds_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(rounds_config(**overrides))


def test_a_failing_judge_stops_the_run_saying_how_to_resume(rounds_config, monkeypatch):
    def refused(prompt, response):
        raise JudgeError("401: the key was refused")

    monkeypatch.setitem(gold_module.GOLD_FUNCTIONS, "test-answer-length", refused)
    config = rounds_config()
    with pytest.raises(TrainingError, match=r"round 1: the reward source failed .*--resume"):
        train(config)
    assert len(list((config.run_dir / "rounds" / "r1" / "samples").glob("*.jsonl"))) == 2


def test_a_reward_source_that_cannot_load_fails_before_sampling(rounds_config, tmp_path):
    config = rounds_config(reward={"type": "model", "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="reward.path"):
        train(config)
    assert not (config.run_dir / "rounds").exists()
