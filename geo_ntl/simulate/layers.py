"""The vector layers a night-time-light scene is rendered from.

A :class:`VectorScene` bundles GeoDataFrames in one projected CRS (metres):

``roads``
    LineStrings with an OSM ``highway`` tag (``primary``, ``residential``, ``footway``...).
``buildings``
    Polygons with an OSM ``building`` tag (``commercial``, ``apartments``, ``yes``...).
``floodlit``
    Polygons of lit open areas with a ``kind`` column (``pitch``, ``parking``,
    ``industrial``...).
``permeable``
    Polygons of permeable surfaces with a ``kind`` column (``park``, ``grass``,
    ``forest``, ``water``...).
``water``
    Water polygons.
``lamps``
    Points with ``flux`` and ``r``, ``g``, ``b`` columns, made from the roads by
    :func:`geo_ntl.simulate.lighting.light_scene`; None until then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import geopandas as gpd
from pyproj import CRS

from geo_ntl.exceptions import MissingCRSError, VectorDataError

__all__ = ["VectorScene", "empty_layer"]

LAYER_NAMES = ("roads", "buildings", "floodlit", "permeable", "water")


def empty_layer(crs: CRS | str, columns: tuple[str, ...] = ()) -> gpd.GeoDataFrame:
    """Return an empty GeoDataFrame with the given columns and CRS.

    Parameters
    ----------
    crs : pyproj.CRS or str
        Coordinate reference system.
    columns : tuple of str, default ()
        Attribute columns besides ``geometry``.

    Returns
    -------
    geopandas.GeoDataFrame
    """
    return gpd.GeoDataFrame({name: [] for name in columns}, geometry=[], crs=crs)


@dataclass(frozen=True)
class VectorScene:
    """Vector layers of a city in one projected CRS; see the module docstring.

    Parameters
    ----------
    roads, buildings, floodlit, permeable, water : geopandas.GeoDataFrame
        The layers; all in the same projected CRS.
    lamps : geopandas.GeoDataFrame or None, default None
        Street lamps (points with ``flux``, ``r``, ``g``, ``b``).
    """

    roads: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    floodlit: gpd.GeoDataFrame
    permeable: gpd.GeoDataFrame
    water: gpd.GeoDataFrame
    lamps: gpd.GeoDataFrame | None = None

    def __post_init__(self) -> None:
        crs = None
        for name in LAYER_NAMES:
            layer = getattr(self, name)
            if not isinstance(layer, gpd.GeoDataFrame):
                raise VectorDataError(
                    f"layer {name!r} must be a GeoDataFrame, got {type(layer).__name__}."
                )
            if layer.crs is None:
                raise MissingCRSError(
                    f"layer {name!r} has no CRS; set one with layer.set_crs('EPSG:3067')."
                )
            if crs is None:
                crs = CRS.from_user_input(layer.crs)
            elif CRS.from_user_input(layer.crs) != crs:
                raise VectorDataError(
                    f"layer {name!r} is in {layer.crs}, the roads in {crs}; reproject with "
                    "layer.to_crs(...) so all layers share one CRS."
                )
        if crs is not None and not crs.is_projected:
            raise VectorDataError(
                f"layers must be in a projected CRS (metres), got {crs.name}; "
                "reproject with layer.to_crs('EPSG:3067')."
            )

    @property
    def crs(self) -> CRS:
        """The CRS shared by all layers."""
        return CRS.from_user_input(self.roads.crs)

    def with_lamps(self, lamps: gpd.GeoDataFrame) -> VectorScene:
        """Return a copy with the lamps layer set."""
        return replace(self, lamps=lamps)

    @property
    def total_bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` over all non-empty layers."""
        boxes = [getattr(self, n).total_bounds for n in LAYER_NAMES if len(getattr(self, n))]
        if not boxes:
            raise VectorDataError("all layers are empty; there is nothing to render.")
        return (
            float(min(b[0] for b in boxes)),
            float(min(b[1] for b in boxes)),
            float(max(b[2] for b in boxes)),
            float(max(b[3] for b in boxes)),
        )
