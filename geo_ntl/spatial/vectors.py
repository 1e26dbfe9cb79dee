"""Reading and checking vector layers: CRS, emptiness, validity, geometry type.

Every layer is reprojected to the raster's CRS. Invalid geometries are
repaired with :func:`shapely.make_valid`; parts of the wrong dimension that the
repair creates (or that the layer holds) are dropped. What was repaired or
dropped is counted in ``gdf.attrs["geo_ntl_report"]`` and announced with a
:class:`~geo_ntl.exceptions.GeoNTLWarning`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geo_ntl.exceptions import GeoNTLWarning, MissingCRSError, VectorDataError

__all__ = ["VectorKind", "read_vector"]

VectorKind = Literal["lines", "polygons"]

_DIMENSION = {"lines": 1, "polygons": 2}
_EXAMPLE = {"lines": "LineString", "polygons": "Polygon"}


def _load(source: Any, name: str) -> Any:
    import geopandas as gpd
    import shapely

    if isinstance(source, gpd.GeoDataFrame):
        return source.copy()
    if isinstance(source, gpd.GeoSeries):
        return gpd.GeoDataFrame(geometry=source.copy())
    if isinstance(source, shapely.Geometry):
        # a bare geometry carries no CRS of its own; it is taken to be in the raster CRS
        return gpd.GeoDataFrame(geometry=[source])
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise VectorDataError(f"the {name} file {path} does not exist; check the path")
        try:
            if path.suffix.lower() in (".parquet", ".geoparquet"):
                # geopandas' own reader: GDAL's Parquet driver is often missing or broken
                return gpd.read_parquet(path)
            return gpd.read_file(path)
        except Exception as exc:  # pyogrio and pyarrow raise several format-specific errors
            raise VectorDataError(
                f"cannot read the {name} file {path} as a vector layer ({exc}); "
                "give a GeoPackage, GeoParquet, GeoJSON, Shapefile or another format GDAL reads"
            ) from exc
    raise VectorDataError(
        f"the {name} input must be a path, GeoDataFrame, GeoSeries or shapely geometry, "
        f"got {type(source).__name__}"
    )


def _keep_dimension(geoms: np.ndarray, dim: int) -> np.ndarray:
    """Keep only the parts of each geometry with the given dimension (None if none)."""
    import shapely

    out = np.empty(len(geoms), dtype=object)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            out[i] = None
            continue
        if shapely.get_dimensions(geom) == dim and shapely.get_type_id(geom) != 7:
            out[i] = geom
            continue
        parts = [p for p in shapely.get_parts(geom) if shapely.get_dimensions(p) == dim]
        parts = [q for p in parts for q in shapely.get_parts(p)]  # flatten nested collections
        parts = [p for p in parts if shapely.get_dimensions(p) == dim and not p.is_empty]
        if not parts:
            out[i] = None
        elif dim == 1:
            out[i] = shapely.multilinestrings(parts) if len(parts) > 1 else parts[0]
        else:
            out[i] = shapely.multipolygons(parts) if len(parts) > 1 else parts[0]
    return out


def read_vector(
    source: Any,
    *,
    kind: VectorKind,
    crs: Any,
    name: str,
    allow_empty: bool = False,
) -> Any:
    """Read a vector layer, check it, repair it and reproject it to ``crs``.

    Parameters
    ----------
    source : str, os.PathLike, GeoDataFrame, GeoSeries or shapely geometry
        The layer. Any format geopandas reads. A bare shapely geometry is taken
        to be in ``crs`` already.
    kind : {"lines", "polygons"}
        Geometry dimension expected: road centre lines or areas.
    crs : pyproj.CRS or str
        Target CRS (the raster's).
    name : str
        What the layer is, for messages ("roads", "permeable surfaces", "AOI").
    allow_empty : bool, default False
        Return an empty layer instead of raising when nothing usable is left.

    Returns
    -------
    geopandas.GeoDataFrame
        Valid geometries of dimension ``kind`` only, in ``crs``, with the
        original attribute columns. ``attrs["geo_ntl_report"]`` holds the counts
        ``n_features``, ``n_repaired``, ``n_dropped_empty``, ``n_dropped_other_type``.

    Raises
    ------
    VectorDataError
        If the file is missing or unreadable, the layer is empty, or no feature
        has the expected geometry type.
    MissingCRSError
        If the layer has no CRS.
    """
    import geopandas as gpd
    import shapely

    gdf = _load(source, name)
    bare_geometry = not isinstance(source, str | os.PathLike | gpd.GeoDataFrame | gpd.GeoSeries)
    if len(gdf) == 0:
        if allow_empty:
            return gdf.set_crs(crs, allow_override=True)
        raise VectorDataError(f"the {name} layer has no features; give a layer with at least one")
    if gdf.crs is None:
        if bare_geometry:
            gdf = gdf.set_crs(crs)
        else:
            raise MissingCRSError(
                f"the {name} layer has no CRS; set it (e.g. `gdf.set_crs('EPSG:4326')` or "
                "`ogr2ogr -a_srs EPSG:4326 fixed.gpkg in.gpkg`) so it can be reprojected"
            )
    # reproject first: repairing afterwards also fixes rings that reprojection made invalid
    gdf = gdf.to_crs(crs)
    geoms = np.asarray(gdf.geometry.array, dtype=object)
    missing = np.array([g is None or g.is_empty for g in geoms])
    invalid = ~missing & ~shapely.is_valid(np.where(missing, None, geoms))  # type: ignore[call-overload]
    geoms = geoms.copy()
    if invalid.any():
        geoms[invalid] = shapely.make_valid(geoms[invalid].astype(object))
    kept = _keep_dimension(geoms, _DIMENSION[kind])
    wrong_type = ~missing & np.array([g is None for g in kept])
    report = {
        "n_features": int(len(gdf)),
        "n_repaired": int(invalid.sum()),
        "n_dropped_empty": int(missing.sum()),
        "n_dropped_other_type": int(wrong_type.sum()),
    }
    ok = np.array([g is not None for g in kept])
    if not ok.any():
        if allow_empty:
            out = gdf.iloc[:0].copy()
            out.attrs["geo_ntl_report"] = report
            return out
        types = sorted({g.geom_type for g in geoms if g is not None})
        raise VectorDataError(
            f"the {name} layer holds no {kind} "
            f"(geometry types found: {', '.join(types) or 'none'}); "
            f"give {_EXAMPLE[kind]} features"
        )
    out = gdf.loc[ok].copy()
    out = out.set_geometry(gpd.GeoSeries(kept[ok], index=out.index, crs=gdf.crs))
    if invalid.any() or wrong_type.any() or missing.any():
        warnings.warn(
            f"{name}: repaired {report['n_repaired']} invalid geometries, dropped "
            f"{report['n_dropped_empty']} empty and {report['n_dropped_other_type']} "
            f"features that are not {kind}",
            GeoNTLWarning,
            stacklevel=3,
        )
    out.attrs["geo_ntl_report"] = report
    return out
