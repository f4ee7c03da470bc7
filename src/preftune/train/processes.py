"""What the processes of a run exchange: their count and rank, small objects, and the loss
inputs of a global micro-batch (docs/distributed.md).

Every process computes the loss on the *global* micro-batch: each runs the policy on its own
part, then every loss input is gathered, so batch-level statistics (KTO's KL reference point z,
RPO's contrast matrix, BCO's reward mean, list groups) span the global micro-batch, and the
metrics are the global batch's, identical on every process (no mean of means).

Gradients: the policy's log-probs are gathered by `_AllGatherSum`, whose backward sums, over
the processes, the gradient each one's loss sends to a row. Every process backpropagates the
same global loss L, so a process's own rows receive P x dL/drow; DDP, FSDP and DeepSpeed
average gradients over the P processes, which leaves exactly dL/dtheta.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def process_count() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_index() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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


def gather_loss_inputs(kwargs: dict) -> dict:
    """`compute(...)`'s keyword arguments for the global micro-batch, from this process's.

    Tensors with rows ([G, R], [G, ...], [G, R, L], KTO's [M]: every layout but a 0-d scalar)
    are concatenated over the processes in process order, padded where their other dimensions
    differ (ragged lists, token counts; the padding is masked). A tensor that one process lacks
    (a micro-batch without margins or scores) is zeros there, as `collate` would have made it
    on one process. Tensors with gradients are gathered with gradients. 0-d tensors (BCO's
    reward mean) are the same on every process and stay as they are.
    """
    return gather_rows(kwargs, rows=kwargs["policy_logps"].shape[0])


def gather_rows(tensors: dict, *, rows: int) -> dict:
    """`tensors` (this process's `rows` rows of a global batch) with every tensor that has rows
    concatenated over the processes in process order, as `gather_loss_inputs` describes (padded,
    zeros where a process lacks one, gathered with gradients where they have them); other
    values, None and 0-d tensors stay as they are. One process: `tensors` itself."""
    if process_count() == 1:
        return tensors
    mine = {
        name: (value.dtype, tuple(value.shape), value.requires_grad)
        for name, value in tensors.items()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    }
    everyone = all_processes((rows, mine))
    gathered = dict(tensors)
    for name in sorted(set().union(*(described for _, described in everyone))):
        gathered[name] = _gather_rows(name, tensors.get(name), rows, everyone)
    return gathered


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for on one process)."""
    if process_count() > 1:
        dist.barrier()


def main_outcome(main: bool, work, *, share: bool = True):
    """`work()`'s result on the main process, given to every process (with `share=False`
    kept on the main process, None elsewhere: for results that are not small objects); an
    error it raises (a `PreftuneError`) is raised on every process, so none waits for a main
    that stopped."""
    from preftune.errors import PreftuneError

    outcome, failure, result = None, None, None
    if main:
        try:
            result = work()
            outcome = (True, result if share else None)
        except PreftuneError as error:
            failure = error
            outcome = (False, (type(error), str(error)))
    ok, value = all_processes(outcome)[0]
    if failure is not None:
        raise failure
    if not ok:
        kind, message = value
        raise (kind if kind.__init__ is PreftuneError.__init__ else PreftuneError)(message)
    return result if main else value


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
