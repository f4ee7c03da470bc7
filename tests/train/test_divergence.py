"""A run that diverges stops saying what it keeps, never checkpoints diverged weights, and can
go on from its last finite checkpoint with other optimizer settings."""

import json

import pytest
import torch

import preftune.train.trainer as trainer_module
from preftune.errors import ConfigError, TrainingError
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint


def _poison_loss_at_call(monkeypatch, call: int):
    real, calls = trainer_module.compute, {"n": 0}

    def poisoned(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == call else loss), metrics

    monkeypatch.setattr(trainer_module, "compute", poisoned)


def test_a_stop_without_checkpoints_says_none_was_saved(make_config, paired_file, monkeypatch):
    _poison_loss_at_call(monkeypatch, 3)  # 2 micro-batches a step: inside step 2
    config = make_config("dpo", paired_file, max_steps=3)
    with pytest.raises(TrainingError, match="No checkpoint was saved yet") as error:
        train(config)
    assert "loss became nan at step 2" in str(error.value)
    assert "is kept" not in str(error.value) and latest_checkpoint(config.run_dir) is None


def test_weights_that_became_nan_are_never_checkpointed(make_config, paired_file, monkeypatch):
    real_step = trainer_module.Trainer.step

    def diverging(self, step, indices):
        result = real_step(self, step, indices)
        if step == 1:  # the update of step 2 leaves a weight NaN; its loss was still finite
            with torch.no_grad():
                next(self.modules["model"].parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(trainer_module.Trainer, "step", diverging)
    config = make_config("dpo", paired_file, max_steps=4, save_every=1)
    with pytest.raises(TrainingError, match="became NaN/inf by step 2") as error:
        train(config)
    kept = config.run_dir / "checkpoints" / "step-1"
    assert f"The last finite checkpoint is {kept}" in str(error.value)
    assert latest_checkpoint(config.run_dir) == kept


def test_a_diverged_run_resumes_with_a_lower_lr_but_not_with_another_method_setting(
    make_config, paired_file, monkeypatch
):
    settings = {"max_steps": 4, "save_every": 1, "warmup_steps": 0}
    with monkeypatch.context() as patch:
        _poison_loss_at_call(patch, 5)  # inside step 3
        config = make_config("dpo", paired_file, **settings)
        with pytest.raises(TrainingError, match=r"last finite checkpoint is .*step-2"):
            train(config)

    with pytest.raises(ConfigError, match=r"differs from the run's config.yaml in hparams"):
        train(make_config("dpo", paired_file, **settings, hparams={"beta": 0.2}, resume=True))
    with pytest.warns(UserWarning, match=r"changed settings: lr 0.001 -> 0.0005"):
        run_dir = train(make_config("dpo", paired_file, **settings, lr=5e-4, resume=True))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(row["step"], row["lr"]) for row in rows] == [
        (1, 1e-3),
        (2, 1e-3),
        (3, 5e-4),
        (4, 5e-4),
    ]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
