"""Keep glibc's allocator from handing every large temporary back to the kernel.

The restoration stages allocate and free tensors of tens of megabytes per tile
(a 1504^2 x 3 float32 block is 27 MB). With glibc's defaults such a block is
either a fresh ``mmap`` (above the mmap threshold, which adapts only up to
32 MB) or carved from a heap that is trimmed, or -- in a thread's own arena,
whose heaps are at most 64 MB -- unmapped, as soon as it is free; either way
the next tile's block faults its pages in again, and the kernel zeroes every
page. Measured on one 1024^2 tile of the ASM enhancer (1504^2 with its halo),
in a worker thread, side by side: 400 -> 365 ms and 414 -> 378 ms per tile,
system time 44 -> 0 ms per tile.

:data:`ALLOCATOR_ENVIRON` is what geo_ntl puts into the environment of the
worker processes it starts; :func:`tune_allocator` sets the same at run time
in the current process (``geo-ntl`` calls it first thing). Elsewhere than
glibc (macOS, Windows, musl) both do nothing.

The price is that freed memory stays with the process (up to
:data:`TRIM_THRESHOLD` bytes at the top of the heap) for the next tile to
reuse, instead of going back to the kernel between tiles: peak memory is
unchanged (see the memory figures in ``benchmarks/RESULTS.md``), resident
memory between tiles is nearer the peak.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = [
    "ALLOCATOR_ENVIRON",
    "ARENA_MAX",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "tune_allocator",
]

#: Allocations up to this size come from the heap (reused) instead of a fresh ``mmap``.
MMAP_THRESHOLD = 256 * 2**20
#: Free memory at the top of the heap is returned to the kernel only beyond this size.
TRIM_THRESHOLD = 2**30
#: One arena for all threads: a thread's own arena grows in heaps of at most 64 MB,
#: which a few tile-sized blocks overflow (and which are unmapped once empty).
ARENA_MAX = 1

#: Environment for worker processes, read by glibc when the process starts.
ALLOCATOR_ENVIRON: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    "MALLOC_ARENA_MAX": str(ARENA_MAX),
}

# mallopt(3) parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # glibc's soname on every Linux architecture it supports; opening it by name avoids
        # ctypes.util.find_library, which runs ldconfig or a compiler.
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (not in musl)
        libc.mallopt  # noqa: B018 - raises AttributeError where mallopt is missing
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Set :data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD` and :data:`ARENA_MAX` in this process.

    Call it before the work starts: threads that have allocated already keep
    their arena. Calling it again changes nothing.

    Returns
    -------
    bool
        True if glibc accepted every setting; False where the C library is not
        glibc (nothing is changed there).

    Examples
    --------
    >>> from geo_ntl.allocator import tune_allocator
    >>> tune_allocator() in (True, False)
    True
    """
    libc = _glibc()
    if libc is None:
        return False
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_ARENA_MAX, ARENA_MAX),
    )
    return all(
        libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in settings
    )
