"""What preftune's loop needs from the accelerate backend (DDP, FSDP, DeepSpeed): the
settings it refuses, DeepSpeed's batch keys, the engine layout, and the whole trained policy
back on the main process (docs/distributed.md)."""

from __future__ import annotations

import torch

from preftune.errors import ConfigError


def is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed split weights or optimizer states: a process's copy is not the whole."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def configure_backend(accelerator, config, *, reads_hidden_states: bool = False) -> str:
    """Refuse what preftune's loop cannot do under FSDP / DeepSpeed, set up DeepSpeed's batch
    keys, and return the log-prob engine layout to use (before `accelerator.prepare`).

    - Checkpoints hold whole weights and optimizer states: DDP or one process only.
    - A live LoRA reference (the policy with adapters off) would run on sharded weights.
    - DeepSpeed steps its optimizer inside `backward`, so a step must be one micro-batch per
      process (no accumulation in preftune's loop); its clipping is the DeepSpeed config's
      `gradient_clipping`.
    - ZeRO-3 partitions weights outside their module's forward, and the response-only engine
      reads the LM head's weight directly: the "plain" layout (full logits) is used there, and
      a method whose inputs read the policy's hidden states (offline PPO's value head,
      through a hook: `reads_hidden_states`) is refused.
    """
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if is_sharded(accelerator) and (
        config.save_every or config.resume or config.keep_final_checkpoint
    ):
        raise ConfigError(
            f"save_every / keep_final_checkpoint / resume: checkpoints are not implemented "
            f"under {kind.value} (they "
            "would hold one process's shard); train without them, or use DDP "
            "(examples/accelerate/ddp.yaml)"
        )
    if is_sharded(accelerator) and config.lora is not None and config.reference == "live":
        raise ConfigError(
            f"reference: a live LoRA reference runs the policy with adapters off outside the "
            f"{kind.value} wrapper, on sharded weights; use reference: precompute"
        )
    if kind != DistributedType.DEEPSPEED:
        return "auto"
    processes = accelerator.num_processes
    if config.groups_per_forward * processes < config.batch_size:
        raise ConfigError(
            f"micro_batch_size: under DeepSpeed a step must be one micro-batch per process; "
            f"set micro_batch_size >= batch_size / processes = {config.batch_size / processes:g}"
        )
    plugin = accelerator.state.deepspeed_plugin
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.groups_per_forward
    plugin.deepspeed_config["gradient_accumulation_steps"] = 1
    plugin.deepspeed_config["zero_allow_untested_optimizer"] = True  # RMSprop, SGD
    if plugin.zero_stage != 3:
        return "auto"
    if reads_hidden_states:
        raise ConfigError(
            f"method: '{config.method}' reads hidden states for a head trained with the "
            "policy (e.g. a value head), which ZeRO-3's partitioned weights do not allow "
            "here; use ZeRO-2 or FSDP"
        )
    return "plain"


def full_policy(accelerator, policy: torch.nn.Module, rebuild) -> torch.nn.Module | None:
    """The trained policy with all its weights on the main process (None on the others).

    Under FSDP / DeepSpeed the weights are gathered with `accelerator.get_state_dict` (every
    process must call this) into a fresh copy of the policy made by `rebuild()`.
    """
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(policy).model if accelerator.is_main_process else None
    state = accelerator.get_state_dict(policy)
    if not accelerator.is_main_process:
        return None
    model = rebuild()
    prefix = "model."
    model.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    )
    return model
