"""The accelerate configs in examples/accelerate/ parse as accelerate reads them, use only keys
its launcher knows, and set what preftune relies on; the train configs give batch 64 on 4 GPUs.
(DeepSpeed is not installed and there is no GPU here: nothing is launched.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

from preftune.config import load_train_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "accelerate"
LAUNCH_CONFIGS = {
    "ddp.yaml": DistributedType.MULTI_GPU,
    "fsdp.yaml": DistributedType.FSDP,
    "fsdp-lora.yaml": DistributedType.FSDP,
    "deepspeed-zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed-zero3.yaml": DistributedType.DEEPSPEED,
}
TRAIN_CONFIGS = ("train-dpo-4gpu.yaml", "train-dpo-lora-4gpu.yaml")


@pytest.mark.parametrize("name", sorted(LAUNCH_CONFIGS))
def test_launch_config_is_read_by_accelerate(name):
    config = load_config_from_file(str(EXAMPLES / name))  # unknown top-level keys raise
    assert config.distributed_type == LAUNCH_CONFIGS[name]
    assert config.num_processes == 4 and config.num_machines == 1
    assert config.mixed_precision == "bf16" and not config.use_cpu
    known = {action.dest for action in launch_command_parser()._actions}
    nested = {**(config.fsdp_config or {}), **(config.deepspeed_config or {})}
    unknown = [key for key in nested if key not in known and f"fsdp_{key}" not in known]
    assert not unknown, f"{name}: accelerate launch would ignore {unknown}"


@pytest.mark.parametrize("name", ["fsdp.yaml", "fsdp-lora.yaml"])
def test_fsdp_configs_keep_original_parameters_and_save_whole(name):
    fsdp = load_config_from_file(str(EXAMPLES / name)).fsdp_config
    assert fsdp["fsdp_use_orig_params"] is True  # LoRA: frozen and trainable weights in one unit
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


@pytest.mark.parametrize("name, stage", [("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)])
def test_deepspeed_configs(name, stage):
    deepspeed = load_config_from_file(str(EXAMPLES / name)).deepspeed_config
    assert deepspeed["zero_stage"] == stage
    assert deepspeed["gradient_accumulation_steps"] == 1  # preftune's loop accumulates
    assert deepspeed["zero3_init_flag"] is False  # reference scored on a whole model first
    assert deepspeed["gradient_clipping"] > 0


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_train_configs_reproduce_batch_64_on_4_processes(name):
    config = load_train_config(EXAMPLES / name)
    processes = load_config_from_file(str(EXAMPLES / "ddp.yaml")).num_processes
    accumulation = config.batch_size // (config.micro_batch_size * processes)
    assert config.batch_size == 64
    assert config.micro_batch_size * accumulation * processes == 64
    assert accumulation == 1  # also valid under DeepSpeed (one micro-batch per step)
    assert config.mixed_precision == "bf16"  # preftune's config decides, not the launcher's


def test_lora_train_config_has_adapters():
    raw = yaml.safe_load((EXAMPLES / "train-dpo-lora-4gpu.yaml").read_text())
    assert load_train_config(EXAMPLES / "train-dpo-lora-4gpu.yaml").lora is not None
    assert raw["lora"]["target_modules"] == "all-linear"
