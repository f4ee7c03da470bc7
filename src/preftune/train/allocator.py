"""glibc's allocator, told to give freed large blocks back to the OS at once.

glibc serves a large allocation from its own `mmap`, freed with `munmap`, but starts at
128 KiB and raises that threshold (up to 32 MiB) each time such a block is freed. After a first
training step, a step's activations, logits and gradients of up to 32 MiB come from the heap
instead, and what the step frees stays resident until the heap reuses it. In a checkpointed
SmolLM2-135M step of 8 pairs this left the process's peak RSS at 3.6x what it is with the
threshold fixed (bench/RESULTS.md, "Gradient checkpointing at 8 pairs"). Fixing the threshold (which turns
the adjustment off) makes resident memory follow what is allocated, at the cost of page faults
on every new block. No number changes: only where the bytes live.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory_promptly() -> bool:
    """Serve every allocation of `MMAP_THRESHOLD_BYTES` or more from its own mapping, for the
    rest of the process. False where the C library is not glibc (nothing changes).

    >>> return_freed_memory_promptly() in (True, False)
    True
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
