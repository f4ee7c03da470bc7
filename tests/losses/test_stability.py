"""Losses stay finite, with finite and non-zero gradients, at the extremes float32 reaches."""

from __future__ import annotations

import math

import pytest
import torch

from preftune.losses import compute


def _pair(policy_w: float, policy_l: float, ref_w=0.0, ref_l=0.0, lengths=(4, 4)):
    policy = torch.tensor([[policy_w, policy_l]], dtype=torch.float32, requires_grad=True)
    inputs = {
        "policy_logps": policy,
        "ref_logps": torch.tensor([[ref_w, ref_l]], dtype=torch.float32),
        "lengths": torch.tensor([lengths], dtype=torch.float32),
    }
    return policy, inputs


@pytest.mark.parametrize("delta", [-2000.0, -900.0, -200.0, 200.0, 900.0])
def test_discopop_is_finite_with_finite_gradients_at_extreme_margins(delta):
    """Issue 24: beta * Delta < -88.7 made exp(-h) inf and sigmoid(h/tau) 0: NaN in float32."""
    beta, tau = 0.05, 0.05
    policy, inputs = _pair(delta, 0.0)
    loss, _ = compute("discopop", **inputs, beta=beta, tau=tau)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(policy.grad).all()
    h = beta * delta
    # h / tau <= -40: the mix is ~0, so the loss is the logistic -log sigmoid(h) ~ -h;
    # h / tau >= 40: the mix is ~1, so the loss is exp(-h) ~ 0.
    expected = -h if h < 0 else math.exp(-h)
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-30)
    if h < 0:  # d/dDelta of -h = -beta: pulls the chosen response up
        assert policy.grad[0, 0].item() == pytest.approx(-beta, rel=1e-4)


def test_discopop_matches_its_formula_where_both_terms_matter():
    beta, tau = 0.05, 0.05
    _, inputs = _pair(-1.0, 0.5, ref_w=-0.4, ref_l=0.2)
    loss, _ = compute("discopop", **inputs, beta=beta, tau=tau)
    h = beta * ((-1.0 + 0.4) - (0.5 - 0.2))
    mix = 1 / (1 + math.exp(-h / tau))
    expected = (1 - mix) * math.log1p(math.exp(-h)) + mix * math.exp(-h)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mean_logp", [-1e-7, -1e-6, -1e-8, -1e-3])
def test_orpo_gradient_stays_finite_and_non_zero_as_the_mean_probability_nears_one(mean_logp):
    """Issue 25: clamping log pbar at -1e-6 zeroed the odds-ratio gradient above pbar = 0.999999."""
    length = 4
    policy, inputs = _pair(mean_logp * length, -2.0 * length)
    lam = 0.1
    loss, _ = compute("orpo", **inputs, lam=lam)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(policy.grad).all()
    # log odds(y) = x - log(1 - e^x), x = s / l; d(log odds)/dx = 1 / (1 - e^x).
    x_w, x_l = mean_logp, -2.0
    odds_gap = (x_w - math.log(-math.expm1(x_w))) - (x_l - math.log(-math.expm1(x_l)))
    expected = -x_w + lam * math.log1p(math.exp(-odds_gap))
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    sigmoid_neg = 1 / (1 + math.exp(odds_gap))
    expected_grad_w = (-1 - lam * sigmoid_neg / -math.expm1(x_w)) / length
    assert policy.grad[0, 0].item() != 0.0
    assert policy.grad[0, 0].item() == pytest.approx(expected_grad_w, rel=1e-3)


def test_orpo_is_finite_when_the_chosen_response_is_certain():
    policy, inputs = _pair(0.0, -3.0)
    loss, _ = compute("orpo", **inputs, lam=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(policy.grad).all()
