"""The shared layout's attention skips masked-out scores and computes what the full mask gives."""

import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.models.layouts import build_layout
from preftune.models.prefix_attention import _attention, prefix_sharing_attention


def _shared_inputs():
    groups = [
        TokenizedGroup("a", [5, 6, 7, 8], [[9, 10, 11], [12]], [1.0, 0.0], [None] * 2),
        TokenizedGroup("b", [5, 6], [[13, 14], [15, 16]], [1.0, 0.0], [None] * 2),
    ]
    return build_layout(collate(groups), "shared")


def test_prefix_rows_describe_each_rows_prompt_and_real_width():
    assert _shared_inputs().prefix_rows == [(4, 8), (2, 6)]


def test_attention_equals_sdpa_under_the_full_mask_and_zeros_padding():
    torch.manual_seed(0)
    inputs = _shared_inputs()
    batch, width, heads, kv_heads, dim = 2, inputs.input_ids.shape[1], 4, 2, 8
    query = torch.randn(batch, width, heads, dim).transpose(1, 2).requires_grad_()
    key = torch.randn(batch, kv_heads, width, dim, requires_grad=True)
    value = torch.randn(batch, kv_heads, width, dim, requires_grad=True)
    module = torch.nn.Module()
    mask = inputs.attention_mask

    out, _ = _attention(module, query, key, value, mask, prefix_rows=inputs.prefix_rows)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, enable_gqa=True
    ).transpose(1, 2)

    real = torch.zeros(batch, width, dtype=torch.bool)
    for row, (_, row_width) in enumerate(inputs.prefix_rows):
        real[row, :row_width] = True
    torch.testing.assert_close(out[real], expected[real], atol=1e-6, rtol=1e-5)
    assert torch.equal(out[~real], torch.zeros_like(out[~real]))  # row b's last 2 are padding
    weights = torch.randn(out.shape) * real[:, :, None, None]
    grads = torch.autograd.grad((out * weights).sum(), (query, key, value))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (query, key, value))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_switch_is_scoped_and_only_for_sdpa(tiny_model):
    rows = [(2, 3)]
    with prefix_sharing_attention(tiny_model, rows) as kwargs:
        assert kwargs == {"prefix_rows": rows}
        assert tiny_model.config._attn_implementation != "sdpa"
    assert tiny_model.config._attn_implementation == "sdpa"
    with prefix_sharing_attention(tiny_model, None) as kwargs:
        assert kwargs == {}
    tiny_model.config._attn_implementation = "eager"
    with prefix_sharing_attention(tiny_model, rows) as kwargs:
        assert kwargs == {} and tiny_model.config._attn_implementation == "eager"
