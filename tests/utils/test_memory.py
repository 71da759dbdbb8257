"""PeakMemory counts what a block allocates at its peak, not what was there before."""

import mmap
import sys

import pytest
import torch

from diffvi.utils.memory import PeakMemory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_cpu_peak_sees_a_touched_allocation_and_not_the_memory_before():
    keep = torch.ones(64 * 2**20)  # 256 MiB allocated before the block: not counted
    with PeakMemory("cpu") as peak:
        # Fresh anonymous pages, written then unmapped: a tensor here could be served from heap
        # memory an earlier test freed but the allocator kept resident, which (rightly) does not
        # raise the process's RSS — that made this test depend on the tests before it.
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"\1" * len(block))
        block.close()
    assert peak.bytes is not None
    # Wide upper bound: other threads of a long test session may allocate meanwhile; counting
    # the memory from before the block would give >= 320 MiB.
    assert 60 * 2**20 <= peak.bytes < 192 * 2**20
    del keep


def test_unmeasurable_device_gives_none():
    with PeakMemory("meta") as peak:
        torch.ones(10, device="meta")
    assert peak.bytes is None
