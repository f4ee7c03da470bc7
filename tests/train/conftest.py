"""Training fixtures: small data files in each shape, a private cache, a config builder."""

from __future__ import annotations

import pytest

from preftune.testing import write_preference_files

NUM_PROMPTS = 6


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Reference log-probs and embeddings go to a per-test cache, never ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    return cache


@pytest.fixture()
def paired_file(tmp_path):
    return write_preference_files(tmp_path, NUM_PROMPTS)["paired"]


@pytest.fixture()
def binary_file(tmp_path):
    return write_preference_files(tmp_path, NUM_PROMPTS)["binary"]


@pytest.fixture()
def scored_file(tmp_path):
    return write_preference_files(tmp_path, NUM_PROMPTS)["scored"]


@pytest.fixture()
def make_config(tmp_path, tiny_model_dir):
    """A small, fast TrainConfig for the tiny model; keyword arguments override."""
    from preftune.config import build_train_config

    def build(method: str, data, **overrides):
        values = {
            "model": str(tiny_model_dir),
            "method": method,
            "data": {"path": str(data)},
            "batch_size": 4,
            "micro_batch_size": 2,
            "lr": 1e-3,
            "max_length": 64,
            "max_prompt_length": 32,
            "output_dir": str(tmp_path / "runs"),
            **overrides,
        }
        return build_train_config(values)

    return build


@pytest.fixture()
def stopped_run(monkeypatch):
    """`stopped_run(trainer_class, step, run)`: `run()` stopped by a KeyboardInterrupt when the
    trainer is asked for optimizer step `step` (as a run killed there), the trainer restored."""

    def stop(trainer_class, step: int, run) -> None:
        real_step = trainer_class.step

        def step_or_stop(self, number, indices):
            if number == step:
                raise KeyboardInterrupt
            return real_step(self, number, indices)

        with monkeypatch.context() as patch:
            patch.setattr(trainer_class, "step", step_or_stop)
            with pytest.raises(KeyboardInterrupt):
                run()

    return stop
