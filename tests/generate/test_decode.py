"""Our decode loop (preftune.generate.decode) against transformers' `generate` and against
hand computations: greedy tokens, raw log-probs, shared prompt prefill and early exit (the
choice of each token: test_draw.py)."""

import pytest
import torch

from preftune.generate.decode import _RoomyLayer, left_pad, sample_batch
from preftune.testing import build_tiny_model

VOCAB = 64
PAD = 3
# Several lengths (left padding), a shared start (like a chat template's system message) and
# one prompt that shares nothing with the others.
PROMPTS = [
    [7, 8, 9, 10, 11, 12, 13],
    [7, 8, 9, 10, 20],
    [7, 8, 9, 10, 30, 31, 32, 33, 34, 35],
    [40, 41],
]
# Tokens the lively model's greedy answers to PROMPTS meet after 5, 2 and 6 steps (rows 0-2);
# row 3 meets neither and runs to max_new_tokens.
ENDS = [18, 46]
GREEDY = {"max_new_tokens": 12, "temperature": 0.0, "top_k": 0, "top_p": 1.0}


@pytest.fixture()
def lively_model():
    """The tiny random model with an untied, larger output layer, so its answers vary from
    token to token instead of repeating the prompt's last token."""
    model = build_tiny_model(VOCAB, seed=1)
    torch.manual_seed(1)
    head = torch.nn.Linear(model.config.hidden_size, VOCAB, bias=False)
    torch.nn.init.normal_(head.weight, std=1.0)
    model.lm_head = head
    return model.eval()


def hf_greedy(model, prompts, eos_ids, max_new_tokens):
    """transformers' own batched greedy answers, cut after the first end token."""
    ids, mask = left_pad(prompts, PAD)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_ids,
            pad_token_id=PAD,
        )
    answers = []
    for row in out[:, ids.shape[1] :].tolist():
        ends = [t for t, token in enumerate(row) if token in eos_ids]
        answers.append(row[: ends[0] + 1] if ends else row)
    return answers


def forward_logps(model, prompt, answer) -> torch.Tensor:
    """Raw log-softmax of each answer token, from one unpadded forward pass on prompt+answer."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return torch.stack([log_probs[len(prompt) + t - 1, tok] for t, tok in enumerate(answer)])


@pytest.mark.parametrize("prompts", [PROMPTS, PROMPTS[:3], PROMPTS[1:2]])
def test_greedy_matches_transformers_generate_with_rows_ending_early(lively_model, prompts):
    ours = sample_batch(lively_model, prompts, ENDS, PAD, GREEDY)
    expected = hf_greedy(lively_model, prompts, ENDS, GREEDY["max_new_tokens"])
    assert [r["token_ids"] for r in ours] == expected
    for row in ours:
        ended = row["token_ids"][-1] in ENDS
        assert row["finish_reason"] == ("eos" if ended else "length")


def test_logp_is_the_raw_log_softmax_of_a_separate_forward_pass(lively_model):
    torch.manual_seed(0)
    config = {"max_new_tokens": 8, "temperature": 0.7, "top_k": 10, "top_p": 0.9}
    rows = sample_batch(lively_model, PROMPTS, [0], PAD, config)
    for prompt, row in zip(PROMPTS, rows, strict=True):
        expected = forward_logps(lively_model, prompt, row["token_ids"]).sum()
        assert row["logp"] == pytest.approx(float(expected), abs=1e-4)


def test_sampled_tokens_stay_in_the_top_k_of_the_raw_logits(lively_model):
    torch.manual_seed(0)
    config = {"max_new_tokens": 10, "temperature": 1.5, "top_k": 2, "top_p": 1.0}
    rows = sample_batch(lively_model, PROMPTS, [], PAD, config)
    for prompt, row in zip(PROMPTS, rows, strict=True):
        context = list(prompt)
        for token in row["token_ids"]:
            with torch.no_grad():
                logits = lively_model(input_ids=torch.tensor([context])).logits[0, -1]
            assert token in logits.topk(2).indices.tolist()
            context.append(token)


def test_sampling_is_reproducible_for_a_seed(lively_model):
    config = {"max_new_tokens": 10, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append([r["token_ids"] for r in sample_batch(lively_model, PROMPTS, [], PAD, config)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_prompts_samples_share_one_prefill(lively_model):
    """Three prompts x 4 rows: their common start is encoded once, each prompt's rest once
    (left-padded to the longest rest), then every step feeds one token per live row."""
    calls = []

    def record(module, args, kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))

    lively_model.register_forward_pre_hook(record, with_kwargs=True)
    prompts = [p for p in PROMPTS[:3] for _ in range(4)]
    rows = sample_batch(lively_model, prompts, [], PAD, GREEDY)
    assert calls[:2] == [(1, 4), (3, 6)]  # [7, 8, 9, 10]; rests of 3, 1 and 6 tokens
    assert calls[2:] == [(12, 1)] * (GREEDY["max_new_tokens"] - 1)
    alone = sample_batch(lively_model, PROMPTS[:3], [], PAD, GREEDY)
    assert [r["token_ids"] for r in rows] == [r["token_ids"] for r in alone for _ in range(4)]


def test_finished_rows_leave_the_batch(lively_model):
    calls = []
    lively_model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    rows = sample_batch(lively_model, PROMPTS, ENDS, PAD, GREEDY)
    lengths = [len(r["token_ids"]) for r in rows]
    assert lengths == [5, 2, 6, GREEDY["max_new_tokens"]]
    # One prefill (the prompts share no start), then step t (1-based) feeds the rows whose
    # answers have more than t tokens.
    live = [sum(length > t for length in lengths) for t in range(1, max(lengths))]
    assert calls == [4, *live]
    assert live == [4, 3, 3, 3, 2, 1, 1, 1, 1, 1, 1]


def test_dropped_rows_leave_the_cache_with_its_room_kept():
    layer = _RoomyLayer(room=4)
    keys, values = torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8)
    layer.update(keys, values)
    layer.batch_select_indices(torch.tensor([0, 2]))
    buffers = [buffer.data_ptr() for buffer in layer.buffers]
    new_keys, new_values = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    cached_keys, cached_values = layer.update(new_keys, new_values)
    assert torch.equal(cached_keys, torch.cat([keys[[0, 2]], new_keys], dim=2))
    assert torch.equal(cached_values, torch.cat([values[[0, 2]], new_values], dim=2))
    assert [buffer.data_ptr() for buffer in layer.buffers] == buffers  # written in place
