"""`gradient_checkpointing: true` recomputes the policy's activations and changes no number."""

import torch

from preftune.io import read_jsonl
from preftune.models.engine import sequence_logps
from preftune.testing import build_tiny_model
from preftune.train import train
from preftune.train.setup import build_policy


def _run(make_config, data, name, **overrides):
    config = make_config(
        "dpo", data, max_steps=3, reference="live", run_name=name, seed=0, **overrides
    )
    run_dir = train(config)
    return run_dir, read_jsonl(run_dir / "metrics.jsonl")


def test_same_losses_gradients_and_weights(make_config, paired_file, monkeypatch):
    from transformers import AutoModelForCausalLM

    import preftune.train.setup

    allocator_calls = []
    monkeypatch.setattr(
        preftune.train.setup, "return_freed_memory_promptly", lambda: allocator_calls.append(1)
    )
    plain_dir, plain = _run(make_config, paired_file, "plain")
    assert not allocator_calls
    checkpointed_dir, checkpointed = _run(
        make_config, paired_file, "checkpointed", gradient_checkpointing=True
    )
    assert allocator_calls == [
        1
    ]  # only a checkpointed policy (offline or online: build_policy) changes glibc's threshold
    assert len(plain) == len(checkpointed) == 3
    for a, b in zip(plain, checkpointed, strict=True):
        # the recomputed forward repeats the same float operations: equal, not just close
        assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
    assert plain[-1]["loss"] != plain[0]["loss"]  # the runs did train
    final = AutoModelForCausalLM.from_pretrained(checkpointed_dir / "final").state_dict()
    for name, value in (
        AutoModelForCausalLM.from_pretrained(plain_dir / "final").state_dict().items()
    ):
        torch.testing.assert_close(final[name], value, rtol=0, atol=0, msg=name)


def _layer_calls(model, run) -> int:
    """How often `run` enters layer 0's MLP (inside the checkpointed layer forward; a pre-hook,
    as the recomputation stops once it has every saved tensor, before the MLP returns)."""
    calls = []
    handle = model.get_decoder().layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        run()
    finally:
        handle.remove()
    return len(calls)


def test_only_the_training_pass_recomputes(make_config, paired_file, tiny_tokenizer):
    from preftune.data.batch import TokenizedGroup, collate

    batch = collate([TokenizedGroup("g", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [None] * 2)])
    config = make_config("dpo", paired_file, gradient_checkpointing=True)
    model = build_policy(config, model=build_tiny_model(len(tiny_tokenizer)))

    def train_pass():
        sequence_logps(model.train(), batch).logps.sum().backward()

    def reference_pass():
        with torch.no_grad():
            sequence_logps(model.eval(), batch)

    assert _layer_calls(model, train_pass) == 2  # forward, then again in the backward
    assert _layer_calls(model, reference_pass) == 1
    plain = build_policy(
        make_config("dpo", paired_file), model=build_tiny_model(len(tiny_tokenizer))
    )
    assert (
        _layer_calls(plain, lambda: sequence_logps(plain.train(), batch).logps.sum().backward())
        == 1
    )
