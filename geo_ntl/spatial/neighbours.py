"""Spatial weights between grid cells, as row-standardised libpysal Graphs.

Queen and rook contiguity come straight from the cells' lattice positions
(square cells: 8 or 4 neighbours; hexagons: the 6 cells sharing an edge, for
both), which equals geometric contiguity of the unclipped cells and takes
seconds for a million cells. k-nearest-neighbour and distance-band weights
are built by libpysal on the cell centroids. Cells left without a neighbour
(islands) are reported and left out of the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from geo_ntl import defaults
from geo_ntl.exceptions import InputError, ParameterError
from geo_ntl.spatial.grid import Grid

__all__ = [
    "DEFAULT_K",
    "DISTANCE_FACTOR",
    "WeightsMethod",
    "CellWeights",
    "build_weights",
    "graph_from_edges",
]

WeightsMethod = Literal["queen", "rook", "knn", "distance"]
#: Default number of neighbours for ``method="knn"``.
DEFAULT_K = defaults.CLUSTER_K
#: Default distance band, in cell sizes (1.5: the 8 queen neighbours of a square, 6 of a hexagon).
DISTANCE_FACTOR = 1.5

_SQUARE_ROOK = [(-1, 0), (1, 0), (0, -1), (0, 1)]
_SQUARE_QUEEN = _SQUARE_ROOK + [(-1, -1), (-1, 1), (1, -1), (1, 1)]
# odd-r offset hexagons: neighbour offsets for even and for odd rows
_HEX_EVEN = [(0, -1), (0, 1), (-1, -1), (-1, 0), (1, -1), (1, 0)]
_HEX_ODD = [(0, -1), (0, 1), (-1, 0), (-1, 1), (1, 0), (1, 1)]


@dataclass(frozen=True)
class CellWeights:
    """Row-standardised weights over the cells that have neighbours.

    Attributes
    ----------
    graph : libpysal.graph.Graph
        Row-standardised (transformation "R"); node ``i`` is ``cells[i]``.
    cells : (m,) ndarray of int64
        Positions (in the grid's cell table) of the graph's nodes, in order.
    islands : (k,) ndarray of int64
        Positions of cells that had no neighbour and were left out.
    method : str
        "queen", "rook", "knn" or "distance".
    k : int or None
        Neighbours per cell for knn.
    distance : float or None
        Band in metres for distance weights.
    """

    graph: Any
    cells: np.ndarray
    islands: np.ndarray
    method: str
    k: int | None = None
    distance: float | None = None


def graph_from_edges(focal: np.ndarray, neighbor: np.ndarray, n: int) -> Any:
    """Build a binary libpysal Graph on nodes ``0..n-1`` from edge arrays.

    Parameters
    ----------
    focal, neighbor : (e,) ndarray of int
        Directed edges; every node must appear as a focal at least once.
    n : int
        Number of nodes.

    Returns
    -------
    libpysal.graph.Graph
        Binary weights, ids ``0..n-1``.
    """
    import pandas as pd
    from libpysal.graph import Graph

    order = np.lexsort((neighbor, focal))
    focal, neighbor = np.asarray(focal)[order], np.asarray(neighbor)[order]
    index = pd.MultiIndex.from_arrays([focal, neighbor], names=["focal", "neighbor"])
    adjacency = pd.Series(np.ones(len(focal)), index=index, name="weight")
    return Graph(adjacency, transformation="B", is_sorted=True)


def _lattice_edges(grid: Grid, keep: np.ndarray, rook: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = grid.cells["row"].to_numpy()[keep]
    cols = grid.cells["col"].to_numpy()[keep] + grid.col_offset
    n_rows, n_cols = grid.lattice_shape
    lookup = np.full((n_rows + 2, n_cols + 2), -1, dtype=np.int64)  # padded: no bounds checks
    lookup[rows + 1, cols + 1] = np.arange(len(rows))
    focal, neighbor = [], []
    if grid.kind == "square":
        groups = [(np.ones(len(rows), dtype=bool), _SQUARE_ROOK if rook else _SQUARE_QUEEN)]
    else:
        odd = (rows & 1).astype(bool)
        groups = [(~odd, _HEX_EVEN), (odd, _HEX_ODD)]
    for select, offsets in groups:
        r, c, ids = rows[select], cols[select], np.flatnonzero(select)
        for dr, dc in offsets:
            other = lookup[r + dr + 1, c + dc + 1]
            found = other >= 0
            focal.append(ids[found])
            neighbor.append(other[found])
    return np.concatenate(focal), np.concatenate(neighbor)


def _point_edges(
    grid: Grid, keep: np.ndarray, method: str, k: int, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    import geopandas as gpd
    from libpysal.graph import Graph

    centroids = grid.cells.geometry.iloc[np.flatnonzero(keep)].centroid
    points = gpd.GeoSeries(
        centroids.to_numpy(), index=np.arange(len(centroids)), crs=grid.cells.crs
    )
    if method == "knn":
        built = Graph.build_knn(points, k=k)
    else:
        built = Graph.build_distance_band(points, distance, binary=True)
    adj = built.adjacency
    focal = adj.index.get_level_values(0).to_numpy().astype(np.int64)
    neighbor = adj.index.get_level_values(1).to_numpy().astype(np.int64)
    real = (focal != neighbor) & (adj.to_numpy() != 0)  # drop libpysal's isolate self-loops
    return focal[real], neighbor[real]


def build_weights(
    grid: Grid,
    *,
    method: WeightsMethod = "queen",
    k: int = DEFAULT_K,
    distance: float | None = None,
    include: np.ndarray | None = None,
) -> CellWeights:
    """Spatial weights between grid cells, row-standardised, islands removed.

    Parameters
    ----------
    grid : Grid
        The cells.
    method : {"queen", "rook", "knn", "distance"}, default "queen"
        Contiguity sharing an edge or corner (queen) or an edge (rook) — the
        same for hexagons —, the ``k`` nearest centroids, or all centroids
        within ``distance`` metres.
    k : int, default DEFAULT_K
        Neighbours per cell for ``"knn"``.
    distance : float, optional
        Band in metres for ``"distance"``; default ``DISTANCE_FACTOR * cell_size``.
    include : (n_cells,) ndarray of bool, optional
        Cells to take part (e.g. those holding valid pixels); default all.

    Returns
    -------
    CellWeights

    Raises
    ------
    ParameterError
        For an unknown method, ``k < 1`` or ``k`` >= the number of cells, or a
        distance that is not positive.
    InputError
        If fewer than 3 cells have neighbours.

    Notes
    -----
    Contiguity is that of the lattice: two kept cells are neighbours when
    their unclipped cells touch, also where an AOI boundary clips them apart.
    """
    if method not in ("queen", "rook", "knn", "distance"):
        raise ParameterError(f"weights must be one of queen, rook, knn, distance; got {method!r}")
    n_all = len(grid.cells)
    keep = np.ones(n_all, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    positions = np.flatnonzero(keep)
    n = len(positions)
    band = None
    if method in ("queen", "rook"):
        focal, neighbor = _lattice_edges(grid, keep, rook=method == "rook")
    else:
        if method == "knn" and not 1 <= k < n:
            raise ParameterError(
                f"k must be between 1 and {n - 1} (the number of cells - 1), got {k}"
            )
        band = grid.cell_size * DISTANCE_FACTOR if distance is None else float(distance)
        if method == "distance" and not band > 0:
            raise ParameterError(f"the distance band must be positive metres, got {distance}")
        focal, neighbor = _point_edges(grid, keep, method, k, band)
    has_neighbour = np.zeros(n, dtype=bool)
    has_neighbour[focal] = True
    islands = positions[~has_neighbour]
    if has_neighbour.sum() < 3:
        raise InputError(
            f"only {int(has_neighbour.sum())} cells have neighbours with {method} weights; "
            "use a smaller cell size, a larger `distance` or `k`, or knn weights",
            options={"`distance`": "distance", "`k`": "k"},
        )
    if islands.size:
        remap = np.full(n, -1, dtype=np.int64)
        remap[has_neighbour] = np.arange(int(has_neighbour.sum()))
        focal, neighbor = remap[focal], remap[neighbor]
        positions = positions[has_neighbour]
    graph = graph_from_edges(focal, neighbor, len(positions)).transform("r")
    return CellWeights(
        graph=graph,
        cells=positions,
        islands=islands,
        method=method,
        k=k if method == "knn" else None,
        distance=band if method == "distance" else None,
    )
