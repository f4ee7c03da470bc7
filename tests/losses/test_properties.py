"""For every registered method: gradient sign, ragged masks, float32 vs float64 agreement."""

from __future__ import annotations

import math

import pytest
import torch

from preftune.errors import MethodDataError
from preftune.losses import METHODS, compute

# (d loss / d log-prob of the best response, ... of the worst): -1 lowers the loss, +1 raises
# it, 0 leaves it. Best/worst: chosen/rejected, desirable/undesirable, top/bottom score.
DEFAULT_SIGNS = (-1, +1)
# Methods `compute` runs; the online ones have their own tests (test_online_losses.py).
OFFLINE = sorted(name for name, spec in METHODS.items() if not spec.is_online)
SIGNS = {
    "sft": (-1, 0),  # only the preferred response is trained on
    "slic": (-1, 0),  # the calibration hinge is already satisfied (s_w - s_l = 1.5 > delta)
    "apo-down": (+1, +1),  # APO-down lowers the chosen likelihood too, the rejected one more
}


def gradient_positions(spec):
    if spec.view == "binary":
        return (0, 0), (1, 0)
    if spec.view == "list":
        return (0, 0), (0, 2)
    return (0, 0), (0, 1)


def gradient_source(name, inputs):
    """The tensor the policy's log-probs enter through: per-token for offline PPO."""
    key = "token_logps" if name == "ppo-offline" else "policy_logps"
    inputs[key] = inputs[key].clone().requires_grad_(True)
    return key


@pytest.mark.parametrize("name", OFFLINE)
def test_gradient_sign(name, inputs_for):
    inputs = inputs_for(name)
    key = gradient_source(name, inputs)
    loss, _ = compute(name, **inputs)
    loss.backward()
    grad = inputs[key].grad
    if grad.dim() == 3:
        grad = grad.sum(dim=-1)
    for position, sign in zip(
        gradient_positions(METHODS[name]), SIGNS.get(name, DEFAULT_SIGNS), strict=True
    ):
        value = grad[position].item()
        if sign == 0:
            assert abs(value) < 1e-12, (name, position, value)
        else:
            assert math.copysign(1, value) == sign and abs(value) > 1e-8, (name, position, value)


def padded(name, inputs, garbage):
    """The same batch with one more response slot per group, masked out, holding `garbage`."""
    out = dict(inputs)
    groups, width = inputs["policy_logps"].shape
    mask = torch.ones(groups, width + 1, dtype=torch.bool)
    mask[:, width] = False
    for key in ("policy_logps", "ref_logps", "lengths", "scores"):
        if key in inputs:
            column = torch.full((groups, 1), garbage, dtype=inputs[key].dtype)
            out[key] = torch.cat([inputs[key], column], dim=1)
    if "labels" in inputs:
        out["labels"] = torch.cat(
            [inputs["labels"], torch.ones(groups, 1, dtype=torch.bool)], dim=1
        )
    for key in ("token_logps", "token_ref_logps", "values", "token_mask"):
        if key in inputs:
            tokens = inputs[key]
            filler = (
                torch.ones_like(tokens[:, :1])
                if key == "token_mask"
                else torch.full_like(tokens[:, :1], garbage)
            )
            out[key] = torch.cat([tokens, filler], dim=1)
    out["mask"] = mask
    return out


@pytest.mark.parametrize("name", OFFLINE)
def test_ragged_mask(name, inputs_for):
    """Padded slots change nothing, whatever they hold; a pair with a missing side raises."""
    inputs = inputs_for(name)
    if METHODS[name].view == "pair":
        with pytest.raises(MethodDataError, match="exactly 2 responses"):
            compute(name, **padded(name, inputs, 0.0))
        two = dict(inputs, mask=torch.tensor([[True, False]]))
        with pytest.raises(MethodDataError, match="exactly 2 responses"):
            compute(name, **two)
        return
    expected, expected_metrics = compute(name, **inputs)
    for garbage in (float("nan"), float("inf"), -1e30):
        batch = padded(name, inputs, garbage)
        key = gradient_source(name, batch)
        loss, metrics = compute(name, **batch)
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12), garbage
        assert metrics == pytest.approx(expected_metrics, rel=1e-12)
        grad = batch[key].grad
        assert torch.isfinite(grad).all(), garbage
        assert (grad[:, -1] == 0).all()


@pytest.mark.parametrize("name", OFFLINE)
def test_float32_agrees_with_float64(name, inputs_for):
    """Inputs off round numbers (a different small offset per entry), in both precisions."""
    results = {}
    for dtype in (torch.float32, torch.float64):
        inputs = inputs_for(name, dtype)
        for key in ("policy_logps", "ref_logps", "token_logps"):
            if key in inputs:
                offsets = torch.arange(inputs[key].numel(), dtype=torch.float64).reshape(
                    inputs[key].shape
                )
                inputs[key] = inputs[key] - (0.0123 * (offsets + 1)).to(dtype)
        loss, metrics = compute(name, **inputs)
        assert loss.dtype == dtype
        results[dtype] = (loss.item(), metrics)
    (loss32, metrics32), (loss64, metrics64) = results[torch.float32], results[torch.float64]
    assert loss32 == pytest.approx(loss64, rel=1e-5, abs=1e-6)
    assert metrics32 == pytest.approx(metrics64, rel=1e-4, abs=1e-6)
