"""The sampled KL estimate of a study row: its bootstrap interval and write_stats' defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preftune.evaluate.likelihood import kl_from_reference
from preftune.experiments.config import study_from_dict
from preftune.experiments.evaluation import kl_sample_count, write_stats
from preftune.generate import generate, render_prompt
from preftune.generate.jsonl import read_jsonl
from preftune.testing import build_tiny_model


def _logp(model, prompt, response):
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(log_probs[len(prompt) + i - 1, t]) for i, t in enumerate(response))


def _percentile_interval(values: list[float], seed: int) -> tuple[float, float]:
    """The bootstrap over prompts written out by hand: one answer per prompt."""
    values = np.asarray(values)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(2000, len(values)))
    low, high = np.quantile(values[draws].mean(axis=1), [0.025, 0.975])
    return float(low), float(high)


def test_kl_interval_is_a_bootstrap_over_prompts_of_the_log_ratios(
    tmp_path, tiny_model, tiny_tokenizer
):
    prompts = [{"id": f"p{i}", "prompt": f"write a short review {i}"} for i in range(6)]
    samples = generate(
        (tiny_model, tiny_tokenizer),
        prompts,
        tmp_path / "s.jsonl",
        max_new_tokens=5,
        temperature=1.0,
    )
    reference = build_tiny_model(len(tiny_tokenizer), seed=1)
    found = kl_from_reference(tiny_model, reference, tiny_tokenizer, samples, seed=3)
    # ids sort as p0..p5, the rows' order, so the hand-made bootstrap draws the same prompts
    ratios = [
        _logp(tiny_model, render_prompt(tiny_tokenizer, row["prompt"]), row["response_token_ids"])
        - _logp(reference, render_prompt(tiny_tokenizer, row["prompt"]), row["response_token_ids"])
        for row in samples
    ]
    low, high = _percentile_interval(ratios, seed=3)
    assert found["kl"] == pytest.approx(sum(ratios) / 6, abs=1e-4)
    assert found["kl_ci_low"] == pytest.approx(low, abs=1e-4)
    assert found["kl_ci_high"] == pytest.approx(high, abs=1e-4)
    assert min(ratios) <= found["kl_ci_low"] < found["kl_ci_high"] <= max(ratios)


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
