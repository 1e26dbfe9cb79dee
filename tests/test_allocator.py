"""The allocator settings keep freed tile-sized blocks in the process for reuse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geo_ntl.allocator import ALLOCATOR_ENVIRON, _glibc

pytestmark = pytest.mark.skipif(
    _glibc() is None, reason="needs glibc (the settings do nothing elsewhere)"
)

# Allocates and frees a 100 MB block four times in a worker thread (as dask runs tiles) and
# prints the page faults of the last three allocations.
_FAULTS = """
import resource, sys, threading
import numpy as np
if sys.argv[1] == "tuned":
    from geo_ntl.allocator import tune_allocator
    assert tune_allocator()
faults = []
def run():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.ones(100 * 2**20 // 8)
        del block
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(sum(faults[1:]))
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_tune_allocator__a_freed_block_is_reused_without_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    assert default > 100  # glibc's defaults fault every allocation in afresh
    assert tuned < default / 10


def test_allocator_environ__names_glibc_tunables_with_byte_values():
    assert set(ALLOCATOR_ENVIRON) == {
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_ARENA_MAX",
    }
    assert all(value.isdigit() for value in ALLOCATOR_ENVIRON.values())
