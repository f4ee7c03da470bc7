"""The chunked LM-head log-prob equals log_softmax over full logits, in value and gradient."""

import pytest
import torch

from preftune.models.chunked import token_logps


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_chunked_logps_match_full_log_softmax(bias, chunk_size):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 37, bias=bias).double()
    hidden = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 37, (10,))
    weights = torch.randn(10, dtype=torch.float64)

    expected = torch.log_softmax(head(hidden), -1).gather(-1, targets[:, None]).squeeze(-1)
    grads_expected = torch.autograd.grad((expected * weights).sum(), [hidden, *head.parameters()])
    out = token_logps(hidden, head, targets, chunk_size=chunk_size)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, *head.parameters()])

    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)
    for got, want in zip(grads, grads_expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
