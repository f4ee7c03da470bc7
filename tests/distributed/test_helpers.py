"""The pieces of multi-process training, checked without (or with two tiny) processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from preftune.data.batch import TokenizedGroup, collate
from preftune.errors import ConfigError
from preftune.losses import METHODS
from preftune.models.disk_cache import TensorCache
from preftune.models.engine import sequence_logps
from preftune.models.loading import cache_dir
from preftune.models.policy import PolicyForward
from preftune.models.reference import precompute_reference
from preftune.train.batching import check_shardable, micro_batches
from preftune.train.processes import gather_loss_inputs

GROUPS = [
    TokenizedGroup(f"g{i}", [5, 6 + i], [[8 + i, 9, 2], [10, 2]], [1.0, 0.0], [None, None])
    for i in range(5)
]


@given(
    size=st.integers(1, 40),
    groups_per_forward=st.integers(1, 8),
    processes=st.integers(1, 5),
)
def test_micro_batches_split_each_global_micro_batch_between_processes(
    size, groups_per_forward, processes
):
    indices = [100 + i for i in range(size)]  # not positions: the plan must carry the ids
    plans = [micro_batches(indices, groups_per_forward, r, processes) for r in range(processes)]
    assert len({len(plan) for plan in plans}) == 1  # every process runs as many micro-batches
    rebuilt = []
    for k in range(len(plans[0])):
        parts = [plan[k][0] for plan in plans]
        global_size = plans[0][k][1]
        assert all(plan[k][1] == global_size for plan in plans)
        assert global_size <= groups_per_forward * processes
        assert sum(map(len, parts)) == global_size
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        rebuilt += [i for part in parts for i in part]
    assert rebuilt == indices


def test_one_process_keeps_micro_batches_of_groups_per_forward():
    plan = micro_batches(list(range(10)), 4, 0, 1)
    assert plan == [([0, 1, 2, 3], 4), ([4, 5, 6, 7], 4), ([8, 9], 2)]


def test_a_step_too_small_to_share_is_refused_before_training():
    check_shardable(num_groups=16, batch_size=8, groups_per_forward=4, processes=2)
    check_shardable(num_groups=9, batch_size=8, groups_per_forward=4, processes=1)
    with pytest.raises(ConfigError, match="batch_size.*2 processes.*1 groups"):
        check_shardable(num_groups=9, batch_size=8, groups_per_forward=4, processes=2)
    with pytest.raises(ConfigError, match="batch_size"):  # 10 = 8 + 2 -> last micro-batch of 2
        check_shardable(num_groups=20, batch_size=10, groups_per_forward=2, processes=4)


def test_one_process_passes_loss_inputs_through():
    kwargs = {"policy_logps": torch.zeros(2, 2), "ref_logps": None}
    assert gather_loss_inputs(kwargs) is kwargs


@pytest.mark.dist
def test_gathered_inputs_in_two_processes():
    """Shapes, padding, missing inputs and the summed gradient (see gather_check.py)."""
    script = Path(__file__).with_name("gather_check.py")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_policy_forward_is_the_engine(tiny_model):
    batch = collate(GROUPS)
    logps, heads = PolicyForward(tiny_model)(batch, pad_token_id=0)
    assert heads == {}
    assert torch.equal(logps.logps, sequence_logps(tiny_model, batch, pad_token_id=0).logps)


def test_reference_scored_in_shards_and_written_by_one_process(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFTUNE_CACHE", str(tmp_path))
    folder = cache_dir() / "reference" / "tiny"
    shares = {}

    def merge_as_process(index):
        def merge(new):  # stands in for the gather: both processes' entries
            shares[index] = dict(new)
            if len(shares) < 2:
                return new
            return {**shares[0], **shares[1]}

        return merge

    common = {"groups_per_forward": 2, "pad_token_id": 0}
    precompute_reference(
        tiny_model, GROUPS, "tiny", shard=(0, 2), merge=merge_as_process(0), write=False, **common
    )
    assert not folder.exists()  # a process that does not write leaves the cache alone
    merged = precompute_reference(
        tiny_model, GROUPS, "tiny", shard=(1, 2), merge=merge_as_process(1), write=True, **common
    )
    assert len(shares[0]) == 6 and len(shares[1]) == 4  # groups 0, 2, 4 and 1, 3: 2 responses each
    assert len(TensorCache(folder).entries) == 10  # the writer stored everyone's
    batch = collate(GROUPS)
    with torch.no_grad():
        expected = sequence_logps(tiny_model, batch, pad_token_id=0).logps
    torch.testing.assert_close(merged(batch).logps, expected, rtol=1e-5, atol=1e-5)


def _accelerator(kind, processes=4, zero_stage=None):
    from types import SimpleNamespace

    plugin = SimpleNamespace(zero_stage=zero_stage, deepspeed_config={})
    state = SimpleNamespace(deepspeed_plugin=plugin)
    return SimpleNamespace(distributed_type=kind, num_processes=processes, state=state)


def _config(method="dpo", **values):
    from preftune.config import build_train_config

    return build_train_config(
        {"model": "some/model", "method": method, "data": {"path": "someone/preferences"}, **values}
    )


def _configure(accelerator, config):
    from preftune.train.backend import configure_backend
    from preftune.train.providers import provider_classes

    reads = any(p.reads_hidden_states for p in provider_classes(METHODS[config.method]))
    return configure_backend(accelerator, config, reads_hidden_states=reads)


def test_backend_setup_refuses_what_sharded_training_cannot_do():
    from accelerate.utils import DistributedType

    ddp = _accelerator(DistributedType.MULTI_GPU)
    assert _configure(ddp, _config(save_every=10, lora={"r": 8})) == "auto"
    fsdp = _accelerator(DistributedType.FSDP)
    assert _configure(fsdp, _config()) == "auto"
    with pytest.raises(ConfigError, match="save_every"):
        _configure(fsdp, _config(save_every=10))
    with pytest.raises(ConfigError, match="reference: a live LoRA"):
        _configure(fsdp, _config(lora={"r": 8}, reference="live"))
    zero2 = _accelerator(DistributedType.DEEPSPEED, zero_stage=2)
    with pytest.raises(ConfigError, match="micro_batch_size.*16"):
        _configure(zero2, _config(batch_size=64, micro_batch_size=8))


def test_deepspeed_gets_its_batch_keys_and_zero3_the_plain_layout():
    from accelerate.utils import DistributedType

    zero2 = _accelerator(DistributedType.DEEPSPEED, zero_stage=2)
    assert _configure(zero2, _config(batch_size=64, micro_batch_size=16)) == "auto"
    keys = zero2.state.deepspeed_plugin.deepspeed_config
    assert keys["train_micro_batch_size_per_gpu"] == 16
    assert keys["gradient_accumulation_steps"] == 1
    zero3 = _accelerator(DistributedType.DEEPSPEED, zero_stage=3)
    assert _configure(zero3, _config(batch_size=64, micro_batch_size=16)) == "plain"
    with pytest.raises(ConfigError, match="value head"):
        _configure(zero3, _config("ppo-offline", batch_size=64, micro_batch_size=16))
