"""AdamW runs torch's fused kernel where it can, with AdamW's update (checked by hand)."""

import pytest
import torch

from preftune.train.optim import build_optimizer


def test_adamw_is_fused_on_cpu_and_takes_adamws_first_step(make_config, paired_file):
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    config = make_config("dpo", paired_file, optimizer="adamw", lr=0.1, weight_decay=0.5)
    optimizer = build_optimizer([weight], config)
    assert optimizer.param_groups[0]["fused"] is True
    weight.grad = torch.tensor([0.5, -0.25, 0.0])
    optimizer.step()
    # step 1: bias-corrected moments are g and g^2, so the step is lr * g / (|g| + eps),
    # after the decoupled decay w * (1 - lr * weight_decay) = 0.95 w
    expected = [0.95 * 1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 0.95 * -2.0 + 0.1, 0.95 * 3.0]
    assert weight.detach().tolist() == pytest.approx(expected, rel=1e-6)


def test_optimizers_without_a_fused_kernel_are_built_plainly(make_config, paired_file):
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = build_optimizer([weight], make_config("dpo", paired_file, optimizer="rmsprop"))
    assert not optimizer.param_groups[0].get("fused")
