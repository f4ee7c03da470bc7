"""With `gradient_checkpointing: true` a freed block of a few MiB leaves the process at once."""

import platform
from pathlib import Path

import pytest
import torch

from preftune.train.allocator import return_freed_memory_promptly

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _freed_but_resident_mib(size_mib: int) -> float:
    block = torch.ones(size_mib * 2**18)  # touched: every page resident
    with_block = _rss_mib()
    del block
    return _rss_mib() - (with_block - size_mib)


def test_a_freed_block_is_given_back_even_after_glibc_raised_its_threshold():
    # Freeing a 30 MiB mapped block makes glibc serve later blocks below 30 MiB from its heap,
    # where a freed one stays resident; the setting undoes that for blocks of 1 MiB and more.
    torch.ones(30 * 2**18)
    assert return_freed_memory_promptly()
    assert _freed_but_resident_mib(16) < 2
