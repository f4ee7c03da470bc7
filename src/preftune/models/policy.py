"""The policy pass: the trained model (and any heads trained with it) behind one module.

`PolicyForward` is what `accelerator.prepare` wraps, so that every policy pass is a forward of
the DDP / FSDP / DeepSpeed wrapper; `token_heads_pass` reads per-token heads (offline PPO's
critic) from the hidden states of the same forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch

from preftune.data.batch import PreferenceBatch
from preftune.models.engine import SequenceLogps, sequence_logps
from preftune.models.layouts import build_layout

HEADS_LAYOUT = "padded"  # a layout whose scoring coordinates build_layout reproduces


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


def token_heads_pass(
    model: torch.nn.Module,
    heads: Mapping[str, torch.nn.Module],
    batch: PreferenceBatch,
    *,
    pad_token_id: int,
    trunk=None,
) -> tuple[SequenceLogps, dict[str, torch.Tensor]]:
    """Per-token log-probs and, for each head (hidden [..., H] -> [...]), its value at every
    response token, [G, R, L], read from the hidden state that predicts the token (the state
    before it is emitted), all from one forward pass."""
    with _captured_decoder_output(model) as captured:
        out = sequence_logps(
            model,
            batch,
            per_token=True,
            pad_token_id=pad_token_id,
            layout=HEADS_LAYOUT,
            trunk=trunk,
        )
    hidden = captured[-1]  # the last decoder call (a trunk cache may first fill missing states)
    layout = build_layout(batch, HEADS_LAYOUT, pad_token_id=pad_token_id, device=hidden.device)
    states = hidden[layout.score_rows, layout.score_cols]
    outputs = {}
    for name, head in heads.items():
        scored = head(states)
        values = torch.zeros(out.token_logps.shape, device=hidden.device, dtype=scored.dtype)
        flat = values.view(-1, values.shape[-1]).index_put((layout.slots, layout.offsets), scored)
        outputs[name] = flat.view(values.shape)
    return out, outputs


class PolicyForward(torch.nn.Module):
    """The policy and its per-token heads behind one `forward(batch)`.

    The log-prob engine reads hidden states from `model.get_decoder()` rather than calling the
    model, which would bypass a DDP / FSDP / DeepSpeed wrapper's forward (and so its gradient
    synchronisation and parameter gathering). Wrapping the engine call in a module that
    `accelerator.prepare` wraps makes every policy pass a forward of the wrapper.
    Returns the log-probs and each head's values [G, R, L] (an empty dict without heads).
    `trunk` (a `preftune.models.trunk.TrunkStates`): run only the layers above the cached
    frozen ones.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        heads: Mapping[str, torch.nn.Module] | None = None,
        layout: str = "auto",
        trunk=None,
    ):
        super().__init__()
        self.model = model
        self.heads = torch.nn.ModuleDict(heads or {})
        self.layout = layout
        self.trunk = trunk
        # read by accelerate: FSDP's transformer auto-wrap policy, DeepSpeed's "auto" sizes
        self.config = model.config
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def forward(
        self,
        batch: PreferenceBatch,
        *,
        per_token: bool = False,
        collision: bool = False,
        pad_token_id: int = 0,
    ) -> tuple[SequenceLogps, dict[str, torch.Tensor]]:
        if len(self.heads):
            return token_heads_pass(
                self.model, self.heads, batch, pad_token_id=pad_token_id, trunk=self.trunk
            )
        logps = sequence_logps(
            self.model,
            batch,
            per_token=per_token,
            collision=collision,
            pad_token_id=pad_token_id,
            layout=self.layout,
            trunk=self.trunk,
        )
        return logps, {}
