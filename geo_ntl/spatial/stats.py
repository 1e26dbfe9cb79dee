"""Global and local Moran's I (univariate and bivariate) with esda, reproducibly.

Global statistics are esda's :class:`esda.Moran` and :class:`esda.Moran_BV`.
They draw permutations from NumPy's global generator, so each call seeds it
with ``seed`` and restores the caller's generator state afterwards. Local
statistics (``Is``, quadrants) are :class:`esda.Moran_Local` and
:class:`esda.Moran_Local_BV`; their conditional-permutation pseudo p-values
come from :mod:`geo_ntl.spatial._crand`, which reproduces esda's engine in
O(n · permutations · k) instead of O(n²) (``engine="esda"`` runs esda's own).
The caller's weights are never modified: esda gets a row-standardised copy.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from geo_ntl import defaults
from geo_ntl.exceptions import InputError, ParameterError

__all__ = [
    "PERMUTATIONS",
    "DEFAULT_ALPHA",
    "QUADRANT_LABELS",
    "NOT_SIGNIFICANT",
    "GlobalStat",
    "LocalStat",
    "global_moran",
    "global_moran_bv",
    "local_moran",
    "local_moran_bv",
]

#: Default number of permutations (esda's; :data:`geo_ntl.defaults.CLUSTER_PERMUTATIONS`).
PERMUTATIONS = defaults.CLUSTER_PERMUTATIONS
#: Default significance level of the LISA labels.
DEFAULT_ALPHA = defaults.CLUSTER_ALPHA
#: esda quadrant code -> label (value of the focal variable, then of the neighbours' lag).
QUADRANT_LABELS = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}
#: Label of cells whose pseudo p-value is not below the threshold.
NOT_SIGNIFICANT = "ns"

Engine = Literal["geo_ntl", "esda"]


@dataclass(frozen=True)
class GlobalStat:
    """A global (bivariate) Moran's I test.

    Attributes
    ----------
    test : str
        "moran" or "moran_bv".
    x, y : str
        Variable names; for "moran" ``y`` is the variable and ``x`` is None;
        for "moran_bv" the statistic relates ``x`` to the spatial lag of ``y``.
    I : float
        The statistic.
    expected_I : float
        Expectation under spatial randomness: ``-1 / (n - 1)`` for "moran",
        the mean of the permuted statistics for "moran_bv" (esda gives no analytic one).
    z : float
        z-value against the permutation distribution (esda's ``z_sim``).
    p_sim : float
        Folded pseudo p-value from the permutations (esda's ``p_sim``).
    z_norm, p_norm : float or None
        Normal-approximation z and two-sided p ("moran" only).
    n, permutations, seed : int
    """

    test: str
    x: str | None
    y: str
    I: float  # noqa: E741 - the statistic's name
    expected_I: float
    z: float
    p_sim: float
    z_norm: float | None
    p_norm: float | None
    n: int
    permutations: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-ready)."""
        return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class LocalStat:
    """Local (bivariate) Moran's I: LISA values, pseudo p-values and cluster labels.

    Attributes
    ----------
    Is : (n,) ndarray
        Local statistics.
    q : (n,) ndarray of int
        esda quadrant: 1 HH, 2 LH, 3 LL, 4 HL.
    p_sim : (n,) ndarray
        Folded pseudo p-values from conditional permutations.
    labels : (n,) ndarray of str
        "HH", "LL", "HL", "LH", or "ns" where ``p_sim`` is not below ``threshold``.
    threshold : float
        ``alpha``, or the FDR cut-off of :func:`esda.fdr` when ``fdr`` is set.
    alpha : float
    fdr : bool
    permutations, seed : int
    """

    Is: np.ndarray
    q: np.ndarray
    p_sim: np.ndarray
    labels: np.ndarray
    threshold: float
    alpha: float
    fdr: bool
    permutations: int
    seed: int

    def counts(self) -> dict[str, int]:
        """Count the cells per label (all five labels present as keys)."""
        return {
            lab: int((self.labels == lab).sum())
            for lab in ("HH", "LL", "HL", "LH", NOT_SIGNIFICANT)
        }


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for one esda call, then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _as_graph(weights: Any) -> Any:
    """Return a row-standardised libpysal Graph copy of ``weights`` (Graph or W)."""
    from libpysal.graph import Graph
    from libpysal.weights import W

    if isinstance(weights, Graph):
        return weights.transform("r")  # always a new object
    if isinstance(weights, W):
        return Graph.from_W(weights).transform("r")
    raise ParameterError(
        f"weights must be a libpysal Graph or W, got {type(weights).__name__}; "
        "build them with geo_ntl.spatial.build_weights"
    )


def esda_moran(y: np.ndarray, graph: Any, *, permutations: int, seed: int) -> Any:
    """Return the :class:`esda.Moran` that :func:`global_moran` reads, seeded as it is.

    ``graph`` is a row-standardised Graph (see :func:`global_moran` for the checks on ``y``).
    """
    import esda

    with _seeded_global_rng(seed):
        return esda.Moran(y, graph, transformation="r", permutations=permutations)


def esda_moran_bv(x: np.ndarray, y: np.ndarray, graph: Any, *, permutations: int, seed: int) -> Any:
    """Return the :class:`esda.Moran_BV` that :func:`global_moran_bv` reads, seeded as it is."""
    import esda

    with _seeded_global_rng(seed):
        return esda.Moran_BV(x, y, graph, transformation="r", permutations=permutations)


def _check_variable(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} values but the weights have {n} cells")
    if not np.isfinite(arr).all():
        raise InputError(
            f"{name} holds {int((~np.isfinite(arr)).sum())} NaN/inf values; drop or fill them first"
        )
    if np.ptp(arr) == 0:
        raise InputError(
            f"{name} is constant over all {n} cells ({arr[0]:g}); Moran's I is undefined: "
            "check the input layer covers the scene or use a smaller cell size"
        )
    return arr


def _check_permutations(permutations: int) -> int:
    if int(permutations) < 1:
        raise ParameterError(
            f"permutations must be >= 1 (default {PERMUTATIONS}), got {permutations}"
        )
    return int(permutations)


def global_moran(
    y: Any, weights: Any, *, permutations: int = PERMUTATIONS, seed: int = 0, name: str = "y"
) -> GlobalStat:
    """Global Moran's I of one variable (:class:`esda.Moran`).

    Parameters
    ----------
    y : (n,) array_like
        Variable, aligned with the weights' nodes.
    weights : libpysal.graph.Graph or libpysal.weights.W
        Spatial weights; row-standardised internally on a copy.
    permutations : int, default PERMUTATIONS
        Random permutations for the pseudo p-value.
    seed : int, default 0
        Seed; the same seed gives the same result.
    name : str, default "y"
        Variable name recorded in the result.

    Returns
    -------
    GlobalStat

    Raises
    ------
    InputError
        If ``y`` has the wrong length, NaNs, or no variance.

    Examples
    --------
    >>> import numpy as np
    >>> from libpysal.graph import Graph
    >>> from libpysal.weights import lat2W
    >>> g = Graph.from_W(lat2W(5, 5))
    >>> y = np.arange(25.0)
    >>> round(global_moran(y, g, permutations=99).I, 3)
    0.84
    """
    graph = _as_graph(weights)
    arr = _check_variable(y, graph.n, name)
    mi = esda_moran(arr, graph, permutations=_check_permutations(permutations), seed=seed)
    return GlobalStat(
        test="moran",
        x=None,
        y=name,
        I=float(mi.I),
        expected_I=float(mi.EI),
        z=float(mi.z_sim),
        p_sim=float(mi.p_sim),
        z_norm=float(mi.z_norm),
        p_norm=float(mi.p_norm),
        n=int(mi.n),
        permutations=int(permutations),
        seed=int(seed),
    )


def global_moran_bv(
    x: Any,
    y: Any,
    weights: Any,
    *,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    names: tuple[str, str] = ("x", "y"),
) -> GlobalStat:
    """Bivariate global Moran's I of ``x`` with the spatial lag of ``y`` (:class:`esda.Moran_BV`).

    Parameters
    ----------
    x, y : (n,) array_like
        Variables (e.g. night light and road density), aligned with the weights.
    weights : libpysal.graph.Graph or libpysal.weights.W
        Spatial weights; row-standardised internally on a copy.
    permutations : int, default PERMUTATIONS
    seed : int, default 0
    names : (str, str), default ("x", "y")

    Returns
    -------
    GlobalStat
        Positive ``I``: high ``x`` sits among high ``y`` (co-location);
        negative: high ``x`` among low ``y`` (dispersion).
    """
    graph = _as_graph(weights)
    ax = _check_variable(x, graph.n, names[0])
    ay = _check_variable(y, graph.n, names[1])
    mb = esda_moran_bv(ax, ay, graph, permutations=_check_permutations(permutations), seed=seed)
    return GlobalStat(
        test="moran_bv",
        x=names[0],
        y=names[1],
        I=float(mb.I),
        expected_I=float(mb.EI_sim),
        z=float(mb.z_sim),
        p_sim=float(mb.p_sim),
        z_norm=None,
        p_norm=None,
        n=len(ax),
        permutations=int(permutations),
        seed=int(seed),
    )


def _labels(q: np.ndarray, p_sim: np.ndarray, alpha: float, fdr: bool) -> tuple[np.ndarray, float]:
    import esda

    if not 0 < alpha < 1:
        raise ParameterError(f"alpha must be in (0, 1), got {alpha}")
    threshold = float(esda.fdr(p_sim, alpha)) if fdr else float(alpha)
    labels = np.array([QUADRANT_LABELS[int(v)] for v in range(1, 5)], dtype=object)[
        np.asarray(q, int) - 1
    ]
    labels[~(p_sim < threshold)] = NOT_SIGNIFICANT
    return labels.astype(str), threshold


def esda_moran_local(
    x: np.ndarray | None,
    y: np.ndarray,
    graph: Any,
    *,
    permutations: int,
    seed: int,
    n_jobs: int = 1,
) -> Any:
    """Return an :class:`esda.Moran_Local` (``x`` None) or :class:`esda.Moran_Local_BV`.

    With ``permutations=0`` esda computes the statistics and quadrants only; the pseudo
    p-values then come from :mod:`geo_ntl.spatial._crand` (see :func:`local_moran`).
    """
    import esda

    common = {
        "transformation": "r",
        "permutations": permutations,
        "seed": seed,
        "keep_simulations": permutations > 0,
        "n_jobs": n_jobs,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # esda's notice about 'alternative'
        if x is None:
            return esda.Moran_Local(y, graph, **common)
        return esda.Moran_Local_BV(x, y, graph, **common)


def _local(
    x: np.ndarray | None,
    y: np.ndarray,
    graph: Any,
    *,
    permutations: int,
    seed: int,
    alpha: float,
    fdr: bool,
    n_jobs: int,
    engine: Engine,
) -> LocalStat:
    from geo_ntl.spatial._crand import local_pvalues

    permutations = _check_permutations(permutations)
    if engine not in ("geo_ntl", "esda"):
        raise ParameterError(f"engine must be 'geo_ntl' or 'esda', got {engine!r}")
    n_perm = permutations if engine == "esda" else 0
    ml = esda_moran_local(x, y, graph, permutations=n_perm, seed=seed, n_jobs=n_jobs)
    zf, zn = (ml.z, ml.z) if x is None else (ml.zx, ml.zy)
    if engine == "esda":
        p_sim = np.asarray(ml.p_sim, dtype=np.float64)
    else:
        p_sim = local_pvalues(
            zf, zn, ml.Is, graph.sparse, permutations=permutations, seed=seed, n_jobs=n_jobs
        )
    labels, threshold = _labels(ml.q, p_sim, alpha, fdr)
    return LocalStat(
        Is=np.asarray(ml.Is, dtype=np.float64),
        q=np.asarray(ml.q, dtype=np.int64),
        p_sim=p_sim,
        labels=labels,
        threshold=threshold,
        alpha=float(alpha),
        fdr=bool(fdr),
        permutations=permutations,
        seed=int(seed),
    )


def local_moran(
    y: Any,
    weights: Any,
    *,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    fdr: bool = False,
    n_jobs: int = 1,
    engine: Engine = "geo_ntl",
    name: str = "y",
) -> LocalStat:
    """Local Moran's I (LISA) with conditional-permutation pseudo p-values and labels.

    Parameters
    ----------
    y : (n,) array_like
        Variable aligned with the weights' nodes.
    weights : libpysal.graph.Graph or libpysal.weights.W
        Spatial weights; row-standardised internally on a copy.
    permutations : int, default PERMUTATIONS
    seed : int, default 0
        Seed of the permutation table; the same seed gives the same p-values.
    alpha : float, default DEFAULT_ALPHA
        Significance level of the labels.
    fdr : bool, default False
        Use the false-discovery-rate cut-off :func:`esda.fdr` instead of ``alpha``.
    n_jobs : int, default 1
        Threads for the permutations (-1: all cores); results do not depend on it.
    engine : {"geo_ntl", "esda"}, default "geo_ntl"
        Permutation engine: geo_ntl's O(n·P·k) kernel, or esda's own (O(n²),
        small inputs only). Both give esda's statistic and quadrants; given
        the same permutation table they give the same p-values.
    name : str, default "y"

    Returns
    -------
    LocalStat
    """
    graph = _as_graph(weights)
    arr = _check_variable(y, graph.n, name)
    return _local(
        None,
        arr,
        graph,
        permutations=permutations,
        seed=seed,
        alpha=alpha,
        fdr=fdr,
        n_jobs=n_jobs,
        engine=engine,
    )


def local_moran_bv(
    x: Any,
    y: Any,
    weights: Any,
    *,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    fdr: bool = False,
    n_jobs: int = 1,
    engine: Engine = "geo_ntl",
    names: tuple[str, str] = ("x", "y"),
) -> LocalStat:
    """Bivariate LISA of ``x`` against the spatial lag of ``y`` (:class:`esda.Moran_Local_BV`).

    Parameters are those of :func:`local_moran`, with two variables. Label
    "HH" marks a cell with high ``x`` whose neighbours have high ``y``;
    "HL" high ``x`` among low ``y``, and so on.

    Returns
    -------
    LocalStat
    """
    graph = _as_graph(weights)
    ax = _check_variable(x, graph.n, names[0])
    ay = _check_variable(y, graph.n, names[1])
    return _local(
        ax,
        ay,
        graph,
        permutations=permutations,
        seed=seed,
        alpha=alpha,
        fdr=fdr,
        n_jobs=n_jobs,
        engine=engine,
    )
