"""Per-cell aggregation: night light from the raster, road density and permeable fraction.

Night light streams over the dask chunks of the raster: each chunk is reduced
to per-cell sums and pixel counts (``numpy.add.reduceat`` along rows then
columns for square cells, a per-pixel cell index and ``numpy.bincount`` for
hexagons), and the small per-chunk results are added into one lattice-sized
accumulator. Only a few chunks are in memory at a time.

Roads and permeable surfaces are intersected exactly with the cell polygons
(shapely, vectorised over an STR-tree query).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from geo_ntl._runs import run_starts, sum_runs
from geo_ntl.exceptions import AllNoDataError, ParameterError
from geo_ntl.radiometry import Calibration
from geo_ntl.spatial.grid import Grid

__all__ = [
    "LUMA_WEIGHTS",
    "DEFAULT_BLOCK_BATCH",
    "RadianceMode",
    "NightLight",
    "aggregate_night_light",
    "road_density",
    "permeable_fraction",
]

RadianceMode = Literal["mean", "luma"]
#: Rec. 601 luma weights of (R, G, B) for ``radiance="luma"``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Chunks reduced per dask.compute call; bounds how much is read ahead.
DEFAULT_BLOCK_BATCH = 32
_M2_PER_KM2 = 1.0e6


@dataclass(frozen=True)
class NightLight:
    """Per-cell night light.

    Attributes
    ----------
    mean : (n_cells,) ndarray of float64
        Mean pixel value of the valid pixels whose centre lies in the cell (NaN if none):
        DN, or radiance when a calibration was given.
    sum : (n_cells,) ndarray of float64
        Sum of the values of those pixels.
    count : (n_cells,) ndarray of int64
        Number of valid pixels.
    """

    mean: np.ndarray
    sum: np.ndarray
    count: np.ndarray


def _radiance(
    block: np.ndarray,
    mode: RadianceMode,
    nodata: float | None,
    calibration: Calibration | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel value (DN, or calibrated radiance) and validity of a ``(band, y, x)`` block."""
    from geo_ntl.io import nodata_mask

    data = block.astype(np.float64, copy=False)
    if calibration is not None:
        data = calibration.to_radiance(data)  # per band, before the bands are combined
    if mode == "luma":
        w = np.asarray(LUMA_WEIGHTS)[:, None, None]
        rad = (data[:3] * w).sum(axis=0)
    else:
        rad = data.mean(axis=0)
    valid = np.isfinite(rad)
    mask = nodata_mask(block, nodata)
    if mask is not None:
        valid &= ~mask
    return np.where(valid, rad, 0.0), valid


def _pixel_centres(grid: Grid, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a chunk's pixels in the analysis CRS, broadcastable to ``(h, w)``."""
    t = grid.frame.transform
    xs = t.c + (x0 + np.arange(w) + 0.5) * t.a
    ys = t.f + (y0 + np.arange(h) + 0.5) * t.e
    if not grid.frame.reprojected:
        return xs[None, :], ys[:, None]
    X, Y = np.meshgrid(xs, ys)
    return grid.frame.to_analysis(X, Y)


def _aoi_valid(grid: Grid, y0: int, x0: int, h: int, w: int) -> np.ndarray | None:
    """Pixels of a chunk whose centre lies inside the AOI (exact point-in-polygon)."""
    if grid.aoi is None:
        return None
    import shapely

    shapely.prepare(grid.aoi)
    X, Y = np.broadcast_arrays(*_pixel_centres(grid, y0, x0, h, w))
    left, bottom, right, top = grid.aoi.bounds
    inside = np.zeros((h, w), dtype=bool)
    near = (X >= left) & (X <= right) & (Y >= bottom) & (Y <= top)
    if near.any():
        inside[near] = shapely.contains_xy(grid.aoi, X[near], Y[near])
    return inside


def _reduce_block(
    block: np.ndarray,
    y0: int,
    x0: int,
    *,
    grid: Grid,
    mode: RadianceMode,
    nodata: float | None,
    calibration: Calibration | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lattice-cell (flat index, value sum, valid count) for one chunk."""
    _, h, w = block.shape
    rad, valid = _radiance(block, mode, nodata, calibration)
    inside = _aoi_valid(grid, y0, x0, h, w)
    if inside is not None:
        valid &= inside
        rad = np.where(inside, rad, 0.0)
    xs, ys = _pixel_centres(grid, y0, x0, h, w)
    n_cols = grid.lattice_shape[1]
    if grid.kind == "square" and not grid.frame.reprojected:
        # rows follow y and columns x alone: reduce runs of pixels that share a cell
        xs, ys = xs[0], ys[:, 0]
        rows, _ = grid.lattice_of_points(np.zeros_like(ys), ys)
        _, cols = grid.lattice_of_points(xs, np.zeros_like(xs))
        rs, cs = run_starts(rows), run_starts(cols)
        sums = sum_runs(rad, rs, cs)
        counts = sum_runs(valid.astype(np.int64), rs, cs)
        flat = rows[rs][:, None] * n_cols + cols[cs][None, :]
        return flat.ravel(), sums.ravel(), counts.ravel()
    rows, cols = np.broadcast_arrays(*grid.lattice_of_points(xs, ys))
    n_rows = grid.lattice_shape[0]
    # pixels of a reprojected raster may fall outside the lattice: they belong to no cell
    inside_lattice = (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    flat = np.where(inside_lattice, rows * n_cols + cols, -1).ravel()
    keep = flat >= 0
    if not keep.any():
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty.astype(np.int64)
    flat, rad_kept, valid_kept = flat[keep], rad.ravel()[keep], valid.ravel()[keep]
    lo = int(flat.min())
    local = flat - lo
    sums = np.bincount(local, weights=rad_kept, minlength=0)
    counts = np.bincount(local, weights=valid_kept.astype(np.float64)).astype(np.int64)
    present = np.flatnonzero(np.bincount(local))
    return present + lo, sums[present], counts[present]


def aggregate_night_light(
    da: Any,
    grid: Grid,
    *,
    radiance: RadianceMode = "mean",
    batch: int = DEFAULT_BLOCK_BATCH,
    calibration: Calibration | None = None,
) -> NightLight:
    """Mean and sum of night light per cell, streamed over the raster's dask chunks.

    Parameters
    ----------
    da : xarray.DataArray
        ``(band, y, x)`` night-light raster (dask- or numpy-backed), the one
        ``grid`` was built on.
    grid : Grid
        Cells from :func:`geo_ntl.spatial.grid.make_grid`.
    radiance : {"mean", "luma"}, default "mean"
        How bands combine into one value per pixel: ``"mean"`` is the mean
        of all bands (the band itself for a panchromatic raster); ``"luma"``
        is Rec. 601 luma ``0.299 R + 0.587 G + 0.114 B`` of bands 1-3.
        Values are in the raster's units (DN for Jilin-1 products), times
        ``attrs["scale_factor"]`` plus ``attrs["add_offset"]`` when set.
    batch : int, default DEFAULT_BLOCK_BATCH
        Chunks reduced per ``dask.compute`` call; memory holds about this many
        chunks at most.
    calibration : Calibration, optional
        Convert each band's DN to radiance (:class:`geo_ntl.radiometry.Calibration`)
        before the bands are combined; without it the values stay DN.

    Returns
    -------
    NightLight
        Arrays aligned with ``grid.cells``.

    Raises
    ------
    AllNoDataError
        If no cell holds a valid pixel.
    ParameterError
        If ``radiance`` is unknown or "luma" is asked of a raster with fewer than 3 bands.

    Notes
    -----
    A pixel is valid when not all of its bands equal the nodata value, its
    value is finite and (with an AOI) its centre is inside the AOI.
    Memory: one lattice-sized float64 accumulator plus ``batch`` chunks.
    """
    import dask
    import dask.array as dsa

    if radiance not in ("mean", "luma"):
        raise ParameterError(f"radiance must be 'mean' or 'luma', got {radiance!r}")
    arr = da if "band" in da.dims else da.expand_dims("band")
    arr = arr.transpose("band", "y", "x")
    if radiance == "luma" and arr.sizes["band"] < 3:
        raise ParameterError(
            f"radiance='luma' needs R, G and B bands; the raster has {arr.sizes['band']}: "
            "use 'mean'"
        )
    nodata = da.rio.nodata
    data = arr.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=(-1, 1024, 1024))
    if data.numblocks[0] != 1:
        data = data.rechunk({0: -1})
    n_rows, n_cols = grid.lattice_shape
    acc_sum = np.zeros(n_rows * n_cols, dtype=np.float64)
    acc_cnt = np.zeros(n_rows * n_cols, dtype=np.int64)
    y_offsets = np.concatenate([[0], np.cumsum(data.chunks[1])[:-1]])
    x_offsets = np.concatenate([[0], np.cumsum(data.chunks[2])[:-1]])
    blocks = data.to_delayed()[0]
    reduce = dask.delayed(_reduce_block, pure=True)
    # the tasks need only the lattice geometry: leave the cell table out so dask does not hash it
    lattice = dataclasses.replace(grid, cells=None, lookup=np.empty((0, 0), dtype=np.int64))
    tasks = [
        reduce(
            blocks[i, j],
            int(y_offsets[i]),
            int(x_offsets[j]),
            grid=lattice,
            mode=radiance,
            nodata=nodata,
            calibration=calibration,
        )
        for i in range(blocks.shape[0])
        for j in range(blocks.shape[1])
    ]
    for start in range(0, len(tasks), max(1, batch)):
        for flat, sums, counts in dask.compute(*tasks[start : start + batch]):
            inside = (flat >= 0) & (flat < acc_sum.size)
            np.add.at(acc_sum, flat[inside], sums[inside])
            np.add.at(acc_cnt, flat[inside], counts[inside])
    rows = grid.cells["row"].to_numpy()
    cols = grid.cells["col"].to_numpy() + grid.col_offset
    flat = rows * n_cols + cols
    total, count = acc_sum[flat], acc_cnt[flat]
    if not count.any():
        raise AllNoDataError(
            f"no cell holds a valid pixel of {da.attrs.get('source', 'the raster')} "
            f"(nodata={nodata}); check the raster, its nodata value or the AOI"
        )
    scale = float(da.attrs.get("scale_factor", 1.0) or 1.0)
    offset = float(da.attrs.get("add_offset", 0.0) or 0.0)
    total = total * scale + offset * count
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return NightLight(mean=mean, sum=total, count=count)


def _cell_geometries(grid: Grid) -> np.ndarray:
    return np.asarray(grid.cells.geometry.array, dtype=object)


def road_density(
    roads: Any,
    grid: Grid,
    *,
    class_weights: Mapping[str, float] | None = None,
    class_column: str = "highway",
    default_weight: float = 1.0,
) -> np.ndarray:
    """Road length per cell area in metres per km², from exact line clipping.

    Parameters
    ----------
    roads : geopandas.GeoDataFrame
        Road lines in the grid's CRS (see :func:`~geo_ntl.spatial.vectors.read_vector`).
    grid : Grid
        The cells.
    class_weights : mapping of str to float, optional
        Weight per road class (value of ``class_column``), e.g.
        ``{"primary": 2, "footway": 0.5}``; the density is then the weighted
        length per km². Classes not listed get ``default_weight``.
    class_column : str, default "highway"
        Column holding the class (OpenStreetMap's key by default).
    default_weight : float, default 1.0
        Weight of roads whose class is not in ``class_weights``.

    Returns
    -------
    (n_cells,) ndarray of float64

    Raises
    ------
    ParameterError
        If ``class_weights`` is given but ``class_column`` is missing, or a weight is negative.

    Notes
    -----
    A stretch of road lying exactly on the edge shared by two cells is split
    evenly between them (counted half in each) so no length is counted twice;
    on the outer edge of the grid it counts fully in its one cell.
    """
    import shapely

    lines = np.asarray(roads.geometry.array, dtype=object)
    weights = np.ones(len(lines))
    if class_weights is not None:
        if class_column not in roads.columns:
            raise ParameterError(
                f"road class weights need the column {class_column!r}, which the roads layer lacks "
                f"(columns: {', '.join(map(str, roads.columns))})"
            )
        bad = {
            k: v
            for k, v in class_weights.items()
            if not (float(v) >= 0 and math.isfinite(float(v)))
        }
        if bad:
            raise ParameterError(f"road class weights must be finite and >= 0, got {bad}")
        classes = roads[class_column].astype(str).to_numpy()
        weights = np.array([float(class_weights.get(c, default_weight)) for c in classes])
    cells = _cell_geometries(grid)
    length = np.zeros(len(cells))
    if len(lines):
        tree = shapely.STRtree(cells)
        line_idx, cell_idx = tree.query(lines, predicate="intersects")
        pieces = shapely.intersection(lines[line_idx], cells[cell_idx])
        piece_len = shapely.length(pieces)
        on_edge = shapely.intersection(pieces, shapely.boundary(cells[cell_idx]))
        edge_len = shapely.length(on_edge)
        shared = np.flatnonzero(edge_len > 0)
        if shared.size:
            # how many cells hold each boundary stretch: 2 on an inner edge, 1 on the outer edge
            seg_idx, _ = tree.query(on_edge[shared], predicate="covered_by")
            holders = np.bincount(seg_idx, minlength=shared.size).clip(min=1)
            piece_len[shared] -= edge_len[shared] * (1.0 - 1.0 / holders)
        np.add.at(length, cell_idx, piece_len * weights[line_idx])
    area_km2 = grid.cells["area_m2"].to_numpy() / _M2_PER_KM2
    return length / area_km2


def permeable_fraction(polygons: Any, grid: Grid) -> np.ndarray:
    """Fraction of each cell's area covered by permeable surfaces (exact overlay).

    Parameters
    ----------
    polygons : geopandas.GeoDataFrame
        Permeable-surface polygons in the grid's CRS. Overlapping polygons
        (a park containing a lawn) are merged first, so no area counts twice.
    grid : Grid
        The cells.

    Returns
    -------
    (n_cells,) ndarray of float64 in [0, 1]
    """
    import shapely

    cells = _cell_geometries(grid)
    covered = np.zeros(len(cells))
    geoms = np.asarray(polygons.geometry.array, dtype=object)
    if len(geoms):
        tree = shapely.STRtree(cells)
        # merge overlapping polygons so no area counts twice
        merged = shapely.get_parts(shapely.union_all(geoms))
        poly_idx, cell_idx = tree.query(merged, predicate="intersects")
        pieces = shapely.intersection(merged[poly_idx], cells[cell_idx])
        np.add.at(covered, cell_idx, shapely.area(pieces))
    area = grid.cells["area_m2"].to_numpy()
    return np.clip(covered / area, 0.0, 1.0)
