"""The critic for offline PPO: a linear value head on the policy's last hidden state.

Token t's value V(s_t) is read from the hidden state that predicts response token t (the state
before it is emitted), the same position the log-prob engine scores it from. The hidden states
are captured from the policy's own forward pass (a hook on its decoder), so the critic costs
one small matrix product, not a second forward.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from preftune.data.batch import PreferenceBatch
from preftune.models.engine import SequenceLogps, sequence_logps
from preftune.models.layouts import build_layout

VALUE_LAYOUT = "padded"  # a layout whose scoring coordinates build_layout reproduces


class ValueHead(torch.nn.Module):
    """hidden [..., H] -> value [...]; zero-initialised, so every value starts at 0."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


@contextmanager
def _captured_decoder_output(model: torch.nn.Module):
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output.last_hidden_state)

    handle = model.get_decoder().register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def logps_with_values(
    model: torch.nn.Module, head: ValueHead, batch: PreferenceBatch, *, pad_token_id: int
) -> tuple[SequenceLogps, torch.Tensor]:
    """Per-token policy log-probs and the critic's values [G, R, L] from one forward pass."""
    with _captured_decoder_output(model) as captured:
        out = sequence_logps(
            model, batch, per_token=True, pad_token_id=pad_token_id, layout=VALUE_LAYOUT
        )
    (hidden,) = captured
    layout = build_layout(batch, VALUE_LAYOUT, pad_token_id=pad_token_id, device=hidden.device)
    scored = head(hidden[layout.score_rows, layout.score_cols])
    values = torch.zeros(out.token_logps.shape, device=hidden.device, dtype=scored.dtype)
    flat = values.view(-1, values.shape[-1]).index_put((layout.slots, layout.offsets), scored)
    return out, flat.view(values.shape)
