"""The critic for offline PPO: a linear value head on the policy's last hidden state.

Token t's value V(s_t) is read from the hidden state that predicts response token t (the state
before it is emitted), the same position the log-prob engine scores it from. The hidden states
are captured from the policy's own forward pass (`preftune.models.policy.token_heads_pass`), so
the critic costs one small matrix product, not a second forward.
"""

from __future__ import annotations

import torch


class ValueHead(torch.nn.Module):
    """hidden [..., H] -> value [...]; zero-initialised, so every value starts at 0."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)
