"""A method that needs a new extra input is its loss, its registry entry and its provider:
registered here at test time, it trains without a change to the loop, trainer or engine."""

import json
import math
from types import MappingProxyType

import pytest
import torch
import torch.nn.functional as F

from preftune.losses import METHODS
from preftune.losses.registry import (
    EXTRA_INPUTS,
    ExtraInput,
    MethodSpec,
    register_method,
    unregister_method,
)
from preftune.losses.responses import LossTerms, Responses
from preftune.train import train
from preftune.train.inputs import LossInputs
from preftune.train.providers import PROVIDERS, InputProvider, MicroBatch, register_provider
from preftune.train.providers.reward_mean import RewardMean

OFFSET = 0.25


def offset_loss(pairs: Responses) -> LossTerms:
    """-log sigmoid(mean logp_w - mean logp_l - c) with a per-pair constant c from a provider."""
    offset = pairs.extra("pair_offset")
    margin = pairs.mean_logps[:, 0] - pairs.mean_logps[:, 1] - offset
    return LossTerms(-F.logsigmoid(margin), pairs.mean_logps, {"offset/seen": offset.mean().item()})


class PairOffset(InputProvider):
    """The constant OFFSET for every pair; counts its micro-batches as its checkpointed state."""

    name = "test_pair_offset"
    provides = ("pair_offset",)

    def __init__(self, run):
        self.calls = 0

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"pair_offset": torch.full((len(micro.groups),), OFFSET, device=micro.device)}

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


SPEC = MethodSpec(
    name="test-offset",
    view="pair",
    needs_reference=False,
    hparams=MappingProxyType({}),
    paper="(a test)",
    description="SimPO-like margin with a per-pair offset from a provider",
    function=offset_loss,
    extra_inputs=("pair_offset",),
)


@pytest.fixture()
def offset_method():
    register_provider(PairOffset)
    register_method(SPEC, {"pair_offset": ExtraInput("group_scalar", PairOffset.name, "c")})
    yield SPEC.name
    unregister_method(SPEC.name)
    del PROVIDERS[PairOffset.name]


def test_a_method_with_its_own_input_provider_trains(offset_method, make_config, paired_file):
    config = make_config(offset_method, paired_file, max_steps=1, keep_final_checkpoint=True)
    run_dir = train(config)
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["offset/seen"] == pytest.approx(OFFSET)  # the provider's tensor reached the loss
    assert math.isfinite(line["loss"])
    state = json.loads((run_dir / "checkpoints" / "step-1" / "state.json").read_text())
    assert state["inputs"] == {PairOffset.name: {"calls": 2}}  # 4 pairs, micro-batches of 2


def test_registering_refuses_taken_names_and_undeclared_inputs(offset_method):
    with pytest.raises(ValueError, match="already registered: test-offset"):
        register_method(SPEC)
    with pytest.raises(ValueError, match="undeclared extra inputs nothing"):
        register_method(MethodSpec(**{**vars(SPEC), "name": "x", "extra_inputs": ("nothing",)}))
    with pytest.raises(ValueError, match="already registered"):
        register_provider(PairOffset)


def test_every_declared_input_has_a_provider_that_computes_it():
    for name, declaration in EXTRA_INPUTS.items():
        assert name in PROVIDERS[declaration.provider].provides, name


def test_provider_state_survives_a_checkpoint_round_trip():
    """BCO's running mean goes through the loop's generic state (as JSON, like state.json)."""
    before = RewardMean(run=None)
    before.observe({"bco/reward_mean": 2.0, "loss": 9.0}, 3)
    before.observe({"bco/reward_mean": -2.0}, 1)
    state = json.loads(json.dumps(LossInputs(METHODS["bco"], [], [before]).state_dict()))
    after = LossInputs(METHODS["bco"], [], [RewardMean(run=None)])
    after.load_state_dict(state)
    assert after.providers[0].mean.value() == pytest.approx((2.0 * 3 - 2.0) / 4)
