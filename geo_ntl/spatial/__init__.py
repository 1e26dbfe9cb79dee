"""Spatial clustering of night light with road networks and permeable surfaces (PySAL).

Grid cells aligned to the raster (:mod:`~geo_ntl.spatial.grid`), streamed
per-cell aggregation (:mod:`~geo_ntl.spatial.aggregate`), libpysal spatial
weights (:mod:`~geo_ntl.spatial.neighbours`), esda statistics (:mod:`~geo_ntl.spatial.stats`),
figures (:mod:`~geo_ntl.spatial.plots`), the one-call :func:`cluster`, and zonal
statistics per polygon (:func:`zonal`, exactextract).
``import geo_ntl`` does not import this package; libpysal and esda load here.
"""

from geo_ntl.spatial.aggregate import (
    NightLight,
    aggregate_night_light,
    permeable_fraction,
    road_density,
)
from geo_ntl.spatial.api import (
    VARIABLES,
    ClusterResult,
    aggregate,
    cluster,
    summary_json,
    write_cells,
)
from geo_ntl.spatial.esda_objects import EsdaResults, to_esda
from geo_ntl.spatial.grid import Grid, make_grid
from geo_ntl.spatial.neighbours import CellWeights, build_weights
from geo_ntl.spatial.plots import plot_lisa_map, plot_moran_scatter, write_figures
from geo_ntl.spatial.stats import (
    PERMUTATIONS,
    GlobalStat,
    LocalStat,
    global_moran,
    global_moran_bv,
    local_moran,
    local_moran_bv,
)
from geo_ntl.spatial.vectors import read_vector
from geo_ntl.spatial.zones import zonal

__all__ = [
    "PERMUTATIONS",
    "VARIABLES",
    "CellWeights",
    "ClusterResult",
    "EsdaResults",
    "GlobalStat",
    "Grid",
    "LocalStat",
    "NightLight",
    "aggregate",
    "aggregate_night_light",
    "build_weights",
    "cluster",
    "global_moran",
    "global_moran_bv",
    "local_moran",
    "local_moran_bv",
    "make_grid",
    "permeable_fraction",
    "plot_lisa_map",
    "plot_moran_scatter",
    "read_vector",
    "road_density",
    "summary_json",
    "to_esda",
    "write_cells",
    "write_figures",
    "zonal",
]
