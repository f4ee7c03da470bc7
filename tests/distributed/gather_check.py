"""Checks `gather_loss_inputs` in 2 gloo processes; run as a script (exit code 0 = passed).

Process 0 holds 2 groups of up to 3 responses with margins and 3 KL pairs; process 1 holds
1 group of 2 responses, no margins, 1 KL pair, and longer token rows. The gathered inputs must
be both processes' rows in order, padded with masked zeros, margins 0 where missing; the
policy's gradient must reach each process's own rows summed over both processes' losses.
"""

import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from preftune.train.processes import gather_loss_inputs

POLICY = [torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, 0.0]]), torch.tensor([[-6.0, -7.0]])]
MASK = [torch.tensor([[True, True, True], [True, True, False]]), torch.tensor([[True, True]])]
KL = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.4])]
TOKEN_LENGTHS = [2, 5]


def inputs(rank: int) -> dict:
    groups, responses = POLICY[rank].shape
    kwargs = {
        "policy_logps": POLICY[rank].clone().requires_grad_(),
        "ref_logps": None,
        "mask": MASK[rank],
        "kl_policy_logps": KL[rank],
        "token_mask": torch.ones(groups, responses, TOKEN_LENGTHS[rank], dtype=torch.bool),
        "reward_mean": torch.tensor(float(rank)),  # a scalar: left as it is
    }
    if rank == 0:
        kwargs["margins"] = torch.tensor([0.5, 1.5])
    return kwargs


def check(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    local = inputs(rank)
    gathered = gather_loss_inputs(local)

    policy = gathered["policy_logps"]
    expected = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, 0.0], [-6.0, -7.0, 0.0]])
    assert torch.equal(policy.detach(), expected), policy
    mask = torch.tensor([[True, True, True], [True, True, False], [True, True, False]])
    assert gathered["mask"].dtype == torch.bool and torch.equal(gathered["mask"], mask)
    assert torch.equal(gathered["kl_policy_logps"], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert torch.equal(gathered["margins"], torch.tensor([0.5, 1.5, 0.0]))
    assert gathered["ref_logps"] is None
    assert gathered["reward_mean"].item() == float(rank)
    token_mask = gathered["token_mask"]
    assert token_mask.shape == (3, 3, 5), token_mask.shape
    assert token_mask[:2, :, 2:].sum() == 0 and token_mask[:2, :, :2].all()
    assert token_mask[2, :2].all() and not token_mask[2, 2].any()

    # Each process's loss weighs the global rows differently; a row's gradient is the sum of
    # what both losses send it.
    weights = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]) * (rank + 1)
    (policy * weights).sum().backward()
    grad = local["policy_logps"].grad
    total = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]) * 3
    own = total[:2] if rank == 0 else total[2:, :2]
    assert torch.equal(grad, own), (rank, grad)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(check, args=(free_port(),), nprocs=2)
    sys.exit(0)
