import numpy as np
import pytest
import torch

from preftune.data.batch import TokenizedGroup
from preftune.errors import MethodDataError
from preftune.evaluate.likelihood import (
    kl_from_reference,
    ranking_accuracy,
    summed_logps,
    usable_pairs,
)
from preftune.generate import generate, render_prompt
from preftune.models.trunk import TrunkStates, shared_depth
from preftune.testing import build_tiny_model


def _logp(model, prompt, response):
    """One sequence scored on its own, token by token."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(log_probs[len(prompt) + i - 1, t]) for i, t in enumerate(response))


PAIRS = [
    TokenizedGroup("a", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [None, None]),
    TokenizedGroup("b", [11, 12], [[13, 14, 15, 2], [16, 2]], [1.0, 0.0], [None, None]),
    TokenizedGroup("c", [20, 21, 22, 23], [[30, 2], [31, 32, 2]], [1.0, 0.0], [None, None]),
    TokenizedGroup("d", [40], [[41, 2], [42, 2]], [1.0, 0.0], [None, None]),
    TokenizedGroup("tie", [40], [[41, 2], [42, 2]], [1.0, 1.0], [None, None], tie=True),
]


def test_ranking_accuracy_matches_per_sequence_scoring(tiny_model, tiny_tokenizer):
    reference = build_tiny_model(len(tiny_tokenizer), seed=1)
    results = ranking_accuracy(tiny_model, PAIRS, reference=reference, beta=0.5, batch_size=2)
    likelihood_right = reward_right = 0
    for group in PAIRS[:4]:
        chosen, rejected = (_logp(tiny_model, group.prompt_ids, r) for r in group.response_ids)
        ref_chosen, ref_rejected = (
            _logp(reference, group.prompt_ids, r) for r in group.response_ids
        )
        likelihood_right += chosen > rejected
        reward_right += (chosen - ref_chosen) > (rejected - ref_rejected)
    assert results["n"] == 4 and results["ties_skipped"] == 1
    assert results["likelihood_accuracy"] == likelihood_right / 4
    assert results["reward_accuracy"] == reward_right / 4


def test_precomputed_reference_logps_give_the_reference_models_figures(tiny_model, tiny_tokenizer):
    reference = build_tiny_model(len(tiny_tokenizer), seed=1)
    scored = summed_logps(reference, usable_pairs(PAIRS), batch_size=2)[0]
    with_model = ranking_accuracy(tiny_model, PAIRS, reference=reference, beta=0.5, batch_size=2)
    with_logps = ranking_accuracy(tiny_model, PAIRS, reference_logps=scored, beta=0.5, batch_size=2)
    assert with_logps == with_model
    # Hand-made reference log-probs: a reference that gives every chosen response 100 nats
    # less than the policy (and every rejected one the same) makes β(s − s_ref) = 0.5 * 100
    # for chosen and 0 for rejected.
    policy = summed_logps(tiny_model, usable_pairs(PAIRS), batch_size=2)[0]
    against = policy.clone()
    against[:, 0] -= 100.0
    lopsided = ranking_accuracy(tiny_model, PAIRS, reference_logps=against, beta=0.5)
    assert lopsided["reward_accuracy"] == 1.0
    assert lopsided["reward_margin"] == pytest.approx(50.0)


def test_ranking_accuracy_without_pairs_is_refused(tiny_model):
    with pytest.raises(MethodDataError):
        ranking_accuracy(tiny_model, PAIRS[4:])


def test_kl_is_zero_against_itself_and_matches_manual_log_ratio(
    tmp_path, tiny_model, tiny_tokenizer
):
    prompts = [{"id": str(i), "prompt": f"write a short review {i}"} for i in range(3)]
    samples = generate(
        (tiny_model, tiny_tokenizer),
        prompts,
        tmp_path / "s.jsonl",
        max_new_tokens=5,
        temperature=1.0,
    )
    itself = kl_from_reference(tiny_model, tiny_model, tiny_tokenizer, samples)
    assert itself["kl"] == pytest.approx(0.0, abs=1e-4) and itself["plain_sampling"]

    reference = build_tiny_model(len(tiny_tokenizer), seed=1)
    results = kl_from_reference(tiny_model, reference, tiny_tokenizer, samples, batch_size=2)
    expected = []
    for row in samples:
        prompt_ids = render_prompt(tiny_tokenizer, row["prompt"])
        response = row["response_token_ids"]
        expected.append(
            _logp(tiny_model, prompt_ids, response) - _logp(reference, prompt_ids, response)
        )
    assert results["kl"] == pytest.approx(sum(expected) / 3, abs=1e-4)
    # the interval: a percentile bootstrap over prompts (ids "0" < "1" < "2": the rows' order)
    draws = np.random.default_rng(0).integers(0, 3, size=(2000, 3))
    bounds = np.quantile(np.asarray(expected)[draws].mean(axis=1), [0.025, 0.975])
    assert [results["kl_ci_low"], results["kl_ci_high"]] == pytest.approx(list(bounds), abs=1e-4)
    without_logp = [{k: v for k, v in row.items() if k != "logp"} for row in samples]
    recomputed = kl_from_reference(tiny_model, reference, tiny_tokenizer, without_logp)
    assert recomputed["kl"] == pytest.approx(results["kl"], abs=1e-4)


def test_a_policy_sharing_the_references_bottom_layers_runs_only_its_top_ones(tiny_tokenizer):
    """A model trained with `trainable_layers` scores the pairs on the states the reference
    kept in the same batches: the same numbers bit for bit, and its bottom layer never runs."""
    reference = build_tiny_model(len(tiny_tokenizer))
    policy = build_tiny_model(len(tiny_tokenizer))
    with torch.no_grad():  # training changed the top layer (and the final norm) only
        policy.model.layers[1].mlp.down_proj.weight.mul_(1.5)
        policy.model.norm.weight.add_(0.25)
    depth = shared_depth(reference, policy)
    assert depth == 1
    states = TrunkStates(None, depth)
    usable = usable_pairs(PAIRS)
    kept = summed_logps(reference, usable, batch_size=2, keep_states=states)
    assert torch.equal(kept[0], summed_logps(reference, usable, batch_size=2)[0])

    bottom_runs = []
    policy.model.layers[0].register_forward_hook(lambda *args: bottom_runs.append(1))
    plain = ranking_accuracy(policy, PAIRS, reference_logps=kept[0], beta=0.5, batch_size=2)
    runs_plain = len(bottom_runs)
    shared = ranking_accuracy(
        policy, PAIRS, reference_logps=kept[0], beta=0.5, batch_size=2, trunk=states
    )
    assert runs_plain == 2 and len(bottom_runs) == runs_plain  # 4 pairs in 2 batches
    assert shared == plain
    with_trunk = summed_logps(policy, usable, batch_size=2, trunk=states)[0]
    assert torch.equal(with_trunk, summed_logps(policy, usable, batch_size=2)[0])
    assert not torch.equal(with_trunk, kept[0])  # the top layer did change the numbers


def test_shared_depth_stops_at_the_first_layer_that_differs(tiny_tokenizer):
    start = build_tiny_model(len(tiny_tokenizer))
    assert shared_depth(start, build_tiny_model(len(tiny_tokenizer))) == 2
    bottom_changed = build_tiny_model(len(tiny_tokenizer))
    with torch.no_grad():
        bottom_changed.model.layers[0].input_layernorm.weight.add_(1e-3)
    assert shared_depth(start, bottom_changed) == 0
    embeddings_changed = build_tiny_model(len(tiny_tokenizer))
    with torch.no_grad():
        embeddings_changed.model.embed_tokens.weight[3, 0] += 1.0
    assert shared_depth(start, embeddings_changed) == 0
    eager = build_tiny_model(len(tiny_tokenizer))
    eager.config._attn_implementation = "eager"
    assert shared_depth(start, eager) == 0
