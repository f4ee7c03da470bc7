"""A study's evaluation shares work across its steps (one load of each row's model, one scoring
of the held-out pairs under the start model) and its figures are those of each step done on
its own: the answers, KL and preference accuracy recomputed here from scratch must match."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from preftune.data.records import PromptGroup, Response
from preftune.data.tokenize import tokenize
from preftune.evaluate import likelihood
from preftune.evaluate.likelihood import kl_from_reference, ranking_accuracy
from preftune.experiments.config import study_from_dict
from preftune.experiments.evaluation import HeldOutPairs
from preftune.experiments.layout import StudyLayout
from preftune.experiments.runner import StudyRunner
from preftune.generate import generate, load_for_generation
from preftune.io import read_jsonl
from preftune.models import loading, trunk
from preftune.testing import build_tiny_model


@pytest.fixture()
def loads(monkeypatch):
    """Count model loads by path."""
    counted = Counter()
    real = loading.load_model

    def load_model(path, *args, **kwargs):
        counted[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_model", load_model)
    return counted


@pytest.fixture()
def trunk_uses(monkeypatch):
    """The depth of the shared trunk each policy scoring of the held-out pairs ran on (0: none)."""
    used = []
    real = likelihood.ranking_accuracy

    def ranking_accuracy(policy, pairs, **options):
        trunk = options.get("trunk")
        used.append(trunk.depth if trunk is not None else 0)
        return real(policy, pairs, **options)

    monkeypatch.setattr(likelihood, "ranking_accuracy", ranking_accuracy)
    return used


@pytest.mark.parametrize("trainable_layers", [None, 1])
def test_each_row_loads_its_model_once_and_its_figures_match_each_step_alone(
    tmp_path, tiny_study, length_gold, loads, trunk_uses, trainable_layers
):
    raw = tiny_study(("dpo", "ipo"))
    raw["train"]["trainable_layers"] = trainable_layers
    raw["data"]["dev"] = {"task": "sentiment", "split": "dev", "limit": 4}
    raw["evaluation"].update(preference_prompts=4, kl_samples=3)
    config = study_from_dict(raw)
    out = tmp_path / "study"
    StudyRunner(config, out, log=lambda line: None).run()
    layout = StudyLayout(out)

    finals = {label: str(layout.run(label) / "final") for label in ("dpo", "ipo")}
    assert {finals[label]: loads[finals[label]] for label in finals} == {
        final: 1 for final in finals.values()
    }
    start = load_for_generation(config.model)[:2]
    pairs = read_jsonl(layout.preference_pairs)
    assert pairs  # the length gold orders the start model's two samples per dev prompt
    groups = [
        PromptGroup(
            r["prompt"], [Response(r["chosen"], 1.0), Response(r["rejected"], 0.0)], r["id"]
        )
        for r in pairs
    ]
    tokenized, _ = tokenize(groups, start[1], max_prompt_length=48, max_length=64)
    prompts = [{"id": r["id"], "prompt": r["prompt"]} for r in read_jsonl(layout.heldout)]
    for label, final in finals.items():
        alone = generate(
            final, prompts, tmp_path / f"{label}.jsonl", max_new_tokens=8, batch_size=4, seed=0
        )
        answers = {row["id"]: row for row in read_jsonl(layout.samples(label))}
        assert [answers[r["id"]]["response_token_ids"] for r in alone] == [
            r["response_token_ids"] for r in alone
        ]
        assert [answers[r["id"]]["logp"] for r in alone] == pytest.approx(
            [r["logp"] for r in alone], abs=1e-5
        )
        assert {row["model"] for row in answers.values()} == {str(layout.run(label))}

        kl_samples = read_jsonl(layout.eval_dir(label) / "kl_samples.jsonl")
        kl = kl_from_reference(None, start[0], start[1], kl_samples, seed=0)["kl"]
        stats = json.loads(layout.stats(label).read_text())
        assert stats["kl"] == pytest.approx(kl, abs=1e-5)

        policy = load_for_generation(final)[0]
        accuracy = ranking_accuracy(policy, tokenized, reference=start[0], beta=0.1, batch_size=4)
        preference = json.loads(layout.preference(label).read_text())
        assert preference["accuracy"] == accuracy["reward_accuracy"]
        assert preference["n"] == accuracy["n"] == len(pairs)
    # with the bottom layer frozen, each row ran only its top layer on the start model's states
    assert trunk_uses[:2] == [1 if trainable_layers else 0] * 2  # then this test's own calls


def test_held_out_pairs_share_the_trunk_only_with_an_equal_bottom_and_under_the_cap(
    tiny_study, tiny_tokenizer, monkeypatch
):
    config = study_from_dict(tiny_study(("dpo",)))
    start = build_tiny_model(len(tiny_tokenizer))
    rows = [
        {"id": "p0", "prompt": "a story", "chosen": "a fine day", "rejected": "no"},
        {"id": "p1", "prompt": "a poem", "chosen": "the sea", "rejected": "rain again"},
    ]
    pairs = HeldOutPairs(config, rows, (start, tiny_tokenizer))
    top_trained = build_tiny_model(len(tiny_tokenizer))
    with torch.no_grad():
        top_trained.model.layers[1].self_attn.o_proj.weight.mul_(2.0)
    assert pairs.trunk_for(top_trained).depth == 1
    assert pairs.trunk_for(build_tiny_model(len(tiny_tokenizer), seed=1)) is None
    monkeypatch.setattr(trunk, "DEFAULT_CAP_BYTES", 0)  # states held in memory: capped
    assert pairs.trunk_for(top_trained) is None
