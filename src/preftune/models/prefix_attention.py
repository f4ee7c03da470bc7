"""Attention for the `shared` layout that skips what its mask rules out.

In a `shared` row (the prompt once, then each response; `preftune.models.layouts`) a prompt
token attends causally within the prompt, and a response token to the prompt and to its own
response so far. SDPA given that row's full [T, T] mask computes every score and masks most of
them (at ~256 prompt / 2 x 64 response tokens about two thirds). Here each row is two SDPA
calls: the prompt's queries causally over the prompt (`is_causal`, whose kernel skips the key
blocks past each query block), and the responses' queries over the row with their slice of
the mask. The
key/value heads are shared without copying (`enable_gqa`), and padding positions get zeros
(no real token attends to them or is scored from them). The numbers are the same attention
with a different summation order (~1e-7 relative).

It is registered with transformers as `ATTENTION`; the engine switches an SDPA model to it
only for a `shared` forward pass (`prefix_sharing_attention`), and only on CPU does it differ
from SDPA. For SmolLM2-135M at ~256 / 2 x 64 tokens it cut SDPA's share of a DPO step's
forward and backward by about a third.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION = "preftune_prefix_sharing"

# (prompt length, row width without padding) per row of a `shared` layout
RowSpans = list[tuple[int, int]]


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    prefix_rows: RowSpans | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [B, H, T, D], key/value [B, KV, T, D];
    returns [B, T, H, D]. Without `prefix_rows`, with dropout, or off CPU it is plain SDPA (a
    GPU runs a masked GQA call in its slow math kernel, and many small calls poorly)."""
    if prefix_rows is None or dropout or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for b, (prompt, width) in enumerate(prefix_rows):
        q, k, v = query[b : b + 1], key[b : b + 1], value[b : b + 1]
        pieces = [
            sdpa(
                q[:, :, :prompt],
                k[:, :, :prompt],
                v[:, :, :prompt],
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
        ]
        if width > prompt:
            mask = attention_mask[b : b + 1, :, prompt:width, :width]
            pieces.append(
                sdpa(
                    q[:, :, prompt:width],
                    k[:, :, :width],
                    v[:, :, :width],
                    attn_mask=mask,
                    scale=scaling,
                    enable_gqa=gqa,
                )
            )
        padding = query.shape[2] - width
        if padding:
            pieces.append(query.new_zeros(1, query.shape[1], padding, value.shape[-1]))
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, _attention)


_switched: list = []  # the configs switched to `ATTENTION` by the blocks open now


@contextmanager
def _switch(configs: list):
    before = [config._attn_implementation for config in configs]
    for config in configs:
        config._attn_implementation = ATTENTION
    _switched.extend(configs)
    try:
        yield
    finally:
        del _switched[len(_switched) - len(configs) :]
        for config, implementation in zip(configs, before, strict=True):
            config._attn_implementation = implementation


def recompute_with_the_same_attention():
    """`torch.utils.checkpoint`'s `context_fn`: a checkpointed layer's recomputation (in the
    backward pass, after `prefix_sharing_attention`'s block has closed) attends as its forward
    did, so it repeats the same operations."""
    return nullcontext(), _switch(list(_switched))


@contextmanager
def prefix_sharing_attention(model: torch.nn.Module, prefix_rows: RowSpans | None):
    """Within the block, an SDPA `model` attends with `_attention`; yields the keyword
    arguments its decoder call needs ({} where nothing changes: no `prefix_rows`, or another
    attention implementation). Activation checkpointing must recompute through
    `recompute_with_the_same_attention`."""
    if prefix_rows is None or getattr(model.config, "_attn_implementation", None) != "sdpa":
        yield {}
        return
    with _switch([model.config]):
        yield {"prefix_rows": prefix_rows}
