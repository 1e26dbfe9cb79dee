"""Sums over runs of equal labels along the last two axes of an array (block reductions).

Both the per-cell aggregation of night light (:mod:`geo_ntl.spatial.aggregate`)
and the enhancer's scene statistics (:mod:`geo_ntl.enhance.stats`) reduce a
chunk of pixels onto blocks anchored at the scene origin: each pixel row and
column has a block label that never decreases, so a block is a run of equal
labels and ``numpy.add.reduceat`` at the run starts sums it in one pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_starts", "sum_runs"]


def run_starts(labels: np.ndarray) -> np.ndarray:
    """Return where each run of equal values starts in a 1-D non-decreasing label array."""
    return np.concatenate([[0], np.flatnonzero(np.diff(labels)) + 1])


def sum_runs(
    values: np.ndarray,
    row_starts: np.ndarray,
    col_starts: np.ndarray,
    *,
    dtype: np.dtype | type | None = None,
) -> np.ndarray:
    """Sum ``values`` (…, h, w) over the blocks that the row and column runs delimit.

    Parameters
    ----------
    values : ndarray
        Array whose last two axes are rows and columns.
    row_starts, col_starts : ndarray
        Run starts from :func:`run_starts`.
    dtype : numpy dtype, optional
        Accumulator type (e.g. float64 for float32 input).

    Returns
    -------
    ndarray
        ``(…, len(row_starts), len(col_starts))`` block sums.
    """
    # Rows: one reduction per run of rows. ``numpy.add.reduceat`` along the row axis gives the
    # same sums (both add the rows in order) but measured 5-14x slower on 1-4 MP chunks.
    bounds = np.append(row_starts, values.shape[-2])
    first: np.ndarray = np.sum(values[..., bounds[0] : bounds[1], :], axis=-2, dtype=dtype)
    rows = np.empty((*first.shape[:-1], len(row_starts), first.shape[-1]), dtype=first.dtype)
    rows[..., 0, :] = first
    for k in range(1, len(row_starts)):
        np.sum(values[..., bounds[k] : bounds[k + 1], :], axis=-2, dtype=dtype, out=rows[..., k, :])
    # Columns: the row sums are small, where reduceat is fast.
    return np.add.reduceat(rows, col_starts, axis=-1)
