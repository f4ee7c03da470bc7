"""Standard small inputs for any registered method, in its own data view.

Pairs: chosen rho = +0.5, rejected rho = -1 (both 4 tokens, scores 2 > 1). Binary: one
desirable (rho = +0.5) and one undesirable (rho = -1) response. Lists: three responses
scored 10 > 5 > 0 with rho = +0.5, 0, -1. Offline PPO gets token tensors [G, R, 4].
"""

from __future__ import annotations

import pytest
import torch

from preftune.losses import METHODS

TOKENS = 4


def standard_inputs(name: str, dtype=torch.float64) -> dict:
    spec = METHODS[name]

    def t(rows, kind=dtype):
        return torch.tensor(rows, dtype=kind)

    if spec.view == "binary":
        inputs = {
            "policy_logps": t([[-4.5], [-6.0]]),
            "ref_logps": t([[-5.0], [-5.0]]),
            "lengths": t([[TOKENS], [TOKENS]]),
            "labels": torch.tensor([[True], [False]]),
        }
    elif spec.view == "list":
        inputs = {
            "policy_logps": t([[-4.5, -5.0, -6.0]]),
            "ref_logps": t([[-5.0, -5.0, -5.0]]),
            "lengths": t([[TOKENS] * 3]),
            "scores": t([[10.0, 5.0, 0.0]]),
        }
    else:
        inputs = {
            "policy_logps": t([[-4.5, -6.0]]),
            "ref_logps": t([[-5.0, -5.0]]),
            "lengths": t([[TOKENS, TOKENS]]),
            "scores": t([[2.0, 1.0]]),
        }
    groups, responses = inputs["policy_logps"].shape
    if "prompt_embeddings" in spec.extra_inputs:
        inputs["prompt_embeddings"] = t([[1.0, 0.0, 0.5], [0.2, 1.0, 0.0]][:groups])
    if "kl_policy_logps" in spec.extra_inputs:
        inputs["kl_policy_logps"] = t([-5.0, -5.2])
        inputs["kl_ref_logps"] = t([-5.0, -5.0])
    if "token_logps" in spec.extra_inputs:
        token_ref = inputs["ref_logps"][..., None].expand(groups, responses, TOKENS) / TOKENS
        inputs["token_ref_logps"] = token_ref.clone()
        inputs["token_logps"] = token_ref.clone()
        inputs["token_mask"] = torch.ones(groups, responses, TOKENS, dtype=torch.bool)
        inputs["values"] = torch.zeros(groups, responses, TOKENS, dtype=dtype)
    return inputs


@pytest.fixture()
def inputs_for():
    return standard_inputs
