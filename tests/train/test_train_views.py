"""One run per data view on a tiny random model: the loop, the run folder, the final model."""

import json
import math

import pytest
import torch
import yaml

from preftune.losses import METHODS
from preftune.train import train
from preftune.train.metrics import TIMING_KEYS


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("method", "data_fixture", "view"),
    [
        ("dpo", "paired_file", "pair"),
        ("kto", "binary_file", "binary"),
        ("mppo-list-mle", "scored_file", "list"),
        ("sft", "paired_file", "chosen"),
    ],
)
def test_every_view_trains_and_writes_a_complete_run(
    method, data_fixture, view, make_config, request
):
    assert METHODS[method].view == view
    config = make_config(method, request.getfixturevalue(data_fixture), max_steps=3)
    run_dir = train(config)

    lines = _lines(run_dir)
    assert [line["step"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert math.isfinite(line["loss"]) and line["grad_norm"] > 0
        assert {"lr", "tokens_per_s", "epoch"} <= set(line)
        assert 0 < line["step_seconds"] < 60
    if method != "sft":
        assert "rewards/accuracies" in lines[-1]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["method"] == method
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["train_groups"] > 0

    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    AutoTokenizer.from_pretrained(run_dir / "final")
    start = AutoModelForCausalLM.from_pretrained(config.model)
    changed = [
        name
        for (name, a), (_, b) in zip(
            final.named_parameters(), start.named_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert changed, "training left every weight as it was"


def test_gradient_accumulation_matches_one_big_batch(make_config, paired_file):
    whole = train(
        make_config("dpo", paired_file, micro_batch_size=4, max_steps=2, run_name="whole")
    )
    split = train(
        make_config("dpo", paired_file, micro_batch_size=1, max_steps=2, run_name="split")
    )
    for a, b in zip(_lines(whole), _lines(split), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_same_seed_same_run_and_existing_folder_is_refused(make_config, paired_file):
    from preftune.errors import ConfigError

    first = train(make_config("dpo", paired_file, max_steps=2, run_name="a"))
    second = train(make_config("dpo", paired_file, max_steps=2, run_name="b"))
    strip = lambda lines: [{k: v for k, v in x.items() if k not in TIMING_KEYS} for x in lines]  # noqa: E731
    assert strip(_lines(first)) == strip(_lines(second))
    with pytest.raises(ConfigError, match="already exists"):
        train(make_config("dpo", paired_file, max_steps=2, run_name="a"))


def test_trainable_layers_freezes_the_rest(make_config, paired_file):
    config = make_config("simpo", paired_file, max_steps=2, trainable_layers=1)
    run_dir = train(config)
    from transformers import AutoModelForCausalLM

    final = dict(AutoModelForCausalLM.from_pretrained(run_dir / "final").named_parameters())
    start = dict(AutoModelForCausalLM.from_pretrained(config.model).named_parameters())
    changed = {name for name in final if not torch.equal(final[name], start[name])}
    assert changed and all(name.startswith(("model.layers.1.", "model.norm")) for name in changed)
