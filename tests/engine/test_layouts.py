"""Every fast layout returns the plain path's log-probs, per-token values and gradients."""

import pytest
import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import ConfigError, DataError
from preftune.models.engine import sequence_logps
from preftune.models.layouts import LAYOUTS, build_layout


def _ragged_groups(num_responses: int, seed: int = 0) -> list[TokenizedGroup]:
    """Three groups with ragged prompts and responses; the last has one response fewer."""
    rng = torch.Generator().manual_seed(seed)

    def tokens(n):
        return torch.randint(4, 290, (n,), generator=rng).tolist()

    groups = []
    for g, prompt_length in enumerate([3, 7, 1]):
        count = num_responses - 1 if g == 2 else num_responses
        responses = [tokens(int(n)) + [2] for n in torch.randint(0, 6, (count,), generator=rng)]
        groups.append(
            TokenizedGroup(
                f"g{g}",
                tokens(prompt_length),
                responses,
                [float(-r) for r in range(count)],
                [None] * count,
            )
        )
    return groups


def _weighted_objective(out, seed=1):
    """A scalar touching every summed and per-token value with distinct weights."""
    rng = torch.Generator().manual_seed(seed)
    w_seq = torch.randn(out.logps.shape, generator=rng)
    w_tok = torch.randn(out.token_logps.shape, generator=rng)
    return (out.logps * w_seq).sum() + (out.token_logps * w_tok).sum()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("num_responses", [2, 4])
def test_layout_matches_plain_values_and_gradients(tiny_model, layout, num_responses):
    batch = collate(_ragged_groups(num_responses))
    expected = sequence_logps(tiny_model, batch, per_token=True, layout="plain")
    _weighted_objective(expected).backward()
    expected_grads = {name: p.grad.clone() for name, p in tiny_model.named_parameters()}
    tiny_model.zero_grad()

    out = sequence_logps(tiny_model, batch, per_token=True, layout=layout, chunk_size=5)
    _weighted_objective(out).backward()

    torch.testing.assert_close(out.logps, expected.logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.token_logps, expected.token_logps, atol=1e-5, rtol=0)
    assert torch.equal(out.lengths, expected.lengths)
    assert torch.equal(out.token_mask, expected.token_mask)
    assert out.logps[2, num_responses - 1] == 0 and out.lengths[2, num_responses - 1] == 0
    for name, param in tiny_model.named_parameters():
        torch.testing.assert_close(param.grad, expected_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_matches_plain_collision_statistic(tiny_model, layout):
    """WPO's per-response sum of log sum_v p(v)^2 is the same on every path."""
    batch = collate(_ragged_groups(3))
    expected = sequence_logps(tiny_model, batch, collision=True, layout="plain")
    out = sequence_logps(tiny_model, batch, collision=True, layout=layout, chunk_size=5)
    torch.testing.assert_close(out.log_collision, expected.log_collision, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logps, expected.logps, atol=1e-5, rtol=0)
    assert out.log_collision[2, 2] == 0  # the missing response
    assert sequence_logps(tiny_model, batch, layout=layout).log_collision is None


def test_plain_collision_statistic_by_hand(tiny_model):
    """One response scored position by position from the model's full logits."""
    prompt, response = [5, 9, 14], [21, 7, 2]
    batch = collate([TokenizedGroup("g", prompt, [response], [None], [None])])
    out = sequence_logps(tiny_model, batch, collision=True, layout="plain")
    with torch.no_grad():
        logits = tiny_model(input_ids=torch.tensor([prompt + response])).logits[0].double()
    expected = sum(
        torch.softmax(logits[len(prompt) - 1 + j], -1).pow(2).sum().log().item()
        for j in range(len(response))
    )
    assert out.log_collision[0, 0].item() == pytest.approx(expected, abs=1e-5)


def test_auto_layout_shares_prefix_under_sdpa(tiny_model, monkeypatch):
    seen = []
    monkeypatch.setattr(
        "preftune.models.engine.build_layout",
        lambda *a, **k: seen.append(a[1]) or build_layout(*a, **k),
    )
    sequence_logps(tiny_model, collate(_ragged_groups(2)))
    assert seen == ["shared"]


def test_shared_layout_computes_each_prompt_once():
    batch = collate(_ragged_groups(4))
    shared = build_layout(batch, "shared")
    padded = build_layout(batch, "padded")
    prompt_tokens = sum(len(p) for p in batch.prompt_ids)
    response_tokens = sum(len(r) for rs in batch.response_ids for r in rs)
    assert int((shared.input_ids != 0).sum()) == prompt_tokens + response_tokens
    assert shared.input_ids.shape[0] == batch.num_groups
    assert padded.input_ids.shape[0] == int(batch.mask.sum())
    # A response never sees a sibling response: the mask between two responses of group 0 is empty.
    mask = shared.attention_mask[0, 0]
    first = len(batch.prompt_ids[0])
    second = first + len(batch.response_ids[0][0])
    assert not mask[second:, first:second].any()
    assert mask[second:, :first].any()


def test_packed_layout_has_no_padding():
    batch = collate(_ragged_groups(2))
    packed = build_layout(batch, "packed")
    assert packed.input_ids.shape == (1, batch.num_tokens())
    assert packed.attention_mask is None


def test_empty_prompt_is_a_data_error(tiny_model):
    batch = collate([TokenizedGroup("x", [], [[5, 2], [6, 2]], [1.0, 0.0], [None, None])])
    with pytest.raises(DataError, match="empty prompt"):
        sequence_logps(tiny_model, batch, layout="shared")


def test_unknown_layout_and_logit_transforms_are_config_errors(tiny_model):
    batch = collate(_ragged_groups(2))
    with pytest.raises(ConfigError, match="not one of"):
        sequence_logps(tiny_model, batch, layout="diagonal")
    tiny_model.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match="plain"):
        sequence_logps(tiny_model, batch, layout="shared")
    assert sequence_logps(tiny_model, batch, layout="plain").logps.shape == (3, 2)


def test_shared_layout_reads_through_a_lora_wrapper(tiny_model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        tiny_model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    batch = collate(_ragged_groups(2))
    expected = sequence_logps(model, batch, layout="plain")
    torch.testing.assert_close(
        sequence_logps(model, batch, layout="shared").logps, expected.logps, atol=1e-5, rtol=0
    )
    with model.disable_adapter():
        base = sequence_logps(model, batch, layout="shared").logps
    assert not torch.allclose(base, expected.logps, atol=1e-3)
