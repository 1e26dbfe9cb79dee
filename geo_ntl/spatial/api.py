"""One call from a night-light raster and two vector layers to cells, statistics and figures."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geo_ntl.exceptions import InputError, ParameterError
from geo_ntl.radiometry import Calibration, value_unit
from geo_ntl.spatial.aggregate import (
    RadianceMode,
    aggregate_night_light,
    permeable_fraction,
    road_density,
)
from geo_ntl.spatial.crs import crs_name
from geo_ntl.spatial.grid import (
    DEFAULT_CELL_SIZE,
    DEFAULT_MIN_COVERAGE,
    Grid,
    GridKind,
    make_grid,
    raise_no_overlap,
)
from geo_ntl.spatial.neighbours import DEFAULT_K, CellWeights, WeightsMethod, build_weights
from geo_ntl.spatial.stats import (
    DEFAULT_ALPHA,
    PERMUTATIONS,
    GlobalStat,
    LocalStat,
    global_moran,
    global_moran_bv,
    local_moran,
    local_moran_bv,
)
from geo_ntl.spatial.tables import table_format, write_table
from geo_ntl.spatial.vectors import read_vector

__all__ = ["VARIABLES", "ClusterResult", "aggregate", "cluster", "summary_json", "write_cells"]

#: Analysed variables (columns of the cells table).
VARIABLES = ("ntl", "road_density", "permeable_fraction")
#: Label of cells left out of the statistics.
NO_DATA, ISLAND = "no_data", "island"
_CELL_FORMATS = ("GPKG", "parquet")


@dataclass
class ClusterResult:
    """Cells with their values and local statistics, the global tests and what was done.

    Attributes
    ----------
    cells : geopandas.GeoDataFrame
        One row per cell: ``cell_id``, ``row``, ``col``, ``area_m2``, ``coverage``,
        ``ntl_mean``, ``ntl_sum``, ``ntl_count`` (valid pixels), ``ntl`` (the
        analysed night light, in ``report["ntl_unit"]``), ``road_density`` (m/km²), ``permeable_fraction``,
        ``analysed`` (bool), and per local test ``<key>_I``, ``<key>_p``,
        ``<key>_label`` (HH, LL, HL, LH, ns; ``no_data`` for cells without
        valid pixels, ``island`` for cells without neighbours).
    global_stats : dict of str to GlobalStat
        ``moran_ntl``, ``moran_road_density``, ``moran_permeable_fraction``,
        ``moran_bv_ntl_road_density``, ``moran_bv_ntl_permeable_fraction``.
    local_stats : dict of str to LocalStat
        ``ntl`` (LISA), ``ntl_road_density`` and ``ntl_permeable_fraction``
        (bivariate LISA: night light against the lag of the other variable).
    local_variables : dict of str to (str, str or None)
        Focal and lagged variable of each local test.
    weights : CellWeights
        The spatial weights between the analysed cells.
    grid : Grid
    report : dict
        Counts (cells, analysed, no-data cells, islands, dropped slivers),
        ``ntl_unit`` (the unit of the night-light columns: "DN", or the calibration's unit),
        vector repairs, and the parameters used.
    """

    cells: Any
    global_stats: dict[str, GlobalStat]
    local_stats: dict[str, LocalStat]
    local_variables: dict[str, tuple[str, str | None]]
    weights: CellWeights
    grid: Grid
    report: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary: global tests (I, E[I], z, pseudo p), LISA counts, report."""
        return {
            "tests": {k: v.to_dict() for k, v in self.global_stats.items()},
            "lisa": {
                k: v.counts() | {"threshold": v.threshold} for k, v in self.local_stats.items()
            },
            **self.report,
        }

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the cells table (see :func:`write_cells`)."""
        return write_cells(self.cells, path, overwrite=overwrite)

    def write_figures(
        self, directory: str | os.PathLike[str], *, overwrite: bool = False
    ) -> list[Path]:
        """Write LISA maps and Moran scatterplots (:func:`geo_ntl.spatial.plots.write_figures`)."""
        from geo_ntl.spatial.plots import write_figures

        return write_figures(self, directory, overwrite=overwrite)

    def to_esda(self) -> Any:
        """Return the statistics as esda objects, for splot and esda's tools.

        Returns
        -------
        geo_ntl.spatial.esda_objects.EsdaResults
            ``esda.Moran``/``Moran_BV`` per global test and ``esda.Moran_Local``/
            ``Moran_Local_BV`` per local test, with the same ``I`` and ``p_sim``, and the
            analysed cells they are aligned with (see :func:`geo_ntl.spatial.esda_objects.to_esda`).
        """
        from geo_ntl.spatial.esda_objects import to_esda

        return to_esda(self)


def cells_format(path: str | os.PathLike[str]) -> str:
    """Return the writer for a cells path, "GPKG" or "parquet", from its extension.

    Raises
    ------
    ParameterError
        For an extension other than .gpkg, .parquet or .geoparquet.
    """
    return table_format(path, allowed=_CELL_FORMATS)


def write_cells(cells: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a cells GeoDataFrame atomically as GeoPackage (layer "cells") or GeoParquet.

    See :func:`geo_ntl.spatial.tables.write_table`; a ``.csv`` is refused (the cells need
    their geometry).
    """
    return write_table(cells, path, layer="cells", overwrite=overwrite, allowed=_CELL_FORMATS)


def _open(ntl: Any, chunks: int) -> Any:
    from geo_ntl.io import open_scene

    if isinstance(ntl, str | os.PathLike):
        return open_scene(ntl, chunks=chunks)
    if hasattr(ntl, "rio") and hasattr(ntl, "dims"):
        return ntl
    raise InputError(f"ntl must be a raster path or an xarray.DataArray, got {type(ntl).__name__}")


def aggregate(
    ntl: Any,
    *,
    roads: Any = None,
    permeable: Any = None,
    osm: str | os.PathLike[str] | None = None,
    cell_size: float = DEFAULT_CELL_SIZE,
    aoi: Any = None,
    grid: GridKind = "square",
    radiance: RadianceMode = "mean",
    ntl_statistic: Literal["mean", "sum"] = "mean",
    road_class_weights: Mapping[str, float] | None = None,
    road_class_column: str = "highway",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    chunks: int = 1024,
    allow_enhanced: bool = False,
    calibration: Calibration | None = None,
    analysis_crs: Any = None,
) -> tuple[Any, Grid, dict[str, Any]]:
    """Build the grid and aggregate night light, road density and permeable fraction per cell.

    Parameters
    ----------
    ntl : str, os.PathLike or xarray.DataArray
        Night-light raster (opened lazily with :func:`geo_ntl.io.open_scene`).
    roads, permeable : str, os.PathLike or GeoDataFrame, optional
        Road lines and permeable-surface polygons, any CRS (reprojected). Each is
        required unless ``osm`` is given, and overrides the layer read from it.
    osm : str or os.PathLike, optional
        OpenStreetMap ``.osm.pbf`` extract to read the roads and permeable surfaces
        from, within the scene (:func:`geo_ntl.spatial.osm.osm_layers`; needs pyrosm).
    cell_size, aoi, grid, min_coverage
        See :func:`geo_ntl.spatial.grid.make_grid`.
    radiance : {"mean", "luma"}, default "mean"
        See :func:`geo_ntl.spatial.aggregate.aggregate_night_light`.
    ntl_statistic : {"mean", "sum"}, default "mean"
        Which per-cell night light becomes the analysed ``ntl`` column.
    road_class_weights, road_class_column
        See :func:`geo_ntl.spatial.aggregate.road_density`.
    chunks : int, default 1024
        Chunk edge when ``ntl`` is a path.
    allow_enhanced : bool, default False
        Accept a raster that the low-light enhancer wrote (see :mod:`geo_ntl.radiometry`);
        by default it is refused, since its relative brightness is not the measured one.
    calibration : Calibration, optional
        Convert DN to radiance per pixel before aggregating
        (:class:`geo_ntl.radiometry.Calibration`; there is no default). The report's
        ``ntl_unit`` is its unit, or "DN" without one.
    analysis_crs : str or CRS, optional
        Projected CRS in metres of the cells, road lengths and areas. Default: the raster's
        own CRS when it is projected in metres, else the local UTM zone of the raster's
        centre (see :func:`geo_ntl.spatial.grid.make_grid`). The report's ``analysis_crs``
        and ``raster_crs`` say which were used.

    Returns
    -------
    cells : geopandas.GeoDataFrame
        In the analysis CRS.
    grid : Grid
    report : dict

    Raises
    ------
    VectorDataError
        Empty, unreadable or non-overlapping layers.
    MissingCRSError
        A layer without a CRS.
    AllNoDataError
        No valid pixel in any cell.
    EnhancedRasterError
        ``ntl`` is an enhanced rendition and ``allow_enhanced`` is False.
    """
    from geo_ntl.io import ensure_valid_data
    from geo_ntl.radiometry import check_faithful

    if ntl_statistic not in ("mean", "sum"):
        raise ParameterError(f"ntl_statistic must be 'mean' or 'sum', got {ntl_statistic!r}")
    if osm is None and (roads is None or permeable is None):
        missing = " and ".join(
            n for n, v in (("roads", roads), ("permeable", permeable)) if v is None
        )
        raise ParameterError(
            f"give {missing}, or an OpenStreetMap extract to read them from (osm=...)",
            options={"osm=...": "osm", "roads": "roads", "permeable": "permeable"},
        )
    da = _open(ntl, chunks)
    source = str(ntl) if isinstance(ntl, str | os.PathLike) else "the night-light raster"
    check_faithful(da.attrs, source=source, allow_enhanced=allow_enhanced)
    cells_grid = make_grid(
        da,
        cell_size=cell_size,
        kind=grid,
        aoi=aoi,
        min_coverage=min_coverage,
        analysis_crs=analysis_crs,
    )
    crs = cells_grid.cells.crs
    sources = {"roads": roads, "permeable": permeable}
    if osm is not None and (roads is None or permeable is None):
        from geo_ntl.spatial.osm import osm_layers

        from_osm = osm_layers(osm, footprint=cells_grid.frame.footprint, crs=crs)
        sources = {
            k: v if v is not None else f
            for (k, v), f in zip(sources.items(), from_osm, strict=True)
        }
    road_layer = read_vector(sources["roads"], kind="lines", crs=crs, name="roads")
    perm_layer = read_vector(
        sources["permeable"], kind="polygons", crs=crs, name="permeable surfaces"
    )
    import shapely

    extent = shapely.box(*cells_grid.cells.total_bounds)
    for name, layer in (("roads", road_layer), ("permeable surfaces", perm_layer)):
        if not shapely.intersects(np.asarray(layer.geometry.array, dtype=object), extent).any():
            raise_no_overlap(name, layer.total_bounds, cells_grid.frame.analysis_bounds)
    ensure_valid_data(da)
    light = aggregate_night_light(da, cells_grid, radiance=radiance, calibration=calibration)
    cells = cells_grid.cells.copy()
    cells["ntl_mean"] = light.mean
    cells["ntl_sum"] = light.sum
    cells["ntl_count"] = light.count
    cells["ntl"] = (
        light.mean if ntl_statistic == "mean" else np.where(light.count > 0, light.sum, np.nan)
    )
    cells["road_density"] = road_density(
        road_layer, cells_grid, class_weights=road_class_weights, class_column=road_class_column
    )
    cells["permeable_fraction"] = permeable_fraction(perm_layer, cells_grid)
    report = {
        "n_cells": int(len(cells)),
        "n_no_data": int((light.count == 0).sum()),
        "n_dropped_slivers": int(cells_grid.dropped.get("low_coverage", 0)),
        "ntl_unit": value_unit(calibration),
        "raster_crs": crs_name(cells_grid.frame.crs),
        "analysis_crs": crs_name(crs),
        "vectors": {
            "roads": road_layer.attrs.get("geo_ntl_report", {}),
            "permeable": perm_layer.attrs.get("geo_ntl_report", {}),
        },
        "parameters": {
            "cell_size": float(cell_size),
            "grid": grid,
            "radiance": radiance,
            "ntl_statistic": ntl_statistic,
            "min_coverage": float(min_coverage),
            "aoi": aoi is not None,
            "osm": os.fspath(osm) if osm is not None else None,
            "road_class_weights": dict(road_class_weights) if road_class_weights else None,
            "calibration": calibration.to_dict() if calibration is not None else None,
        },
    }
    return cells, cells_grid, report


def cluster(
    ntl: Any,
    *,
    roads: Any = None,
    permeable: Any = None,
    osm: str | os.PathLike[str] | None = None,
    cell_size: float = DEFAULT_CELL_SIZE,
    aoi: Any = None,
    grid: GridKind = "square",
    weights: WeightsMethod = "queen",
    k: int = DEFAULT_K,
    distance: float | None = None,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    fdr: bool = False,
    radiance: RadianceMode = "mean",
    ntl_statistic: Literal["mean", "sum"] = "mean",
    road_class_weights: Mapping[str, float] | None = None,
    road_class_column: str = "highway",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    n_jobs: int = 1,
    chunks: int = 1024,
    allow_enhanced: bool = False,
    calibration: Calibration | None = None,
    analysis_crs: Any = None,
) -> ClusterResult:
    """Spatial clustering of night light against road density and permeable surfaces.

    Aggregates the raster and both layers to grid cells (:func:`aggregate`),
    builds row-standardised spatial weights (:func:`~geo_ntl.spatial.neighbours.build_weights`)
    over the cells that hold valid pixels, drops islands, and runs global
    Moran's I of each variable, bivariate Moran's I of night light with road
    density and with permeable fraction, LISA of night light and the two
    bivariate LISAs.

    Parameters
    ----------
    ntl : str, os.PathLike or xarray.DataArray
        Night-light raster, normally a cleaned COG.
    roads, permeable : str, os.PathLike or GeoDataFrame, optional
        Road lines and permeable-surface polygons (any CRS, any format geopandas reads);
        required unless ``osm`` is given, and then each overrides the layer read from it.
    osm : str or os.PathLike, optional
        OpenStreetMap ``.osm.pbf`` extract holding the scene: roads and permeable
        surfaces are read from it (see :mod:`geo_ntl.spatial.osm` for the tags).
    cell_size : float, default DEFAULT_CELL_SIZE
        Cell size in metres.
    aoi : polygon layer, path or shapely geometry, optional
        Area of interest.
    grid : {"square", "hex"}, default "square"
    weights : {"queen", "rook", "knn", "distance"}, default "queen"
        Spatial weights between cells (not the GAN's model weights).
    k : int, default DEFAULT_K
        Neighbours for knn weights.
    distance : float, optional
        Band in metres for distance weights (default 1.5 cell sizes).
    permutations : int, default PERMUTATIONS
    seed : int, default 0
        The same seed gives the same p-values and labels.
    alpha : float, default DEFAULT_ALPHA
    fdr : bool, default False
        Label with the FDR cut-off (:func:`esda.fdr`) instead of ``alpha``.
    radiance, ntl_statistic, road_class_weights, road_class_column, min_coverage, chunks,
    allow_enhanced, calibration, analysis_crs
        See :func:`aggregate`.
    n_jobs : int, default 1
        Threads for the local permutations (-1: all).

    Returns
    -------
    ClusterResult

    Raises
    ------
    GeoNTLError
        Subclasses for every bad input (see :func:`aggregate`), and
        :class:`~geo_ntl.exceptions.InputError` when a variable is constant.

    Examples
    --------
    >>> from geo_ntl.spatial import cluster  # doctest: +SKIP
    >>> res = cluster("clean.tif", roads="roads.gpkg", permeable="parks.gpkg")  # doctest: +SKIP
    >>> res = cluster("clean.tif", osm="helsinki.osm.pbf")  # doctest: +SKIP
    >>> res.global_stats["moran_bv_ntl_road_density"].I  # doctest: +SKIP
    """
    cells, cells_grid, report = aggregate(
        ntl,
        roads=roads,
        permeable=permeable,
        osm=osm,
        cell_size=cell_size,
        aoi=aoi,
        grid=grid,
        radiance=radiance,
        ntl_statistic=ntl_statistic,
        road_class_weights=road_class_weights,
        road_class_column=road_class_column,
        min_coverage=min_coverage,
        chunks=chunks,
        allow_enhanced=allow_enhanced,
        calibration=calibration,
        analysis_crs=analysis_crs,
    )
    has_data = cells["ntl_count"].to_numpy() > 0
    cw = build_weights(cells_grid, method=weights, k=k, distance=distance, include=has_data)
    analysed = cells.iloc[cw.cells]
    values = {name: analysed[name].to_numpy(dtype=float) for name in VARIABLES}
    opts = {"permutations": permutations, "seed": seed}
    global_stats = _global_tests(values, cw.graph, opts)
    local_stats, local_variables = _local_tests(
        values, cw.graph, {**opts, "alpha": alpha, "fdr": fdr, "n_jobs": n_jobs}
    )
    _add_local_columns(cells, local_stats, cw, has_data)
    report = {
        **report,
        "n_analysed": int(len(cw.cells)),
        "n_islands": int(len(cw.islands)),
        "weights": {
            "method": weights,
            "k": cw.k,
            "distance": cw.distance,
            "transformation": "row-standardised",
        },
    }
    report["parameters"].update(
        {
            "permutations": int(permutations),
            "seed": int(seed),
            "alpha": float(alpha),
            "fdr": bool(fdr),
        }
    )
    return ClusterResult(
        cells=cells,
        global_stats=global_stats,
        local_stats=local_stats,
        local_variables=local_variables,
        weights=cw,
        grid=cells_grid,
        report=report,
    )


def _global_tests(
    values: dict[str, np.ndarray], graph: Any, opts: dict[str, Any]
) -> dict[str, GlobalStat]:
    """Moran's I of every variable, and bivariate Moran's I of night light with the others."""
    stats = {f"moran_{v}": global_moran(values[v], graph, name=v, **opts) for v in VARIABLES}
    for other in VARIABLES[1:]:
        stats[f"moran_bv_ntl_{other}"] = global_moran_bv(
            values["ntl"], values[other], graph, names=("ntl", other), **opts
        )
    return stats


def _local_tests(
    values: dict[str, np.ndarray], graph: Any, opts: dict[str, Any]
) -> tuple[dict[str, LocalStat], dict[str, tuple[str, str | None]]]:
    """LISA of night light and bivariate LISAs against the others, with their variables."""
    local_variables: dict[str, tuple[str, str | None]] = {"ntl": ("ntl", None)}
    local_stats = {"ntl": local_moran(values["ntl"], graph, name="ntl", **opts)}
    for other in VARIABLES[1:]:
        key = f"ntl_{other}"
        local_variables[key] = ("ntl", other)
        local_stats[key] = local_moran_bv(
            values["ntl"], values[other], graph, names=("ntl", other), **opts
        )
    return local_stats, local_variables


def _add_local_columns(
    cells: Any, local_stats: dict[str, LocalStat], cw: CellWeights, has_data: np.ndarray
) -> None:
    """Add ``analysed`` and each local test's ``_I``, ``_p`` and ``_label`` columns to ``cells``."""
    cells["analysed"] = False
    cells.loc[cells.index[cw.cells], "analysed"] = True
    for key, stat in local_stats.items():
        for suffix, data, fill in (("I", stat.Is, np.nan), ("p", stat.p_sim, np.nan)):
            column = np.full(len(cells), fill)
            column[cw.cells] = data
            cells[f"{key}_{suffix}"] = column
        labels = np.where(has_data, ISLAND, NO_DATA).astype(object)
        labels[cw.cells] = stat.labels
        cells[f"{key}_label"] = labels.astype(str)


def summary_json(result: ClusterResult) -> str:
    """Return :meth:`ClusterResult.summary` as indented JSON text."""
    return json.dumps(result.summary(), indent=2, default=float)
