"""Counter-based random numbers tied to global pixel positions.

Rendering the same city on two overlapping grids must give the same pixels in
the overlap, so per-pixel randomness (which windows are lit) is a hash of the
pixel's global (row, col) on the grid rather than a draw from a generator.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def grid_uniform(rows: np.ndarray, cols: np.ndarray, *, salt: int) -> np.ndarray:
    """Uniform [0, 1) numbers that depend only on (row, col, salt).

    Parameters
    ----------
    rows, cols : ndarray of int
        Global grid indices (broadcastable; may be negative).
    salt : int
        Stream selector (e.g. a seed).

    Returns
    -------
    ndarray of float32
    """
    with np.errstate(over="ignore"):
        r = np.asarray(rows, dtype=np.int64).astype(np.uint64)
        c = np.asarray(cols, dtype=np.int64).astype(np.uint64)
        z = _splitmix64(np.uint64(salt % 2**63) ^ _splitmix64(r ^ _splitmix64(c)))
    return ((z >> np.uint64(40)).astype(np.float64) / float(2**24)).astype(np.float32)
