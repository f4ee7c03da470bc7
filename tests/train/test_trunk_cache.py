"""The frozen-trunk cache (`trunk_cache`) changes no number beyond float rounding.

Tolerance: log-probs, losses and gradient norms within 1e-5 relative (float32; the cached
states come from a differently shaped batch, so matmuls round differently).
"""

import pytest
import torch

import preftune.train.setup as setup
from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import ConfigError
from preftune.io import read_jsonl
from preftune.models.engine import SequenceLogps, sequence_logps
from preftune.models.reference import precompute_reference
from preftune.models.trunk import TrunkStates, frozen_depth, self_check, unsupported_reason
from preftune.testing import build_tiny_model
from preftune.train import train
from preftune.train.metrics import TIMING_KEYS

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture()
def files(paired_file, binary_file, scored_file):
    return {"paired": paired_file, "binary": binary_file, "scored": scored_file}


@pytest.fixture()
def make_config(make_config):
    """tests/train's config builder, with only the top one of the tiny model's two layers training."""
    return lambda method, data, **overrides: make_config(
        method, data, **{"trainable_layers": 1, **overrides}
    )


def _groups():
    return [
        TokenizedGroup("a", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [None] * 2),
        TokenizedGroup("b", [11, 12], [[13, 2], [14, 15, 16, 2], [17, 2]], [None] * 3, [None] * 3),
    ]


def _top_layer_model(vocab_size):
    model = build_tiny_model(vocab_size).requires_grad_(False)
    model.model.layers[1].requires_grad_(True)
    model.model.norm.requires_grad_(True)
    return model


def _logps_and_grads(model, batch, layout, trunk=None):
    model.zero_grad()
    out = sequence_logps(model, batch, per_token=True, layout=layout, trunk=trunk)
    (
        out.logps * torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])[:, : out.logps.shape[1]]
    ).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


@pytest.mark.parametrize("layout", ["shared", "padded", "packed"])
def test_cached_trunk_gives_the_same_logps_and_gradients(tiny_tokenizer, tmp_path, layout):
    model = _top_layer_model(len(tiny_tokenizer))
    groups = _groups()
    trunk = TrunkStates(tmp_path / "trunk", depth=frozen_depth(model))
    trunk.fill(model, groups, groups_per_forward=1, pad_token_id=0)
    batch = collate(groups)
    plain, plain_grads = _logps_and_grads(model, batch, layout)
    bottom_calls = []
    model.model.layers[0].register_forward_hook(lambda *_: bottom_calls.append(1))
    cached, cached_grads = _logps_and_grads(model, batch, layout, trunk)
    assert not bottom_calls  # only the top layer ran
    torch.testing.assert_close(cached.logps, plain.logps, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(cached.token_logps, plain.token_logps, rtol=RTOL, atol=ATOL)
    assert torch.equal(cached.lengths, plain.lengths)
    assert plain_grads.keys() == cached_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(cached_grads[name], grad, rtol=RTOL, atol=ATOL, msg=name)


def _tiny(family: str, vocab_size: int):
    """A 3-layer random model of `family`, its top layer (and final norm) training."""
    import transformers

    config_class, model_class = {
        "mistral": ("MistralConfig", "MistralForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    }[family]
    llama = build_tiny_model(vocab_size).config  # the same shape, one layer more
    shape = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
    config = getattr(transformers, config_class)(
        vocab_size=vocab_size,
        num_hidden_layers=3,
        attn_implementation="sdpa",
        **{name: getattr(llama, name) for name in shape},
    )
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).requires_grad_(False)
    model.model.layers[2].requires_grad_(True)
    model.model.norm.requires_grad_(True)
    return model


@pytest.mark.parametrize("family", ["mistral", "qwen2", "qwen3"])
def test_every_supported_family_gives_the_same_logps_and_gradients(tmp_path, family):
    model = _tiny(family, 300)
    assert unsupported_reason(model) is None and frozen_depth(model) == 2
    trunk = TrunkStates(tmp_path / "trunk", depth=2)
    trunk.fill(model, _groups(), groups_per_forward=2, pad_token_id=0)
    batch = collate(_groups())
    plain, plain_grads = _logps_and_grads(model, batch, "shared")
    cached, cached_grads = _logps_and_grads(model, batch, "shared", trunk)
    torch.testing.assert_close(cached.logps, plain.logps, rtol=RTOL, atol=ATOL)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=RTOL, atol=ATOL, msg=name)


def test_reference_pass_keeps_the_states_a_trunk_pass_computes(tiny_tokenizer, tmp_path):
    model = _top_layer_model(len(tiny_tokenizer))
    captured = TrunkStates(tmp_path / "captured", depth=1)
    precompute_reference(
        model, _groups(), "fp", groups_per_forward=2, pad_token_id=0, trunk=captured
    )
    computed = TrunkStates(tmp_path / "computed", depth=1)
    computed.fill(model, _groups(), groups_per_forward=1, pad_token_id=0)
    # one entry per prompt (2) and per response (5)
    assert captured.new.keys() == computed.cache.entries.keys() and len(captured.new) == 7
    for key, state in computed.cache.entries.items():
        assert state.shape[-1] == model.config.hidden_size
        torch.testing.assert_close(captured.new[key], state, rtol=RTOL, atol=ATOL)
    captured.save()
    assert (
        TrunkStates(tmp_path / "captured", depth=1).cache.entries.keys()
        == captured.cache.entries.keys()
    )


def test_self_check_reads_a_precomputed_reference_instead_of_a_full_pass(tiny_tokenizer):
    """The precomputed reference is the untrained policy's full pass: the check compares the
    cached path with it and runs no bottom layer, and still sees a path that disagrees."""
    model = _top_layer_model(len(tiny_tokenizer))
    trunk = TrunkStates(None, depth=1)
    reference = precompute_reference(
        model, _groups(), "fp", groups_per_forward=2, pad_token_id=0, trunk=trunk
    )
    bottom_runs = []
    model.model.layers[0].register_forward_hook(lambda *args: bottom_runs.append(1))
    assert self_check(model, trunk, _groups(), 0, full_pass=reference) is None
    assert bottom_runs == []

    def shifted(batch):
        out = reference(batch)
        return SequenceLogps(out.logps + 0.01 * out.lengths, out.lengths)

    assert "log-probs differ by up to" in self_check(model, trunk, _groups(), 0, full_pass=shifted)
    assert self_check(model, trunk, _groups(), 0) is None  # the full pass run here
    assert bottom_runs == [1]


def test_fill_computes_each_prompt_once_and_only_what_is_missing(tiny_tokenizer, tmp_path):
    model = _top_layer_model(len(tiny_tokenizer))
    trunk = TrunkStates(tmp_path / "trunk", depth=1)
    pair = TokenizedGroup("pair", [5, 6, 7], [[8, 9, 2], [10, 2]], [None] * 2, [None] * 2)
    single = TokenizedGroup("single", [5, 6, 7], [[8, 9, 2]], [None], [None])
    widths = []
    model.model.layers[0].register_forward_hook(lambda _m, _i, out: widths.append(out.shape[1]))
    trunk.fill(model, [pair, single], groups_per_forward=4, pad_token_id=0)
    assert widths == [3 + 3 + 2]  # one row: the prompt once, each distinct response once
    listed = TokenizedGroup(
        "list", [5, 6, 7], [[8, 9, 2], [10, 2], [11, 12, 2]], [None] * 3, [None] * 3
    )
    trunk.fill(model, [listed], groups_per_forward=4, pad_token_id=0)
    assert widths[1:] == [3 + 3]  # the prompt (context) and the one new response
    trunk.fill(model, [listed, pair], groups_per_forward=4, pad_token_id=0)
    assert len(widths) == 2  # nothing left to compute


def _metrics(run_dir):
    return [
        {k: v for k, v in row.items() if k not in TIMING_KEYS}
        for row in read_jsonl(run_dir / "metrics.jsonl")
    ]


@pytest.mark.parametrize(
    ("method", "shape"),
    [
        ("dpo", "paired"),
        ("simpo", "paired"),
        ("kto", "binary"),
        ("mppo-pair-mnm", "scored"),
        ("ppo-offline", "binary"),  # per-token log-probs and a value head on the hidden states
    ],
)
def test_training_with_the_cache_matches_training_without(
    make_config, files, monkeypatch, method, shape
):
    from transformers import AutoModelForCausalLM

    from preftune.models.trunk import TrunkStates

    calls = []
    top_hidden = TrunkStates.top_hidden
    monkeypatch.setattr(
        TrunkStates, "top_hidden", lambda *a, **k: calls.append(1) or top_hidden(*a, **k)
    )
    # SGD: an update is linear in the gradient, so the weights compare at the same tolerance
    # (RMSprop's g / sqrt(v) magnifies rounding in near-zero gradients)
    settings = {"max_steps": 2, "optimizer": "sgd", "lr": 0.1}
    plain_dir = train(
        make_config(method, files[shape], trunk_cache="off", run_name="a", **settings)
    )
    assert not calls
    cached_dir = train(
        make_config(method, files[shape], trunk_cache="on", run_name="b", **settings)
    )
    assert calls
    plain, cached = _metrics(plain_dir), _metrics(cached_dir)
    assert len(plain) == len(cached) == 2 and plain[0]["loss"] != plain[1]["loss"]
    for a, b in zip(plain, cached, strict=True):
        for key in ("loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=RTOL, abs=ATOL), key
    final = AutoModelForCausalLM.from_pretrained(cached_dir / "final").state_dict()
    for name, value in (
        AutoModelForCausalLM.from_pretrained(plain_dir / "final").state_dict().items()
    ):
        torch.testing.assert_close(final[name], value, rtol=RTOL, atol=ATOL, msg=name)


def test_resumed_run_with_the_cache_is_exact(make_config, files, monkeypatch):
    import preftune.train.trainer as trainer_module

    data = files["binary"]  # KTO: mismatched pairs go through the cache too
    straight = train(make_config("kto", data, max_steps=4, trunk_cache="on", run_name="a"))
    real, calls = trainer_module.compute, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # 2 micro-batches a step: inside step 3, after step 2's checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "compute", interrupted)
    config = make_config("kto", data, max_steps=4, save_every=2, trunk_cache="on", run_name="b")
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(trainer_module, "compute", real)
    resumed = train(config.model_copy(update={"resume": True}))
    assert _metrics(resumed) == _metrics(straight)


def test_damaged_shard_is_skipped_and_computed_again(make_config, files, tmp_path):
    config = make_config("simpo", files["paired"], max_steps=1, trunk_cache="on", run_name="a")
    train(config)
    shards = list((tmp_path / "cache" / "trunk").rglob("*.pt"))
    assert shards
    for shard in shards:
        shard.write_bytes(shard.read_bytes()[:100])  # as a crash mid-write could not leave it
    with pytest.warns(UserWarning, match="cache shard skipped"):
        train(config.model_copy(update={"run_name": "b"}))


def test_on_refuses_what_the_cache_cannot_do(make_config, files):
    with pytest.raises(ConfigError, match="trunk_cache: on needs trainable_layers"):
        make_config("dpo", files["paired"], trunk_cache="on", trainable_layers=None)
    with pytest.raises(ConfigError, match="trunk_cache: on, but gradient_checkpointing"):
        train(make_config("dpo", files["paired"], trunk_cache="on", gradient_checkpointing=True))
    with pytest.raises(ConfigError, match="trunk_cache: on caches fixed data"):
        make_config(
            "grpo",
            files["paired"],
            trunk_cache="on",
            reward={"type": "gold", "name": "vader-sentiment"},
        )


def test_auto_skips_a_cache_over_the_cap(make_config, files, monkeypatch):
    monkeypatch.setattr(setup, "DEFAULT_CAP_BYTES", 1000)
    with pytest.warns(UserWarning, match=r"trunk_cache: not used, .* GiB"):
        trunk = setup.build_trunk(
            make_config("dpo", files["paired"]), _top_layer_model(300), _groups()
        )
    assert trunk is None


@pytest.mark.parametrize("method", ["simpo", "dpo"])  # full pass run / read from the reference
def test_auto_falls_back_when_the_self_check_disagrees(make_config, files, monkeypatch, method):
    top_hidden = TrunkStates.top_hidden
    monkeypatch.setattr(TrunkStates, "top_hidden", lambda *a, **k: top_hidden(*a, **k) + 0.1)
    with pytest.warns(UserWarning, match="does not reproduce this model's log-probs"):
        run_dir = train(make_config(method, files["paired"], max_steps=1))
    assert (run_dir / "final").exists()


def test_unsupported_families_and_dropout_are_refused(tiny_tokenizer):
    model = _top_layer_model(len(tiny_tokenizer))
    assert unsupported_reason(model) is None
    model.config.attention_dropout = 0.1
    assert "dropout" in unsupported_reason(model)
    model.config.attention_dropout = 0.0
    model.config.model_type = "gemma"
    assert "model type 'gemma'" in unsupported_reason(model)
