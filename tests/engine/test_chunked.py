"""The chunked LM-head log-prob equals log_softmax over full logits, in value and gradient."""

import pytest
import torch

from preftune.models.chunked import token_logps, token_logps_and_collision


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


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_collision_is_the_log_of_the_summed_squared_probabilities(chunk_size):
    """WPO's alignment statistic: log sum_v p(v)^2 per row, from the chunks' own logits."""
    torch.manual_seed(1)
    head = torch.nn.Linear(8, 37).double()
    hidden = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 37, (10,))

    logps, collision = token_logps_and_collision(hidden, head, targets, chunk_size=chunk_size)
    probs = torch.softmax(head(hidden), -1)
    torch.testing.assert_close(collision.double(), probs.pow(2).sum(-1).log(), atol=1e-6, rtol=0)
    torch.testing.assert_close(logps, token_logps(hidden, head, targets, chunk_size=chunk_size))
    assert not collision.requires_grad


def test_collision_by_hand_for_a_two_token_vocabulary():
    head = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0], [1.0]]))
    # logits (0, log 3): p = (1/4, 3/4), sum p^2 = 1/16 + 9/16 = 10/16
    hidden = torch.tensor([[torch.log(torch.tensor(3.0)).item()]])
    logps, collision = token_logps_and_collision(hidden, head, torch.tensor([1]))
    assert logps.item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)
    assert collision.item() == pytest.approx(torch.log(torch.tensor(10 / 16)).item(), abs=1e-6)
