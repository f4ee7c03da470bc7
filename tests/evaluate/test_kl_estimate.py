"""The sampled KL estimate of a study row: write_stats' defaults and what it writes."""

from __future__ import annotations

import pytest

from preftune.evaluate.likelihood import kl_from_reference
from preftune.experiments.config import study_from_dict
from preftune.experiments.evaluation import kl_sample_count, write_stats
from preftune.generate import generate
from preftune.io import read_jsonl
from preftune.testing import build_tiny_model


def _config(model_dir, **evaluation):
    return study_from_dict(
        {
            "model": str(model_dir),
            "data": {
                "train": {"task": "sentiment", "limit": 4},
                "heldout": {"task": "sentiment"},
                "on_policy": {"samples_per_prompt": 2},
            },
            "methods": [{"method": "dpo"}],
            "evaluation": {
                "max_new_tokens": 4,
                "evaluations": [{"name": "gold", "judge": {"type": "gold"}}],
                **evaluation,
            },
        }
    )


def test_kl_samples_default_to_every_evaluated_prompt(tiny_model_dir):
    assert kl_sample_count(_config(tiny_model_dir), 50) == 50
    assert kl_sample_count(_config(tiny_model_dir, kl_samples=8), 50) == 8
    assert kl_sample_count(_config(tiny_model_dir, kl_samples=80), 50) == 50
    assert kl_sample_count(_config(tiny_model_dir, kl_samples=0), 50) == 0


def test_write_stats_samples_once_per_prompt_and_writes_the_interval(
    tmp_path, tiny_model_dir, tiny_model, tiny_tokenizer
):
    config = _config(tiny_model_dir)
    prompts = [{"id": str(i), "prompt": f"a review of a lamp, number {i}"} for i in range(3)]
    greedy = tmp_path / "eval" / "samples.jsonl"
    generate((tiny_model, tiny_tokenizer), prompts, greedy, max_new_tokens=4, temperature=0.0)
    reference = build_tiny_model(len(tiny_tokenizer), seed=1)
    out = tmp_path / "eval" / "stats.json"
    stats = write_stats(
        config, greedy, (reference, tiny_tokenizer), out, model=(tiny_model, tiny_tokenizer)
    )
    sampled = read_jsonl(tmp_path / "eval" / "kl_samples.jsonl")
    assert len(sampled) == 3 and stats["kl_estimate"] == "sampled" and stats["kl_n"] == 3
    direct = kl_from_reference(None, reference, tiny_tokenizer, sampled, seed=config.seed)
    assert stats["kl"] == pytest.approx(direct["kl"])
    assert stats["kl_ci_low"] <= stats["kl"] <= stats["kl_ci_high"]
