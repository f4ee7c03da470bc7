"""The chunked head's in-place log-sum-exp is `torch.logsumexp` bit for bit (golden trajectories
depend on it), edge rows included."""

import torch

from preftune.models.chunked import _logsumexp_


def test_in_place_logsumexp_has_torch_logsumexp_bits():
    torch.manual_seed(0)
    logits = torch.randn(33, 1000) * 7
    logits[1] = -torch.inf  # every token impossible: -inf, as torch gives
    logits[2, 5] = torch.inf
    logits[3] = torch.linspace(-80.0, 80.0, 1000)
    expected = torch.logsumexp(logits, dim=-1)
    got = _logsumexp_(logits.clone())
    assert torch.equal(got, expected)
    assert got[1].item() == -torch.inf and got[2].item() == torch.inf


def test_in_place_logsumexp_by_hand():
    # log(e^0 + e^log 3) = log 4
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)).item()]])
    assert abs(_logsumexp_(logits).item() - torch.log(torch.tensor(4.0)).item()) < 1e-6
