"""Training on several processes (`accelerate launch`: DDP, FSDP, DeepSpeed) exactly as on one.

The rule that makes a run independent of the process count: every process computes the loss on
the *global* micro-batch. A step's groups are cut into global micro-batches of
`groups_per_forward x processes` groups, each split between the processes (a prompt group,
with all its responses, always stays on one process); each process runs the policy on its own
part, then every loss input is gathered, so batch-level statistics (KTO's KL reference point z,
RPO's contrast matrix, BCO's reward mean, list groups) span the global micro-batch, and the
metrics are the global batch's, identical on every process (no mean of means).

Gradients: the policy's log-probs are gathered by `_AllGatherSum`, whose backward sums, over
the processes, the gradient each one's loss sends to a row. Every process backpropagates the
same global loss L, so a process's own rows receive P x dL/drow; DDP, FSDP and DeepSpeed
average gradients over the P processes, which leaves exactly dL/dtheta.
The loss of a micro-batch is scaled by its share of the step's groups, as on one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from preftune.data.batch import PreferenceBatch
from preftune.errors import ConfigError
from preftune.losses.registry import EXTRA_LAYOUTS
from preftune.models.engine import SequenceLogps, sequence_logps
from preftune.models.value_head import logps_with_values

ROW_INPUTS = ("policy_logps", "ref_logps", "lengths", "scores", "labels", "mask")


def process_count() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_index() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def micro_batches(
    indices: list[int], groups_per_forward: int, rank: int, processes: int
) -> list[tuple[list[int], int]]:
    """This process's part of each global micro-batch of a step, with the global size.

    Global micro-batches hold `groups_per_forward * processes` groups (the last one fewer);
    each is split into `processes` contiguous parts whose sizes differ by at most one.
    """
    span = groups_per_forward * processes
    plan = []
    for start in range(0, len(indices), span):
        chunk = indices[start : start + span]
        base, extra = divmod(len(chunk), processes)
        first = rank * base + min(rank, extra)
        plan.append((chunk[first : first + base + (rank < extra)], len(chunk)))
    return plan


def check_shardable(
    num_groups: int, batch_size: int, groups_per_forward: int, processes: int
) -> None:
    """Every process needs at least one group in every micro-batch (all run the same forwards)."""
    if processes == 1:
        return
    span = groups_per_forward * processes
    step_sizes = {min(batch_size, num_groups), num_groups % batch_size}
    for size in sorted(step_sizes - {0}):
        last = size % span or span
        if last < processes:
            raise ConfigError(
                f"batch_size: with {processes} processes and micro_batch_size "
                f"{groups_per_forward}, a step of {size} groups leaves a micro-batch of {last} "
                f"groups, fewer than the processes; choose batch_size and data.limit "
                f"({num_groups} groups) so that every step has at least {processes} groups in "
                "its last micro-batch (e.g. make them multiples of the process count)"
            )


def gather_loss_inputs(kwargs: dict) -> dict:
    """`compute(...)`'s keyword arguments for the global micro-batch, from this process's.

    Row tensors ([G, R], [G, ...], [G, R, L] and KTO's [M]) are concatenated over the processes
    in process order, padded where their other dimensions differ (ragged lists, token counts;
    the padding is masked). A tensor that one process lacks (a micro-batch without margins or
    scores) is zeros there, as `collate` would have made it on one process. Tensors with
    gradients are gathered with gradients. Scalars stay as they are.
    """
    if process_count() == 1:
        return kwargs
    rows = kwargs["policy_logps"].shape[0]
    mine = {
        name: (value.dtype, tuple(value.shape), value.requires_grad)
        for name, value in kwargs.items()
        if isinstance(value, torch.Tensor) and _is_row_input(name)
    }
    everyone = all_processes((rows, mine))
    gathered = dict(kwargs)
    for name in sorted(set().union(*(described for _, described in everyone))):
        gathered[name] = _gather_rows(name, kwargs.get(name), rows, everyone)
    return gathered


def _is_row_input(name: str) -> bool:
    """Everything but scalars (BCO's reward mean), which are the same on every process."""
    return name in ROW_INPUTS or EXTRA_LAYOUTS.get(name, "scalar") != "scalar"


def _gather_rows(name: str, local: torch.Tensor | None, rows: int, everyone: list) -> torch.Tensor:
    described = [found[name] for _, found in everyone if name in found]
    dtype = described[0][0]
    trailing = [max(dims) for dims in zip(*(shape[1:] for _, shape, _ in described), strict=True)]
    shapes = [found[name][1] if name in found else (n, *trailing) for n, found in everyone]
    with_grad = any(grad for _, _, grad in described)
    device = local.device if local is not None else _collective_device()
    if local is None:
        local = torch.zeros(rows, *trailing, dtype=dtype, device=device)
    carrier = local.to(torch.uint8) if dtype == torch.bool else local
    longest = max(shape[0] for shape in shapes)
    padding = []
    for have, want in zip(reversed(carrier.shape), reversed((longest, *trailing)), strict=True):
        padding += [0, want - have]
    carrier = F.pad(carrier, padding)
    if with_grad:
        if not carrier.requires_grad:  # every process must take part in the backward gather
            carrier = carrier.detach().requires_grad_()
        pieces = _AllGatherSum.apply(carrier).unbind()
    else:
        pieces = [torch.empty_like(carrier) for _ in everyone]
        dist.all_gather(pieces, carrier.contiguous())
    joined = torch.cat([piece[: shape[0]] for piece, shape in zip(pieces, shapes, strict=True)])
    return joined.to(torch.bool) if dtype == torch.bool else joined


class _AllGatherSum(torch.autograd.Function):
    """All-gather [P, ...] whose backward gives each process the sum over the processes of the
    gradient their losses send to its slice (an all-reduce; the tensors are small)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        pieces = [torch.empty_like(tensor) for _ in range(process_count())]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.stack(pieces)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[process_index()]


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_processes(value) -> list:
    """`value` from every process, in process order (small picklable objects only)."""
    if process_count() == 1:
        return [value]
    everyone: list = [None] * process_count()
    dist.all_gather_object(everyone, value)
    return everyone


def merge_entries(new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference log-probs scored by every process (each scored its shard), merged."""
    merged: dict[str, torch.Tensor] = {}
    for part in all_processes(new):
        merged.update(part)
    return merged


class PolicyForward(torch.nn.Module):
    """The policy (and offline PPO's value head) behind one `forward(batch)`.

    The log-prob engine reads hidden states from `model.get_decoder()` rather than calling the
    model, which would bypass a DDP / FSDP / DeepSpeed wrapper's forward (and so its gradient
    synchronisation and parameter gathering). Wrapping the engine call in a module that
    `accelerator.prepare` wraps makes every policy pass a forward of the wrapper.
    Returns the log-probs and, with a value head, the critic's values [G, R, L] (else None).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        value_head: torch.nn.Module | None = None,
        layout: str = "auto",
    ):
        super().__init__()
        self.model = model
        self.value_head = value_head
        self.layout = layout
        # read by accelerate: FSDP's transformer auto-wrap policy, DeepSpeed's "auto" sizes
        self.config = model.config
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def forward(
        self,
        batch: PreferenceBatch,
        *,
        per_token: bool = False,
        collision: bool = False,
        pad_token_id: int = 0,
    ) -> tuple[SequenceLogps, torch.Tensor | None]:
        if self.value_head is not None:
            return logps_with_values(self.model, self.value_head, batch, pad_token_id=pad_token_id)
        logps = sequence_logps(
            self.model,
            batch,
            per_token=per_token,
            collision=collision,
            pad_token_id=pad_token_id,
            layout=self.layout,
        )
        return logps, None


def is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed split weights or optimizer states: a process's copy is not the whole."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def configure_backend(accelerator, config, spec) -> str:
    """Refuse what preftune's loop cannot do under FSDP / DeepSpeed, set up DeepSpeed's batch
    keys, and return the log-prob engine layout to use (before `accelerator.prepare`).

    - Checkpoints hold whole weights and optimizer states: DDP or one process only.
    - A live LoRA reference (the policy with adapters off) would run on sharded weights.
    - DeepSpeed steps its optimizer inside `backward`, so a step must be one micro-batch per
      process (no accumulation in preftune's loop); its clipping is the DeepSpeed config's
      `gradient_clipping`.
    - ZeRO-3 partitions weights outside their module's forward, and the response-only engine
      reads the LM head's weight directly: the "plain" layout (full logits) is used there, and
      offline PPO (its value head reads hidden states through a hook) is refused.
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
    if "values" in spec.extra_inputs:
        raise ConfigError(
            f"method: '{config.method}' reads hidden states for its value head, which ZeRO-3's "
            "partitioned weights do not allow here; use ZeRO-2 or FSDP"
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
