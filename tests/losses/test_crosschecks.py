"""Where methods coincide, their losses must too (random pairs, float64)."""

from __future__ import annotations

import math

import pytest
import torch

from preftune.losses import compute


def random_pairs(groups=5, seed=0, equal_lengths=None):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    lengths = torch.randint(1, 9, (groups, 2), generator=generator).double()
    if equal_lengths is not None:
        lengths = torch.full((groups, 2), float(equal_lengths), dtype=torch.float64)
    scores = torch.stack([rand(groups) + 1.5, rand(groups)], dim=1)  # chosen clearly better
    return {
        "policy_logps": -rand(groups, 2) * 8 - 0.5,
        "ref_logps": -rand(groups, 2) * 8 - 0.5,
        "lengths": lengths,
        "scores": scores,
    }


def loss(name, inputs, **keywords):
    return compute(name, **inputs, **keywords)[0].item()


@pytest.mark.parametrize(
    "name, keywords",
    [
        ("cdpo", {"epsilon": 0.0}),
        ("rdpo", {"epsilon": 0.0}),
        ("dpo-shift", {"lam": 1.0}),
        ("h-dpo", {"alpha": 1.0}),
        ("odpo", {"alpha": 0.0}),
        ("mmpo", {"gamma": 1e4}),
    ],
)
def test_dpo_special_cases(name, keywords):
    inputs = random_pairs()
    assert loss(name, inputs, beta=0.3, **keywords) == pytest.approx(
        loss("dpo", inputs, beta=0.3), rel=1e-9
    )


def test_mmpo_is_cdpo_with_the_scores_soft_label():
    inputs = random_pairs()
    gap = 0.7
    inputs["scores"] = torch.tensor([[1.0 + gap, 1.0]] * 5, dtype=torch.float64)
    epsilon = 1 - 1 / (1 + math.exp(-2.0 * gap))
    assert loss("mmpo", inputs, gamma=2.0) == pytest.approx(
        loss("cdpo", inputs, epsilon=epsilon), rel=1e-9
    )


def test_dpop_is_dpo_while_the_chosen_log_ratio_is_positive():
    inputs = random_pairs()
    inputs["policy_logps"][:, 0] = inputs["ref_logps"][:, 0] + 0.25
    assert loss("dpop", inputs, lam=50.0) == pytest.approx(loss("dpo", inputs), rel=1e-12)
    inputs["policy_logps"][:, 0] = inputs["ref_logps"][:, 0] - 0.25
    assert loss("dpop", inputs, lam=50.0) > loss("dpo", inputs)


def test_ln_dpo_with_equal_lengths_is_dpo_with_beta_over_length():
    inputs = random_pairs(equal_lengths=4)
    assert loss("ln-dpo", inputs, beta=0.8) == pytest.approx(
        loss("dpo", inputs, beta=0.2), rel=1e-9
    )


def test_ipo_length_normalised_with_unit_lengths_is_ipo():
    inputs = random_pairs(equal_lengths=1)
    assert loss("ipo", inputs, length_normalize=True) == pytest.approx(
        loss("ipo", inputs), rel=1e-12
    )


def test_scores_rank_the_pair_whatever_the_column_order():
    inputs = random_pairs()
    swapped = {key: value.flip(1) for key, value in inputs.items()}
    unscored = {key: value for key, value in inputs.items() if key != "scores"}
    for name in ("dpo", "simpo", "ipo", "orpo", "mppo-pair-single"):
        assert loss(name, swapped) == pytest.approx(loss(name, unscored), rel=1e-12), name


def test_rpo_with_a_single_pair_is_dpo():
    inputs = random_pairs(groups=1)
    embedding = torch.tensor([[0.3, -1.0, 2.0]])
    assert loss("rpo", inputs, prompt_embeddings=embedding) == pytest.approx(
        loss("dpo", inputs), rel=1e-12
    )
    assert loss("rpo-diagonal", inputs) == pytest.approx(loss("dpo", inputs), rel=1e-12)


def test_rpo_diagonal_with_alpha_one_is_dpo():
    inputs = random_pairs(groups=4)
    assert loss("rpo-diagonal", inputs, alpha=1.0) == pytest.approx(loss("dpo", inputs), rel=1e-12)


def test_rpo_with_identical_prompts_weighs_all_contrasts_equally():
    """Equal prompts: w_ij = 1/M, so each logit is beta L_ij / M."""
    groups = 4
    inputs = random_pairs(groups=groups)
    embeddings = torch.ones(groups, 3)
    rho = inputs["policy_logps"] - inputs["ref_logps"]
    gaps = rho[:, :1] - rho[:, 1][None, :]
    expected = torch.nn.functional.softplus(-0.1 * gaps / groups).mean().item()
    assert loss("rpo", inputs, prompt_embeddings=embeddings) == pytest.approx(expected, rel=1e-9)


def test_bco_pair_is_bco_on_the_pair_split_with_a_zero_reward_mean():
    inputs = random_pairs()
    singles = {
        "policy_logps": inputs["policy_logps"].reshape(-1, 1),
        "ref_logps": inputs["ref_logps"].reshape(-1, 1),
        "labels": torch.tensor([[True], [False]] * 5),
    }
    bco = loss("bco", singles, reward_mean=torch.tensor(0.0))
    assert 2 * bco == pytest.approx(loss("bco-pair", inputs), rel=1e-9)


def test_mppo_objectives_coincide_on_a_single_pair():
    inputs = random_pairs()
    single = loss("mppo-pair-single", inputs)
    for name in ("mppo-pair-mns", "mppo-pair-mnm", "mppo-pair-mcs", "mppo-pair-mcm"):
        assert loss(name, inputs) == pytest.approx(single, rel=1e-12), name
    # List-MLE on two: -log[e^{p_w} / (e^{p_w} + e^{p_l})] = -log sigmoid(p_w - p_l)
    assert loss("mppo-list-mle", inputs) == pytest.approx(single, rel=1e-9)


def test_mpo_set_on_a_pair_is_dpo():
    inputs = random_pairs()
    assert loss("mpo-set", inputs, beta=0.4) == pytest.approx(
        loss("dpo", inputs, beta=0.4), rel=1e-9
    )


def test_mpo_set_leaves_out_groups_without_a_preference():
    inputs = random_pairs(groups=2)
    inputs["scores"][1] = torch.tensor([3.0, 3.0])
    first = {key: value[:1] for key, value in inputs.items()}
    value, metrics = compute("mpo-set", **inputs)
    assert value.item() == pytest.approx(loss("mpo-set", first), rel=1e-12)
    assert metrics["mpo/informative"] == 0.5


def test_orpo_without_the_odds_term_is_sft_on_the_chosen():
    inputs = random_pairs()
    assert loss("orpo", inputs, lam=0.0) == pytest.approx(loss("sft", inputs), rel=1e-12)


def test_kto_reference_point_is_clamped_at_zero():
    singles = {
        "policy_logps": torch.tensor([[-2.0], [-3.0]], dtype=torch.float64),
        "ref_logps": torch.tensor([[-2.5], [-2.5]], dtype=torch.float64),
        "labels": torch.tensor([[True], [False]]),
    }
    below = {
        "kl_policy_logps": torch.tensor([-5.0, -6.0]),
        "kl_ref_logps": torch.tensor([-4.0, -4.0]),
    }
    zero = {"kl_policy_logps": torch.tensor([-4.0]), "kl_ref_logps": torch.tensor([-4.0])}
    value, metrics = compute("kto", **singles, **below)
    assert metrics["kto/kl"] == 0.0
    assert value.item() == pytest.approx(loss("kto", singles, **zero), rel=1e-12)


def test_kto_reference_point_is_detached():
    singles = {
        "policy_logps": torch.tensor([[-2.0], [-3.0]], dtype=torch.float64, requires_grad=True),
        "ref_logps": torch.tensor([[-2.5], [-2.5]], dtype=torch.float64),
        "labels": torch.tensor([[True], [False]]),
    }
    kl_policy = torch.tensor([-3.0, -2.0], dtype=torch.float64, requires_grad=True)
    value, _ = compute(
        "kto", **singles, kl_policy_logps=kl_policy, kl_ref_logps=torch.tensor([-4.0, -4.0])
    )
    value.backward()
    assert kl_policy.grad is None
    assert singles["policy_logps"].grad.abs().sum() > 0
