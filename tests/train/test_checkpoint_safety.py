"""Checkpoints load tensors and plain values only, and keep this run's optimizer settings."""

import random

import numpy as np
import pytest
import torch

from preftune.errors import TrainingError
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from preftune.train.optim import build_scheduler


class Payload:
    """Unpickling this creates `path`: what a crafted rng.pt would do with weights_only=False."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_pickle_in_a_checkpoint_is_refused_and_never_runs(
    make_config, paired_file, tmp_path
):
    config = make_config("dpo", paired_file, max_steps=2, save_every=1)
    train(config)
    (config.run_dir / "summary.json").unlink()  # as if killed before it was written
    marker = tmp_path / "code-ran"
    torch.save(Payload(marker), latest_checkpoint(config.run_dir) / "rng.pt")

    with pytest.raises(TrainingError, match=r"rng\.pt holds objects other than tensors"):
        train(config.model_copy(update={"resume": True}))
    assert not marker.exists()


@pytest.mark.parametrize("damage", [b"not a checkpoint", None])
def test_a_damaged_checkpoint_file_is_one_error_naming_it(make_config, paired_file, damage):
    config = make_config("dpo", paired_file, max_steps=2, save_every=1)
    train(config)
    (config.run_dir / "summary.json").unlink()
    path = latest_checkpoint(config.run_dir) / "optimizer.pt"
    path.write_bytes(damage if damage is not None else path.read_bytes()[:200])  # truncated
    with pytest.raises(TrainingError, match=r"optimizer\.pt is damaged or truncated"):
        train(config.model_copy(update={"resume": True}))


def _optimizer(module, config):
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    return optimizer, build_scheduler(optimizer, config, total_steps=10)


def test_a_loaded_checkpoint_keeps_this_runs_optimizer_settings_and_the_rng(
    tmp_path, make_config, paired_file
):
    module = torch.nn.Linear(3, 2)
    before = make_config("dpo", paired_file, lr=1e-3, warmup_steps=4, weight_decay=0.0)
    optimizer, scheduler = _optimizer(module, before)
    for _ in range(2):
        module(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    checkpoint = save_checkpoint(
        tmp_path,
        2,
        modules={"model": module},
        optimizer=optimizer,
        scheduler=scheduler,
        state={"tokens": 5},
        metrics_path=tmp_path / "metrics.jsonl",
    )
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))

    after = before.model_copy(update={"lr": 4e-4, "weight_decay": 0.1, "warmup_steps": 0})
    optimizer, scheduler = _optimizer(torch.nn.Linear(3, 2), after)
    state = load_checkpoint(
        checkpoint,
        modules={"model": module},
        optimizer=optimizer,
        scheduler=scheduler,
        metrics_path=tmp_path / "metrics.jsonl",
    )
    assert state == {"tokens": 5, "step": 2}
    assert (random.random(), np.random.rand()) == expected_draws[:2]
    assert torch.equal(torch.rand(1), expected_draws[2])
    group = optimizer.param_groups[0]
    # no warm-up any more: step 2 of a constant schedule runs at the new lr
    assert (group["lr"], group["weight_decay"]) == (4e-4, 0.1)
    assert scheduler.get_last_lr() == [4e-4]
    assert optimizer.state[optimizer.param_groups[0]["params"][0]]["step"] == 2
    scheduler.step()
    assert group["lr"] == 4e-4
