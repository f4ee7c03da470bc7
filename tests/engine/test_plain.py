import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.models.engine import sequence_logps


def _reference_logp(model, prompt, response):
    """Score one sequence token by token: the definition the engine must match."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(log_probs[len(prompt) + i - 1, tok]) for i, tok in enumerate(response))


def test_plain_engine_matches_per_sequence_scoring(tiny_model):
    groups = [
        TokenizedGroup("a", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [None, None]),
        TokenizedGroup("b", [11, 12], [[13, 14, 15, 2]], [None], [True]),
    ]
    batch = collate(groups)
    with torch.no_grad():
        out = sequence_logps(tiny_model, batch, per_token=True, layout="plain")
    assert out.logps.shape == (2, 2)
    assert out.lengths.tolist() == [[3, 2], [4, 0]]
    for g, group in enumerate(groups):
        for r, response in enumerate(group.response_ids):
            expected = _reference_logp(tiny_model, group.prompt_ids, response)
            assert abs(float(out.logps[g, r]) - expected) < 1e-4
            per_token = out.token_logps[g, r][out.token_mask[g, r]]
            assert abs(float(per_token.sum()) - expected) < 1e-4
    assert float(out.logps[1, 1]) == 0.0
