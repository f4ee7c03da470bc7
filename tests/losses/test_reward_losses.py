"""Reward-model losses against values and gradients worked out by hand with plain `math`."""

from __future__ import annotations

import math

import pytest
import torch

from preftune.losses.reward import bradley_terry, list_plackett_luce, ranking_accuracy


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bt_nll(x: float) -> float:
    return math.log1p(math.exp(-x))


def test_bradley_terry_value_and_gradient_with_margin_and_centering():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    margins = torch.tensor([0.5, 0.0], dtype=torch.float64)
    loss, metrics = bradley_terry(rewards, margins=margins, centering=0.1)
    # pair 0: gap 1, margin 0.5, sum 1; pair 1: gap -2, no margin, sum 2
    expected = (bt_nll(0.5) + bt_nll(-2.0)) / 2 + 0.1 * (1.0**2 + 2.0**2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    # d/dr_c = (-(1 - s(gap - m)) + 2 c (r_c + r_r)) / G, d/dr_r = ((1 - s) + 2 c (...)) / G
    pull = [1 - sigmoid(0.5), 1 - sigmoid(-2.0)]
    center = [2 * 0.1 * 1.0, 2 * 0.1 * 2.0]
    expected_grad = [[(-pull[g] + center[g]) / 2, (pull[g] + center[g]) / 2] for g in range(2)]
    assert torch.allclose(rewards.grad, torch.tensor(expected_grad, dtype=torch.float64))
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["rewards/margins"] == pytest.approx((1.0 - 2.0) / 2)
    assert metrics["rewards/chosen"] == pytest.approx(0.5)


def test_bradley_terry_without_extras_is_the_mean_log_sigmoid_of_the_gap():
    rewards = torch.tensor([[3.0, 1.0], [1.0, 1.5]], dtype=torch.float64)
    loss, _ = bradley_terry(rewards)
    assert loss.item() == pytest.approx((bt_nll(2.0) + bt_nll(-0.5)) / 2, abs=1e-12)


def test_plackett_luce_value_and_gradient_by_hand():
    r = [2.0, 1.0, 0.0]
    rewards = torch.tensor([r], dtype=torch.float64, requires_grad=True)
    loss, metrics = list_plackett_luce(rewards, torch.tensor([[True, True, True]]))
    z1 = sum(math.exp(v) for v in r)  # first place among all three
    z2 = math.exp(r[1]) + math.exp(r[2])  # second among the last two; the third is certain
    expected = -(r[0] - math.log(z1)) - (r[1] - math.log(z2))
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    p = [math.exp(v) / z1 for v in r]
    q = [0.0, math.exp(r[1]) / z2, math.exp(r[2]) / z2]
    expected_grad = [p[0] - 1, p[1] + q[1] - 1, p[2] + q[2]]
    assert torch.allclose(rewards.grad[0], torch.tensor(expected_grad, dtype=torch.float64))
    assert metrics["rewards/accuracies"] == 1.0  # the best beats both others
    assert metrics["rewards/margins"] == pytest.approx(((2 - 1) + (2 - 0)) / 2)


def test_plackett_luce_ignores_masked_slots_and_centers_over_the_group():
    rewards = torch.tensor([[0.5, 1.5, 9.0], [1.0, 0.0, -1.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss, _ = list_plackett_luce(rewards, mask, centering=0.2)
    two = bt_nll(0.5 - 1.5)  # a two-response list is a Bradley-Terry pair
    z1 = math.exp(1.0) + 1 + math.exp(-1.0)
    three = -(1.0 - math.log(z1)) - (0.0 - math.log(1 + math.exp(-1.0)))
    centering = 0.2 * ((0.5 + 1.5) ** 2 + (1.0 + 0.0 - 1.0) ** 2) / 2
    assert loss.item() == pytest.approx((two + three) / 2 + centering, abs=1e-12)


def test_ranking_accuracy_is_the_share_of_pairs_in_the_data_order():
    chosen = torch.tensor([0.3, -1.0, 2.0, 0.0])
    rejected = torch.tensor([0.1, 0.0, 1.0, 0.0])  # right, wrong, right, tie (wrong)
    assert ranking_accuracy(chosen, rejected) == 2 / 4
