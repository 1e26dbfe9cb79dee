"""Conditional-permutation inference for local Moran statistics, O(n · permutations · k).

esda's engine (``esda.crand``) rebuilds the whole value array without site
``i`` for every site (``z[mask]``), which is O(n²): hours for a million
cells. It draws one table of permuted ids from ``n - 1`` sites, shared by all
sites, and reads id ``j`` as site ``j`` when ``j < i`` and ``j + 1``
otherwise. This module does the same with that shift instead of the copy, so
given the same table it returns esda's pseudo p-values (``tests/test_spatial.py``
checks this against ``esda.Moran_Local``); by default the table comes from a
``numpy.random.default_rng(seed)`` generator, since esda's numba draw is itself
O(n) per permutation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_permuted_ids", "local_pvalues"]

_BLOCK = 256

try:  # numba is optional: the numpy path is slower but gives the same numbers
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_NUMBA = False


def draw_permuted_ids(n: int, max_card: int, permutations: int, seed: int) -> np.ndarray:
    """Draw ``permutations`` rows of ``max_card`` distinct ids from ``range(n - 1)``.

    Parameters
    ----------
    n : int
        Number of sites.
    max_card : int
        Largest number of neighbours of a site.
    permutations : int
        Number of rows.
    seed : int
        Seed of a local ``numpy.random.Generator``.

    Returns
    -------
    (permutations, max_card) ndarray of int64
    """
    rng = np.random.default_rng(seed)
    size = min(max_card, n - 1)
    out = np.empty((permutations, max(size, 1)), dtype=np.int64)
    for k in range(permutations):
        out[k, :size] = rng.choice(n - 1, size=size, replace=False)
    return out


def _folded(larger: np.ndarray, permutations: int) -> np.ndarray:
    larger = np.where(permutations - larger < larger, permutations - larger, larger)
    return (larger + 1.0) / (permutations + 1.0)


def _larger_numpy(zf, zn, observed, indptr, indices, data, self_w, ids, scaling):
    n = zf.shape[0]
    permutations, kmax = ids.shape
    below = zn[ids]
    above = zn[np.minimum(ids + 1, n - 1)]
    card = np.diff(indptr)
    larger = np.zeros(n, dtype=np.int64)
    cols = np.arange(kmax)
    for start in range(0, n, _BLOCK):
        sites = np.arange(start, min(start + _BLOCK, n))
        take = cols[None, :] < card[sites, None]
        pos = np.where(take, indptr[sites, None] + cols[None, :], 0)
        w = np.where(take, data[pos], 0.0)  # (b, kmax)
        vals = np.where(ids[None, :, :] < sites[:, None, None], below[None], above[None])
        lag = np.einsum("bpk,bk->bp", vals, w) + (self_w[sites] * zn[sites])[:, None]
        stat = zf[sites, None] * lag * scaling
        larger[sites] = (stat >= observed[sites, None]).sum(axis=1)
    return larger


if HAVE_NUMBA:

    @njit(parallel=True, cache=True)
    def _larger_numba(
        zf, zn, observed, indptr, indices, data, self_w, ids, scaling
    ):  # pragma: no cover
        n = zf.shape[0]
        permutations, kmax = ids.shape
        below = np.empty((permutations, kmax))
        above = np.empty((permutations, kmax))
        for p in range(permutations):
            for j in range(kmax):
                below[p, j] = zn[ids[p, j]]
                above[p, j] = zn[min(ids[p, j] + 1, n - 1)]
        larger = np.zeros(n, dtype=np.int64)
        n_chunks = (n + 1023) // 1024
        for c in prange(n_chunks):
            for i in range(c * 1024, min(n, (c + 1) * 1024)):
                start = indptr[i]
                card = indptr[i + 1] - start
                count = 0
                for p in range(permutations):
                    acc = 0.0
                    for j in range(card):
                        v = below[p, j] if ids[p, j] < i else above[p, j]
                        acc += v * data[start + j]
                    stat = zf[i] * (acc + self_w[i] * zn[i]) * scaling
                    if stat >= observed[i]:
                        count += 1
                larger[i] = count
        return larger


def local_pvalues(
    z_focal: np.ndarray,
    z_neighbour: np.ndarray,
    observed: np.ndarray,
    sparse_weights: object,
    *,
    permutations: int,
    seed: int,
    permuted_ids: np.ndarray | None = None,
    n_jobs: int = 1,
) -> np.ndarray:
    """Folded pseudo p-values of local Moran statistics by conditional permutation.

    Parameters
    ----------
    z_focal : (n,) ndarray
        Standardised focal variable (``x`` of a bivariate statistic, else ``y``).
    z_neighbour : (n,) ndarray
        Standardised variable whose spatial lag is permuted.
    observed : (n,) ndarray
        Observed local statistics.
    sparse_weights : scipy sparse matrix
        Row-standardised weights, ``n x n``. Not modified.
    permutations : int
        Number of permutations.
    seed : int
        Seed for the permuted-id table (ignored when ``permuted_ids`` is given).
    permuted_ids : (permutations, max_card) ndarray of int, optional
        A ready table, e.g. from ``esda.crand.vec_permutations`` to reproduce esda.
    n_jobs : int, default 1
        Threads for the numba kernel (-1: all cores). Results do not depend on it.

    Returns
    -------
    (n,) ndarray of float64
        ``(min(M, P - M) + 1) / (P + 1)`` with ``M`` the number of permuted
        statistics >= the observed one (esda's default, "directed").
    """
    import scipy.sparse as sp

    csr = sp.csr_matrix(sparse_weights, dtype=np.float64, copy=True)
    self_w = csr.diagonal().astype(np.float64)
    csr.setdiag(0)
    csr.eliminate_zeros()
    csr.sort_indices()
    n = csr.shape[0]
    z_neighbour = np.ascontiguousarray(z_neighbour, dtype=np.float64)
    z_focal = np.ascontiguousarray(z_focal, dtype=np.float64)
    observed = np.ascontiguousarray(observed, dtype=np.float64)
    scaling = (n - 1) / float((z_focal * z_focal).sum())
    max_card = max(int(np.diff(csr.indptr).max()), 1)
    if permuted_ids is None:
        ids = draw_permuted_ids(n, max_card, permutations, seed)
    else:
        ids = np.ascontiguousarray(permuted_ids, dtype=np.int64)
    args = (
        z_focal,
        z_neighbour,
        observed,
        csr.indptr.astype(np.int64),
        csr.indices.astype(np.int64),
        csr.data,
        self_w,
        ids,
        scaling,
    )
    if HAVE_NUMBA:
        import numba

        most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        threads = most if n_jobs == -1 else max(1, min(n_jobs, most))
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            larger = _larger_numba(*args)
        finally:
            numba.set_num_threads(previous)
    else:
        larger = _larger_numpy(*args)
    return _folded(larger, ids.shape[0])
