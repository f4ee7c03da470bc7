"""Which groups each process runs in each forward of a step, by whole prompt group.

A step's groups are cut into global micro-batches of `groups_per_forward x processes` groups,
each split between the processes; a prompt group, with all its responses, always stays on one
process (docs/distributed.md).
"""

from __future__ import annotations

from preftune.errors import ConfigError


def micro_batches(
    indices: list[int], groups_per_forward: int, rank: int, processes: int
) -> list[tuple[list[int], int]]:
    """This process's part of each global micro-batch of a step, with the global size.

    Global micro-batches hold `groups_per_forward * processes` groups (the last one fewer);
    each is split into `processes` contiguous parts whose sizes differ by at most one.

    >>> micro_batches(list(range(10)), 4, rank=0, processes=1)
    [([0, 1, 2, 3], 4), ([4, 5, 6, 7], 4), ([8, 9], 2)]
    >>> micro_batches(list(range(6)), 2, rank=1, processes=2)
    [([2, 3], 4), ([5], 2)]
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
