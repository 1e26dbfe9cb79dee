"""Zonal statistics of night light per polygon (district, tract, municipality), with exactextract.

Every pixel counts in a zone by the fraction of its area inside the polygon
(exactextract's coverage weighting), so sums stay right for zones of any size
and shape. Pixels that are nodata, masked (GDAL mask band, alpha) or not finite
are left out. Many scenes give one tidy table -- a row per zone, scene and band
-- so a restoration's effect (raw against deblurred) or a time series is one
``groupby`` away.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from geo_ntl.exceptions import GeoNTLWarning, MissingDependencyError, ParameterError
from geo_ntl.radiometry import Calibration, value_unit

__all__ = ["DATE_TAGS", "ZONAL_COLUMNS", "zonal"]

#: Raster tags read, in this order, for a scene's acquisition date and time.
DATE_TAGS = ("ACQUISITION_DATETIME", "ACQUISITION_DATE", "DATETIME", "TIFFTAG_DATETIME")
#: Columns of the table :func:`zonal` returns, after the zone's own attributes.
ZONAL_COLUMNS = ("zone", "scene", "date", "band", "sum", "mean", "count", "coverage", "unit")


def _exactextract() -> Any:
    try:
        import exactextract
    except ImportError as exc:  # pragma: no cover - a dependency of geo_ntl
        raise MissingDependencyError(
            "zonal statistics need exactextract: `pip install exactextract`"
        ) from exc
    return exactextract


@dataclass(frozen=True)
class _Scene:
    """One opened scene: what exactextract reads and what the table records."""

    label: str
    reader: Any  # rasterio dataset, or a (band, y, x) DataArray
    crs: Any
    transform: Any
    width: int
    height: int
    count: int
    nodata: float | None
    tags: dict[str, Any]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + self.height * t.e, t.c + self.width * t.a, t.f)

    def read(self, band: int, x0: int, y0: int, nx: int, ny: int) -> np.ndarray:
        """Band ``band`` (1-based) of a window as float64, NaN where not valid.

        Not valid: masked by GDAL (mask band, alpha band or nodata), equal to the
        nodata value (GDAL ignores it when a mask band exists), or not finite.
        """
        if hasattr(self.reader, "read"):
            from rasterio.windows import Window

            raw = self.reader.read(band, window=Window(x0, y0, nx, ny), masked=True)
            values, invalid = np.asarray(raw.data), np.ma.getmaskarray(raw)
            scale, offset = self.reader.scales[band - 1], self.reader.offsets[band - 1]
        else:
            window = self.reader.isel(band=band - 1, y=slice(y0, y0 + ny), x=slice(x0, x0 + nx))
            values = np.asarray(window.values)
            invalid = np.zeros(values.shape, dtype=bool)
            scale, offset = 1.0, 0.0
        if self.nodata is not None:
            invalid = invalid | (values == self.nodata)
        out = values.astype(np.float64)
        if scale != 1.0 or offset != 0.0:  # the file's own scaling to physical values
            out = out * scale + offset
        return np.where(invalid | ~np.isfinite(out), np.nan, out)


def _band_source(scene: _Scene, band: int, calibration: Calibration | None) -> Any:
    """Return an exactextract RasterSource of one band, calibrated per pixel when asked."""
    from exactextract.raster import RasterSource

    class SceneBand(RasterSource):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.set_name(f"b{band}")

        def res(self) -> tuple[float, float]:
            return (float(scene.transform.a), float(-scene.transform.e))

        def srs_wkt(self) -> str:
            return str(scene.crs.to_wkt())

        def extent(self) -> tuple[float, float, float, float]:
            return scene.bounds

        def nodata_value(self) -> None:
            return None  # invalid pixels come masked

        def read_window(self, x0: int, y0: int, nx: int, ny: int) -> np.ndarray:
            # NaN marks what is not valid (exactextract 0.3 ignores the mask of some windows)
            values = scene.read(band, x0, y0, nx, ny)
            return values if calibration is None else calibration.to_radiance(values)

    return SceneBand()


@contextmanager
def _opened(sources: Sequence[Any], allow_enhanced: bool) -> Iterator[list[_Scene]]:
    """Open every scene (paths with rasterio, DataArrays as they are) and check it."""
    import rasterio

    from geo_ntl.io import open_scene
    from geo_ntl.radiometry import check_faithful
    from geo_ntl.spatial.grid import raster_frame

    with ExitStack() as stack:
        scenes = []
        for i, source in enumerate(sources):
            if isinstance(source, str | os.PathLike):
                da = open_scene(source, chunks=None)  # checks existence, format, CRS, dtype
                reader = stack.enter_context(rasterio.open(da.attrs["source"]))
                label, tags = os.fspath(source), dict(reader.tags())
            elif hasattr(source, "rio") and hasattr(source, "dims"):
                da = source if "band" in source.dims else source.expand_dims("band")
                reader, tags = da, dict(da.attrs)
                label = str(da.attrs.get("source", f"scene {i}"))
            else:
                raise ParameterError(
                    f"scenes must be raster paths or xarray.DataArrays, got {type(source).__name__}"
                )
            check_faithful(tags, source=label, allow_enhanced=allow_enhanced)
            frame = raster_frame(da, measure=False)
            nodata = da.rio.nodata
            scenes.append(
                _Scene(
                    label=label,
                    reader=reader,
                    crs=frame.crs,
                    transform=frame.transform,
                    width=frame.width,
                    height=frame.height,
                    count=int(da.sizes["band"]),
                    nodata=None if nodata is None else float(nodata),
                    tags=tags,
                )
            )
        yield scenes


def scene_date(tags: dict[str, Any], *, label: str) -> Any:
    """Return the acquisition time of a scene from its tags (:data:`DATE_TAGS`), or NaT.

    Parameters
    ----------
    tags : dict
        Raster tags (GDAL metadata) or DataArray attributes.
    label : str
        The scene, for the warning on an unreadable tag.

    Returns
    -------
    pandas.Timestamp or pandas.NaT
    """
    import pandas as pd

    for key in DATE_TAGS:
        text = tags.get(key)
        if text is None:
            continue
        text = str(text).strip()
        # TIFF's DateTime is "YYYY:MM:DD HH:MM:SS"
        if len(text) >= 10 and text[4] == ":" and text[7] == ":":
            text = text[:4] + "-" + text[5:7] + "-" + text[8:]
        try:
            return pd.Timestamp(text)
        except ValueError:
            warnings.warn(
                f"{label}: cannot read the date in tag {key}={tags[key]!r}; its date is left empty",
                GeoNTLWarning,
                stacklevel=3,
            )
    return pd.NaT


def zonal(
    scenes: Any,
    *,
    zones: Any,
    id_column: str | None = None,
    calibration: Calibration | None = None,
    allow_enhanced: bool = False,
) -> Any:
    """Coverage-weighted night light per zone, band and scene, as one tidy table.

    Parameters
    ----------
    scenes : str, os.PathLike, xarray.DataArray, or a sequence of them
        Night-light rasters (any CRS, projected or geographic; GeoTIFF, COG, VRT...).
        Each may have a different grid and CRS.
    zones : str, os.PathLike or GeoDataFrame
        Polygons (districts...), any CRS (reprojected to each scene's).
    id_column : str, optional
        Column of ``zones`` that names each zone (unique values); it becomes the
        ``zone`` column. By default ``zone`` is the feature's index (its position
        in a file).
    calibration : Calibration, optional
        DN to radiance per pixel before summing (:class:`geo_ntl.radiometry.Calibration`);
        the ``unit`` column is its unit, or "DN" without one.
    allow_enhanced : bool, default False
        Accept rasters that the low-light enhancer wrote (refused by default).

    Returns
    -------
    geopandas.GeoDataFrame
        A row per zone x scene x band, sorted so: the zones' own attributes, then
        ``zone``, ``scene`` (the path as given), ``date`` (from :data:`DATE_TAGS`;
        NaT without one), ``band`` (1-based), ``sum`` (coverage-weighted sum of the
        valid pixels), ``mean`` (their coverage-weighted mean; NaN without any),
        ``count`` (valid pixels, coverage-weighted), ``coverage`` (the fraction of the
        zone's area covered by valid pixels, 0 to 1), ``unit``, and the zone's geometry
        (in the first scene's CRS).

    Raises
    ------
    VectorDataError
        Zones missing, unreadable, holding no polygons, or overlapping no scene.
    ParameterError
        Bad ``id_column`` or scene type.
    GeoNTLError
        Subclasses for unreadable scenes (see :func:`geo_ntl.io.open_scene`).

    Examples
    --------
    >>> from geo_ntl.spatial import zonal  # doctest: +SKIP
    >>> table = zonal(["raw.tif", "deblurred.tif"], zones="districts.gpkg", id_column="name")  # doctest: +SKIP
    >>> table.pivot_table(index="zone", columns="scene", values="sum")  # doctest: +SKIP
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    from geo_ntl.spatial.grid import raise_no_overlap
    from geo_ntl.spatial.vectors import read_vector

    exactextract = _exactextract()
    sources = (
        [scenes]
        if isinstance(scenes, str | os.PathLike) or hasattr(scenes, "dims")
        else list(scenes)
    )
    if not sources:
        raise ParameterError("give at least one scene")
    unit = value_unit(calibration)
    parts = []
    with _opened(sources, allow_enhanced) as opened:
        layer = read_vector(zones, kind="polygons", crs=opened[0].crs, name="zones")
        attributes = layer.drop(columns=[layer.geometry.name])
        if id_column is not None:
            if id_column not in layer:
                raise ParameterError(
                    f"the zones have no column {id_column!r}; columns: {', '.join(attributes.columns) or 'none'}"
                )
            if layer[id_column].duplicated().any():
                raise ParameterError(
                    f"the zones' {id_column!r} values are not unique; pick another column"
                )
            zone_ids = layer[id_column].to_numpy()
        else:
            zone_ids = layer.index.to_numpy()
        for scene in opened:
            frame = layer if scene.crs == layer.crs else layer.to_crs(scene.crs)
            geoms = np.asarray(frame.geometry.array, dtype=object)
            if not shapely.intersects(geoms, shapely.box(*scene.bounds)).any():
                raise_no_overlap("zones", frame.total_bounds, scene.bounds)
            features = gpd.GeoDataFrame(
                {"__row": np.arange(len(frame))}, geometry=geoms, crs=frame.crs
            )
            bands = [_band_source(scene, b, calibration) for b in range(1, scene.count + 1)]
            stats = exactextract.exact_extract(
                bands, features, ["sum", "count", "mean"], include_cols=["__row"], output="pandas"
            )
            stats = stats.set_index("__row").reindex(np.arange(len(frame)))
            pixel_area = abs(scene.transform.a * scene.transform.e)
            zone_pixels = shapely.area(geoms) / pixel_area
            date = scene_date(scene.tags, label=scene.label)
            for b in range(1, scene.count + 1):
                names = (
                    (f"b{b}_sum", f"b{b}_count", f"b{b}_mean")
                    if scene.count > 1
                    else ("sum", "count", "mean")
                )
                count = stats[names[1]].to_numpy(dtype=float)
                parts.append(
                    pd.DataFrame(
                        {
                            "__row": np.arange(len(frame)),
                            "zone": zone_ids,
                            "scene": scene.label,
                            "date": date,
                            "band": b,
                            "sum": stats[names[0]].to_numpy(dtype=float),
                            "mean": np.where(
                                count > 0, stats[names[2]].to_numpy(dtype=float), np.nan
                            ),
                            "count": count,
                            "coverage": np.clip(count / np.maximum(zone_pixels, 1e-300), 0.0, 1.0),
                            "unit": unit,
                        }
                    )
                )
    table = pd.concat(parts, ignore_index=True)
    extra = attributes.reset_index(drop=True).drop(
        columns=[c for c in (*ZONAL_COLUMNS, id_column) if c in attributes]
    )
    table = pd.concat([extra.iloc[table["__row"].to_numpy()].reset_index(drop=True), table], axis=1)
    geometry = (
        layer.geometry.reset_index(drop=True).iloc[table["__row"].to_numpy()].reset_index(drop=True)
    )
    table = table.drop(columns="__row")
    out = gpd.GeoDataFrame(table, geometry=geometry.to_numpy(), crs=layer.crs)
    return out.sort_values(["zone", "scene", "band"], kind="stable").reset_index(drop=True)
