"""Analysis grids aligned to a raster: square or hexagonal cells of a size in metres.

A grid is anchored at the raster's upper-left corner, so square cells whose
size is a multiple of the pixel size hold whole pixels. Pixels belong to the
cell that contains their centre; cells are clipped to the raster footprint
(and to an optional area of interest), and cells that keep less than
``min_coverage`` of a full cell's area are dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from affine import Affine

from geo_ntl import defaults
from geo_ntl.exceptions import InputError, ParameterError

__all__ = [
    "DEFAULT_CELL_SIZE",
    "DEFAULT_MIN_COVERAGE",
    "MIN_CELLS",
    "GridKind",
    "Grid",
    "make_grid",
    "raster_frame",
]

#: Default cell size in metres (:data:`geo_ntl.defaults.CLUSTER_CELL_SIZE`).
DEFAULT_CELL_SIZE = defaults.CLUSTER_CELL_SIZE
#: Cells that keep less than this fraction of a full cell's area are dropped.
DEFAULT_MIN_COVERAGE = 0.5
#: Fewest cells a grid may have; Moran's I is meaningless on fewer.
MIN_CELLS = 9

GridKind = Literal["square", "hex"]
_SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True)
class RasterFrame:
    """Georeferencing of a raster, and the projected CRS in metres where cells are laid.

    Attributes
    ----------
    transform : Affine
    height, width : int
    crs : CRS
        The raster's own CRS.
    analysis_crs : pyproj.CRS or None
        Where cells, lengths and areas are measured (:func:`geo_ntl.spatial.crs.analysis_crs`);
        None for a frame that only describes the raster.
    reprojected : bool
        Whether ``analysis_crs`` differs from ``crs`` (a geographic raster, or ``analysis_crs``
        given): pixel centres are then transformed to it.
    """

    transform: Affine
    height: int
    width: int
    crs: Any
    analysis_crs: Any = None
    reprojected: bool = False

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (both positive)."""
        return float(self.transform.a), float(-self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the raster CRS."""
        left, top = self.transform.c, self.transform.f
        return (left, top - self.height * self.res[1], left + self.width * self.res[0], top)

    def to_analysis(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raster-CRS coordinates in the analysis CRS (the same arrays when not reprojected)."""
        if not self.reprojected:
            return x, y
        return _transformer(self.crs.to_wkt(), self.analysis_crs.to_wkt()).transform(x, y)

    @property
    def footprint(self) -> Any:
        """The raster's outline in the analysis CRS (edges densified when reprojected)."""
        import shapely

        box = shapely.box(*self.bounds)
        if not self.reprojected:
            return box
        ring = shapely.segmentize(
            box, max(self.bounds[2] - self.bounds[0], self.bounds[3] - self.bounds[1]) / 64
        )
        xy = shapely.get_coordinates(ring)
        x, y = self.to_analysis(xy[:, 0], xy[:, 1])
        return shapely.make_valid(shapely.Polygon(np.column_stack([x, y])))

    @property
    def analysis_bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of :attr:`footprint` in the analysis CRS."""
        if not self.reprojected:
            return self.bounds
        return tuple(float(v) for v in self.footprint.bounds)  # type: ignore[return-value]

    @property
    def res_m(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in metres (the mean over the scene when reprojected)."""
        if not self.reprojected:
            return self.res
        left, bottom, right, top = self.analysis_bounds
        return (right - left) / self.width, (top - bottom) / self.height


@functools.lru_cache(maxsize=8)
def _transformer(source_wkt: str, target_wkt: str) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(source_wkt, target_wkt, always_xy=True)


def raster_frame(da: Any, *, analysis_crs: Any = None, measure: bool = True) -> RasterFrame:
    """Read the georeferencing of a DataArray and choose where cells in metres are laid.

    Parameters
    ----------
    da : xarray.DataArray
        Raster with a CRS and transform (rioxarray).
    analysis_crs : str or CRS, optional
        Projected CRS in metres to lay the cells in; by default the raster's own when it is
        projected in metres, else the local UTM zone (:func:`geo_ntl.spatial.crs.analysis_crs`).
    measure : bool, default True
        Choose the analysis CRS; False only describes the raster (any CRS).

    Returns
    -------
    RasterFrame

    Raises
    ------
    MissingCRSError
        If the raster has no CRS.
    InputError
        If the CRS cannot be projected to metres (see :func:`geo_ntl.spatial.crs.analysis_crs`),
        or the raster is rotated or flipped.
    """
    from geo_ntl.exceptions import MissingCRSError
    from geo_ntl.spatial.crs import analysis_crs as choose_crs

    crs = da.rio.crs
    if crs is None:
        raise MissingCRSError(
            "the night-light raster has no CRS; assign one with `da.rio.write_crs(...)` "
            "or `rio edit-info --crs EPSG:XXXX`"
        )
    transform = da.rio.transform()
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise InputError(
            f"the raster's transform {tuple(transform)[:6]} is rotated or flipped; "
            "warp it to a north-up grid first (`gdalwarp in.tif out.tif`)"
        )
    height, width = int(da.sizes["y"]), int(da.sizes["x"])
    frame = RasterFrame(transform=transform, height=height, width=width, crs=crs)
    if not measure:
        return frame
    chosen = choose_crs(crs, frame.bounds, analysis_crs)
    from pyproj import CRS

    reprojected = not chosen.equals(CRS.from_wkt(crs.to_wkt()))
    return dataclasses.replace(frame, analysis_crs=chosen, reprojected=reprojected)


@dataclass(frozen=True)
class Grid:
    """A grid of analysis cells aligned to a raster.

    Attributes
    ----------
    cells : geopandas.GeoDataFrame
        One row per kept cell: ``cell_id`` (int, unique), ``row`` and ``col``
        (lattice position; for hexagons odd rows are shifted half a cell east),
        ``area_m2`` (area after clipping) and ``coverage`` (area / full cell area),
        geometry clipped to the raster footprint and the AOI.
    kind : {"square", "hex"}
        Cell shape.
    cell_size : float
        Square edge, or hexagon width across flats (= distance between centres), in metres.
    frame : RasterFrame
        The raster the grid is aligned to.
    lattice_shape : (int, int)
        ``(rows, cols)`` of the full lattice.
    col_offset : int
        Lattice column ``c`` is stored at array column ``c + col_offset``.
    lookup : (rows, cols) ndarray of int64
        Position in ``cells`` of each lattice cell, -1 where none was kept.
    aoi : shapely geometry or None
        The area of interest in the analysis CRS (``cells.crs``).
    dropped : dict
        Counts of cells dropped, by reason.
    """

    cells: Any
    kind: GridKind
    cell_size: float
    frame: RasterFrame
    lattice_shape: tuple[int, int]
    col_offset: int
    lookup: np.ndarray
    aoi: Any = None
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def full_cell_area(self) -> float:
        """Area of an unclipped cell in m²."""
        return _full_cell_area(self.kind, self.cell_size)

    def lattice_of_points(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lattice ``(row, array column)`` of the cell containing each point.

        Parameters
        ----------
        x, y : ndarray
            Coordinates in the analysis CRS (``cells.crs``; broadcastable).

        Returns
        -------
        rows, cols : ndarray of int64
            ``cols`` already include ``col_offset``; values may fall outside the lattice.
        """
        left, _, _, top = self.frame.analysis_bounds
        u = np.asarray(x, dtype=np.float64) - left
        v = top - np.asarray(y, dtype=np.float64)
        if self.kind == "square":
            return (
                np.floor(v / self.cell_size).astype(np.int64),
                np.floor(u / self.cell_size).astype(np.int64) + self.col_offset,
            )
        radius = self.cell_size / _SQRT3
        qf = (_SQRT3 / 3.0 * u - v / 3.0) / radius
        rf = (2.0 / 3.0 * v) / radius
        q, r = _cube_round(qf, rf)
        col = q + (r - (r & 1)) // 2
        return r, col + self.col_offset


def _cube_round(qf: np.ndarray, rf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round fractional axial hexagon coordinates to the containing hexagon."""
    sf = -qf - rf
    q, r, s = np.rint(qf), np.rint(rf), np.rint(sf)
    dq, dr, ds = np.abs(q - qf), np.abs(r - rf), np.abs(s - sf)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    q = np.where(fix_q, -r - s, q)
    r = np.where(fix_r, -q - s, r)
    return q.astype(np.int64), r.astype(np.int64)


def _square_polygons(
    rows: np.ndarray, cols: np.ndarray, *, cell_size: float, left: float, top: float
) -> np.ndarray:
    import shapely

    x0 = left + cols * cell_size
    y1 = top - rows * cell_size
    return shapely.box(x0, y1 - cell_size, x0 + cell_size, y1)


def _hex_polygons(
    rows: np.ndarray, cols: np.ndarray, *, cell_size: float, left: float, top: float
) -> np.ndarray:
    import shapely

    # vertices as integer multiples of half a cell width and half a radius, so
    # neighbouring hexagons share bit-identical vertex coordinates
    half_w, half_r = cell_size / 2.0, cell_size / _SQRT3 / 2.0
    sx = np.array([1, 0, -1, -1, 0, 1, 1])  # pointy top, counter-clockwise, closed
    sy = np.array([1, 2, 1, -1, -2, -1, 1])
    ring_x = left + half_w * ((2 * cols + (rows & 1))[:, None] + sx[None, :])
    ring_y = top - half_r * ((3 * rows)[:, None] - sy[None, :])
    return shapely.polygons(np.stack([ring_x, ring_y], axis=-1))


def make_grid(
    da: Any,
    *,
    cell_size: float = DEFAULT_CELL_SIZE,
    kind: GridKind = "square",
    aoi: Any = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    analysis_crs: Any = None,
) -> Grid:
    """Build square or hexagonal analysis cells aligned to a raster.

    Parameters
    ----------
    da : xarray.DataArray
        The night-light raster (only its georeferencing is read).
    cell_size : float, default DEFAULT_CELL_SIZE
        Square edge, or hexagon width across flats (the distance between the
        centres of neighbouring hexagons), in metres.
    kind : {"square", "hex"}, default "square"
        Cell shape. Hexagons are pointy-topped, in rows offset by half a cell.
    aoi : shapely geometry, GeoDataFrame, GeoSeries or path, optional
        Area of interest; cells are clipped to it. Vector inputs in another
        CRS are reprojected (see :func:`geo_ntl.spatial.vectors.read_vector`).
    min_coverage : float, default DEFAULT_MIN_COVERAGE
        Drop cells whose area inside the raster footprint and AOI is less than
        this fraction of a full cell (slivers give unstable densities).
    analysis_crs : str or CRS, optional
        Projected CRS in metres of the cells (see :func:`raster_frame`). A raster in a
        projected CRS in metres is analysed in its own CRS by default; a geographic one in
        the UTM zone of its centre. The cells are then anchored at the upper-left corner of
        the raster's footprint in that CRS, and each pixel belongs to the cell holding its
        centre there.

    Returns
    -------
    Grid

    Raises
    ------
    ParameterError
        If the cell is smaller than a pixel or larger than the scene, the
        shape is unknown, or fewer than ``MIN_CELLS`` cells remain.
    VectorDataError
        If the AOI is empty or does not overlap the raster.

    Examples
    --------
    >>> from geo_ntl.testing import make_scene
    >>> grid = make_grid(make_scene((1, 64, 64), resolution=1.0), cell_size=16)
    >>> len(grid.cells), grid.lattice_shape
    (16, (4, 4))
    """
    if kind not in ("square", "hex"):
        raise ParameterError(f"grid kind must be 'square' or 'hex', got {kind!r}")
    if not 0.0 <= min_coverage <= 1.0:
        raise ParameterError(f"min_coverage must be in [0, 1], got {min_coverage}")
    frame = raster_frame(da, analysis_crs=analysis_crs)
    _check_cell_size(frame, cell_size)
    aoi_geom = None if aoi is None else _aoi_geometry(aoi, frame)
    lattice = _full_lattice(frame, kind, cell_size)
    cells = _clipped_cells(frame, lattice, aoi_geom, min_coverage)
    return Grid(
        cells=cells.table(frame.analysis_crs),
        kind=kind,
        cell_size=float(cell_size),
        frame=frame,
        lattice_shape=lattice.shape,
        col_offset=lattice.col_offset,
        lookup=cells.lookup(lattice),
        aoi=aoi_geom,
        dropped=cells.dropped,
    )


def _full_cell_area(kind: GridKind, cell_size: float) -> float:
    """Area in m² of an unclipped square or hexagonal cell."""
    if kind == "square":
        return cell_size**2
    return _SQRT3 / 2.0 * cell_size**2


def _check_cell_size(frame: RasterFrame, cell_size: float) -> None:
    """Refuse a cell size that is not finite and positive, below a pixel or above the scene."""
    res_x, res_y = frame.res_m
    width_m, height_m = frame.width * res_x, frame.height * res_y
    if not math.isfinite(cell_size) or cell_size <= 0:
        raise ParameterError(
            f"cell size must be a finite, positive number of metres, got {cell_size}; "
            f"e.g. cell_size={DEFAULT_CELL_SIZE:g}",
            options={f"cell_size={DEFAULT_CELL_SIZE:g}": "cell_size"},
        )
    if cell_size < max(res_x, res_y):
        raise ParameterError(
            f"cell size {cell_size} m is smaller than a pixel ({max(res_x, res_y):g} m); "
            f"use cell_size={math.ceil(max(res_x, res_y))} or more",
            options={f"cell_size={math.ceil(max(res_x, res_y))}": "cell_size"},
        )
    if min(width_m, height_m) < 3 * max(res_x, res_y):
        raise ParameterError(
            f"the scene is too small for a grid of cells: {frame.width} x {frame.height} px "
            f"({width_m:g} x {height_m:g} m); a grid needs at least 3 x 3 pixels, and spatial "
            "statistics many more cells"
        )
    if cell_size > min(width_m, height_m):
        raise ParameterError(
            f"cell size {cell_size} m is larger than the scene ({width_m:.1f} x {height_m:.1f} m); "
            f"use a cell size of at most {min(width_m, height_m) / 3:.3g} m "
            "for a 3 x 3 grid or more"
        )


def _aoi_geometry(aoi: Any, frame: RasterFrame) -> Any:
    """Read the AOI in the analysis CRS as one geometry; refuse one that misses the raster."""
    import shapely

    from geo_ntl.spatial.vectors import read_vector

    layer = read_vector(aoi, kind="polygons", crs=frame.analysis_crs, name="AOI")
    aoi_geom = shapely.union_all(layer.geometry.values)
    if not aoi_geom.intersects(frame.footprint):
        raise_no_overlap("AOI", layer.total_bounds, frame.analysis_bounds)
    return aoi_geom


@dataclass(frozen=True)
class _Lattice:
    """Every cell of a grid's full lattice, unclipped."""

    kind: GridKind
    cell_size: float
    shape: tuple[int, int]
    col_offset: int
    rows: np.ndarray
    cols: np.ndarray
    polygons: np.ndarray


def _full_lattice(frame: RasterFrame, kind: GridKind, cell_size: float) -> _Lattice:
    """Lay the full lattice of cells over the raster, anchored at its upper-left corner."""
    res_x, res_y = frame.res_m
    width_m, height_m = frame.width * res_x, frame.height * res_y
    left, _, _, top = frame.analysis_bounds
    if kind == "square":
        n_rows = math.ceil(height_m / cell_size - 1e-9)
        n_cols = math.ceil(width_m / cell_size - 1e-9)
        col_offset = 0
        polygons = _square_polygons
    else:
        radius = cell_size / _SQRT3
        n_rows = math.ceil(height_m / (1.5 * radius)) + 2
        n_cols = math.ceil(width_m / cell_size) + 2
        col_offset = 1
        polygons = _hex_polygons
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols) - col_offset, indexing="ij")
    rows, cols = rr.ravel(), cc.ravel()
    return _Lattice(
        kind=kind,
        cell_size=cell_size,
        shape=(n_rows, n_cols),
        col_offset=col_offset,
        rows=rows,
        cols=cols,
        polygons=polygons(rows, cols, cell_size=cell_size, left=left, top=top),
    )


@dataclass(frozen=True)
class _KeptCells:
    """The cells that keep enough area after clipping, and counts of the dropped ones."""

    rows: np.ndarray
    cols: np.ndarray
    geometry: np.ndarray
    area: np.ndarray
    coverage: np.ndarray
    dropped: dict[str, int]

    def lookup(self, lattice: _Lattice) -> np.ndarray:
        """Return the position of each lattice cell among the kept cells, -1 where none was."""
        lookup = np.full(lattice.shape, -1, dtype=np.int64)
        lookup[self.rows, self.cols + lattice.col_offset] = np.arange(len(self.rows))
        return lookup

    def table(self, crs: Any) -> Any:
        """Return the cells as a GeoDataFrame (see :class:`Grid`)."""
        import geopandas as gpd

        return gpd.GeoDataFrame(
            {
                "cell_id": np.arange(len(self.rows), dtype=np.int64),
                "row": self.rows.astype(np.int64),
                "col": self.cols.astype(np.int64),
                "area_m2": self.area,
                "coverage": self.coverage,
            },
            geometry=self.geometry,
            crs=crs,
        )


def _clip(full: np.ndarray, frame: RasterFrame, clip_to: Any, exact_boxes: bool) -> np.ndarray:
    """Clip cells to ``clip_to``; boxes clipped to the footprint box by plain coordinates."""
    import shapely

    if not exact_boxes:
        return shapely.intersection(full, clip_to)
    left, bottom, right, top = frame.bounds
    b = shapely.bounds(full)
    return shapely.box(
        np.maximum(b[:, 0], left),
        np.maximum(b[:, 1], bottom),
        np.minimum(b[:, 2], right),
        np.minimum(b[:, 3], top),
    )


def _clipped_cells(
    frame: RasterFrame, lattice: _Lattice, aoi_geom: Any, min_coverage: float
) -> _KeptCells:
    """Clip the lattice to the footprint (and AOI) and drop cells below ``min_coverage``."""
    import shapely

    footprint = frame.footprint
    clip_to = footprint if aoi_geom is None else shapely.intersection(footprint, aoi_geom)
    shapely.prepare(clip_to)
    touches = shapely.intersects(lattice.polygons, clip_to)
    rows, cols = lattice.rows[touches], lattice.cols[touches]
    square_only = lattice.kind == "square" and aoi_geom is None and not frame.reprojected
    clipped = _clip(lattice.polygons[touches], frame, clip_to, square_only)
    area = shapely.area(clipped)
    coverage = area / _full_cell_area(lattice.kind, lattice.cell_size)
    keep = (coverage >= min_coverage) & (area > 0)
    if keep.sum() < MIN_CELLS:
        res_x, res_y = frame.res_m
        raise ParameterError(
            f"only {int(keep.sum())} cells of {lattice.cell_size} m fit the scene"
            f"{'' if aoi_geom is None else ' and AOI'} "
            f"({frame.width * res_x:.0f} x {frame.height * res_y:.0f} m); "
            f"at least {MIN_CELLS} are needed: use a smaller `cell_size`",
            options={"`cell_size`": "cell_size"},
        )
    return _KeptCells(
        rows=rows[keep],
        cols=cols[keep],
        geometry=clipped[keep],
        area=area[keep],
        coverage=coverage[keep],
        dropped={"low_coverage": int(((area > 0) & ~keep).sum())},
    )


def raise_no_overlap(name: str, layer_bounds: Any, raster_bounds: Any) -> None:
    """Raise the error for a vector layer that misses the raster entirely.

    Parameters
    ----------
    name : str
        What the layer is ("roads", "AOI", ...).
    layer_bounds, raster_bounds : sequence of 4 float
        ``(minx, miny, maxx, maxy)``, both in one CRS (the analysis CRS).

    Raises
    ------
    VectorDataError
        Always.
    """
    from geo_ntl.exceptions import VectorDataError

    lb = ", ".join(f"{v:.1f}" for v in layer_bounds)
    rb = ", ".join(f"{v:.1f}" for v in raster_bounds)
    raise VectorDataError(
        f"the {name} layer does not overlap the raster (layer bounds {lb}; raster bounds {rb}, "
        "both in the analysis CRS); check that the layer's CRS is set correctly and covers the scene"
    )
