"""Methods that need more than sequence log-probs get what they declare, and train."""

import json
import math
from pathlib import Path

import pytest
import torch

from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import MethodDataError
from preftune.models.policy import token_heads_pass
from preftune.models.value_head import ValueHead
from preftune.train import train
from preftune.train.providers import MicroBatch
from preftune.train.providers.group_fields import GroupFields
from preftune.train.providers.mismatched_pairs import mismatched_pairs
from preftune.train.providers.reward_mean import RunningMean


@pytest.mark.parametrize(
    ("method", "data_fixture", "metric"),
    [
        ("kto-tanh", "paired_file", "kto/kl"),
        ("bco", "binary_file", "bco/delta"),
        ("ppo-offline", "paired_file", "ppo/critic_loss"),
        ("rpo", "paired_file", "rewards/accuracies"),
        ("rpo-unpaired", "binary_file", "rewards/accuracies"),
        ("mpo-set", "scored_file", "rewards/accuracies"),
    ],
)
def test_methods_with_extra_inputs_train(method, data_fixture, metric, make_config, request):
    config = make_config(method, request.getfixturevalue(data_fixture), max_steps=2)
    lines = [json.loads(x) for x in (train(config) / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    assert all(math.isfinite(line["loss"]) for line in lines)
    assert metric in lines[-1], sorted(lines[-1])


def test_bco_running_mean_follows_every_batch(make_config, binary_file):
    run_dir = train(make_config("bco", binary_file, max_steps=3, micro_batch_size=4))
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Step 1 has no running mean yet (the loss uses its batch mean); later steps use the mean
    # of every earlier batch's reward mean.
    assert lines[0]["bco/delta"] == pytest.approx(lines[0]["bco/reward_mean"], abs=1e-6)
    expected = (lines[0]["bco/reward_mean"] + lines[1]["bco/reward_mean"]) / 2
    assert lines[2]["bco/delta"] == pytest.approx(expected, abs=1e-5)


def test_running_mean_weights_by_batch_size():
    mean = RunningMean()
    assert mean.value() is None
    mean.update(1.0, 3)
    mean.update(-1.0, 1)
    assert mean.value() == pytest.approx(0.5)
    assert RunningMean(**mean.state()).value() == mean.value()


def _group(gid, prompt, response):
    return TokenizedGroup(gid, prompt, [response], [None], [True], prompt_text=str(prompt))


def test_mismatched_pairs_never_pair_a_prompt_with_its_own_prompt():
    groups = [
        _group("a", [5, 6], [7, 2]),
        _group("b", [5, 6], [8, 2]),
        _group("c", [9], [10, 11, 2]),
    ]
    companions = mismatched_pairs(groups, seed=0, max_length=4)
    for group, companion in zip(groups, companions, strict=True):
        assert companion.prompt_ids == group.prompt_ids
        partner_id = companion.id.split("|kl|")[1]
        partner = next(g for g in groups if g.id == partner_id)
        assert partner.prompt_ids != group.prompt_ids
        assert len(companion.prompt_ids) + len(companion.response_ids[0]) <= 4
    assert mismatched_pairs(groups, seed=0, max_length=4)[0].id == companions[0].id


def test_mismatched_pairs_need_two_prompts():
    with pytest.raises(MethodDataError, match="at least 2 examples with different prompts"):
        mismatched_pairs([_group("a", [5], [7, 2]), _group("b", [5], [8, 2])], seed=0, max_length=9)


def test_values_are_read_where_each_token_is_predicted(tiny_model):
    head = ValueHead(tiny_model.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    groups = [
        TokenizedGroup("a", [5, 6, 7], [[8, 9, 2], [10, 2]], [1.0, 0.0], [True, False]),
        TokenizedGroup("b", [11, 12], [[13, 14, 15, 2]], [None], [True]),
    ]
    batch = collate(groups)
    out, heads = token_heads_pass(tiny_model, {"value": head}, batch, pad_token_id=0)
    values = heads["value"]
    assert values.shape == out.token_logps.shape
    for g, group in enumerate(groups):
        for r, response in enumerate(group.response_ids):
            ids = torch.tensor([group.prompt_ids + response])
            hidden = tiny_model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
            start = len(group.prompt_ids) - 1
            expected = head(hidden[start : start + len(response)])
            assert torch.allclose(values[g, r, : len(response)], expected, atol=1e-5)
            assert not values[g, r, len(response) :].any()


def _micro_batch(groups):
    return MicroBatch(
        batch=collate(groups),
        indices=list(range(len(groups))),
        groups=groups,
        policy=None,
        heads={},
        reference=None,
        run_policy=None,
        run_reference=None,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def test_group_fields_give_ties_and_margins_only_where_the_data_has_one():
    groups = [
        TokenizedGroup(
            "a", [5], [[6, 2], [7, 2]], [None, None], [None, None], margin=1.5, tie=True
        ),
        TokenizedGroup("b", [5], [[8, 2], [9, 2]], [None, None], [None, None]),
    ]
    provider = GroupFields(run=None)
    both = provider.provide(_micro_batch(groups))
    assert both["ties"].tolist() == [True, False]
    assert both["margins"].dtype == torch.float64 and both["margins"].tolist() == [1.5, 0.0]
    assert set(provider.provide(_micro_batch(groups[1:]))) == {"ties"}


def test_todo_trains_on_tied_pairs(make_config):
    fixture = Path(__file__).parents[1] / "fixtures" / "data" / "ties.jsonl"
    config = make_config("todo", fixture, max_steps=1, batch_size=3, micro_batch_size=3)
    run_dir = train(config)
    assert json.loads((run_dir / "summary.json").read_text())["train_groups"] == 3  # ties kept
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(line["loss"])
