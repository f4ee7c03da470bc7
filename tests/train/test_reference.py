"""Reference log-probs: precomputed values equal the engine's, are cached, and are shared."""

import pytest
import torch

import preftune.models.reference as reference
from preftune.data.batch import TokenizedGroup, collate
from preftune.models.engine import sequence_logps
from preftune.models.lora import adapters_disabled, add_lora
from preftune.models.reference import LiveReference, precompute_reference

PAIRS = [
    TokenizedGroup("a", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [None, None]),
    TokenizedGroup("b", [11, 12], [[13, 14, 15, 2], [16, 2]], [1.0, 0.0], [None, None]),
]
SINGLES = [  # the binary view of the same pairs: the same sequences
    TokenizedGroup(f"{g.id}{r}", g.prompt_ids, [response], [None], [r == 0])
    for g in PAIRS
    for r, response in enumerate(g.response_ids)
]


@pytest.fixture()
def engine_calls(monkeypatch):
    calls = []

    def counting(model, batch, **kwargs):
        calls.append(batch.ids)
        return sequence_logps(model, batch, **kwargs)

    monkeypatch.setattr(reference, "sequence_logps", counting)
    return calls


def test_precomputed_reference_equals_the_engine(tiny_model):
    cached = precompute_reference(tiny_model, PAIRS, "tiny", groups_per_forward=1, pad_token_id=0)
    batch = collate(PAIRS)
    with torch.no_grad():
        expected = sequence_logps(tiny_model, batch, per_token=True)
    got = cached(batch, per_token=True)
    assert torch.allclose(got.logps, expected.logps, atol=1e-5)
    assert torch.equal(got.lengths, expected.lengths)
    assert torch.allclose(got.token_logps, expected.token_logps, atol=1e-6)
    assert torch.equal(got.token_mask, expected.token_mask)


def test_cache_is_reused_across_views_and_runs(tiny_model, engine_calls):
    precompute_reference(tiny_model, PAIRS, "tiny", groups_per_forward=2, pad_token_id=0)
    assert engine_calls == [["a", "b"]]
    again = precompute_reference(tiny_model, SINGLES, "tiny", groups_per_forward=2, pad_token_id=0)
    assert engine_calls == [["a", "b"]], "the binary view's sequences were already cached"
    assert again(collate(SINGLES)).logps.shape == (4, 1)
    precompute_reference(tiny_model, SINGLES, "another-model", groups_per_forward=4, pad_token_id=0)
    assert len(engine_calls) == 2, "a different reference model has its own entries"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a dict of tensors"])
def test_a_damaged_cache_shard_is_computed_again_with_a_warning(
    tiny_model, engine_calls, private_cache, damage
):
    first = precompute_reference(tiny_model, PAIRS, "tiny", groups_per_forward=2, pad_token_id=0)
    (shard,) = (private_cache / "reference" / "tiny").glob("*.pt")
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "garbage":
        shard.write_bytes(b"\x00garbage" * 10)
    else:
        torch.save([1, 2, 3], shard)
    with pytest.warns(UserWarning, match=rf"cache shard skipped.*{shard.name}"):
        again = precompute_reference(
            tiny_model, PAIRS, "tiny", groups_per_forward=2, pad_token_id=0
        )
    assert engine_calls == [["a", "b"], ["a", "b"]], "the damaged entries were computed again"
    batch = collate(PAIRS)
    assert torch.equal(again(batch).logps, first(batch).logps)


def test_lora_reference_is_the_base_model_with_adapters_off(tiny_model):
    batch = collate(PAIRS)
    with torch.no_grad():
        base = sequence_logps(tiny_model, batch).logps
    model = add_lora(tiny_model, r=2, alpha=4.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    live = LiveReference(model, pad_token_id=0, context=lambda: adapters_disabled(model))
    assert torch.allclose(live(batch).logps, base, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(sequence_logps(model, batch).logps, base, atol=1e-3)


def _cache_hub_snapshot(hub_cache, repo_id: str, commit: str, config: str) -> None:
    """Lay out one cached revision of a Hub model as huggingface_hub does."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(config)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_model_fingerprint_follows_the_cached_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    name = "org/model"
    uncached = reference.model_fingerprint(name, "fp32", "sdpa")
    _cache_hub_snapshot(tmp_path, name, "a" * 40, '{"v": 1}')
    first = reference.model_fingerprint(name, "fp32", "sdpa")
    assert first != uncached
    assert reference.model_fingerprint(name, "fp32", "sdpa") == first
    _cache_hub_snapshot(tmp_path, name, "b" * 40, '{"v": 2}')  # a new revision becomes main
    assert reference.model_fingerprint(name, "fp32", "sdpa") != first
    assert reference.model_fingerprint(name, "bf16", "sdpa") != reference.model_fingerprint(
        name, "fp32", "sdpa"
    )


def test_fingerprint_of_a_name_that_is_no_repo_id_is_still_defined():
    assert reference.model_fingerprint("not//a repo", "fp32", None) == reference.model_fingerprint(
        "not//a repo", "fp32", None
    )
