"""WPO's aligned weight gets its per-token statistic from the policy pass of pairwise methods."""

import json
import math

import pytest
import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.losses import METHODS, compute
from preftune.models.engine import sequence_logps
from preftune.models.policy import PolicyForward
from preftune.train import train
from preftune.train.inputs import LossInputs
from preftune.train.providers import provider_classes
from preftune.train.providers.token_statistics import LogCollision


def test_loss_inputs_pass_the_policy_collision_statistic(tiny_model):
    groups = [
        TokenizedGroup("a", [5, 9], [[21, 7, 2], [30, 2]], [None, None], [None, None]),
        TokenizedGroup("b", [11], [[4, 2], [8, 16, 23, 2]], [None, None], [None, None]),
    ]
    batch = collate(groups)
    inputs = LossInputs(METHODS["simpo"], groups, [LogCollision(run=None)])
    kwargs = inputs(PolicyForward(tiny_model), batch, [0, 1])
    expected = sequence_logps(tiny_model, batch, collision=True, layout="plain")
    torch.testing.assert_close(kwargs["log_collision"], expected.log_collision, atol=1e-5, rtol=0)
    loss, metrics = compute("simpo", **kwargs, beta=2.0, weighting="wpo")
    lengths = expected.lengths.double()
    log_w = ((expected.logps.double() - expected.log_collision.double()) / lengths).sum(dim=1)
    assert metrics["wpo/weight"] == pytest.approx(log_w.exp().mean().item(), rel=1e-4)
    _, unweighted = compute("simpo", **kwargs, beta=2.0)  # the statistic is unused without WPO
    assert "wpo/weight" not in unweighted
    assert LogCollision in provider_classes(METHODS["simpo"])
    assert LogCollision not in provider_classes(METHODS["kto"])  # only pairwise methods take WPO


def test_dpo_trains_with_the_aligned_and_the_unaligned_wpo_weight(make_config, paired_file):
    for aligned in (True, False):
        hparams = {"weighting": "wpo", "wpo_alignment": aligned}
        config = make_config("dpo", paired_file, max_steps=1, hparams=hparams)
        config = config.model_copy(update={"run_name": f"wpo-{aligned}"})
        line = json.loads((train(config) / "metrics.jsonl").read_text().splitlines()[-1])
        assert math.isfinite(line["loss"]) and line["wpo/weight"] > 0
