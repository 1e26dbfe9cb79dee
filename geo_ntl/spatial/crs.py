"""The projected CRS, in metres, in which a raster's grid, lengths and areas are measured.

A raster in a projected CRS in metres is analysed in its own CRS. Any other
raster -- geographic (EPSG:4326 Black Marble or VIIRS composites), or projected
in feet -- is analysed in the UTM zone of its centre (pyproj's UTM estimation),
or in a CRS the user names. Its pixels keep their values; only where each pixel
centre lies is computed in the analysis CRS.
"""

from __future__ import annotations

import math
from typing import Any

from geo_ntl.exceptions import InputError

__all__ = ["analysis_crs", "crs_name", "in_metres", "lonlat_bounds", "suggest_crs"]

#: UTM covers 80°S to 84°N; beyond it, the polar stereographic (UPS) CRSs.
_UTM_SOUTH, _UTM_NORTH = -80.0, 84.0


def _pyproj(crs: Any) -> Any:
    from pyproj import CRS

    return CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)


def crs_name(crs: Any) -> str:
    """Return ``"EPSG:<code>"`` (or another authority's code) when ``crs`` has one, else its WKT."""
    crs = _pyproj(crs)
    ident = crs.to_json_dict().get("id")  # the code the CRS itself states, e.g. a GeoTIFF's
    if ident:
        return f"{ident['authority']}:{ident['code']}"
    found = crs.to_authority("EPSG", min_confidence=70) or crs.to_authority(min_confidence=70)
    return f"{found[0]}:{found[1]}" if found is not None else str(crs.to_wkt())


def in_metres(crs: Any) -> bool:
    """Whether ``crs`` is projected with metre axes."""
    crs = _pyproj(crs)
    units = {(axis.unit_name or "").lower() for axis in crs.axis_info}
    return bool(crs.is_projected) and units <= {"metre", "meter", "m"}


def lonlat_bounds(crs: Any, bounds: tuple[float, float, float, float]) -> tuple[float, ...]:
    """Return ``bounds`` (in ``crs``) as ``(west, south, east, north)`` degrees.

    Raises
    ------
    InputError
        If ``crs`` cannot be related to longitude and latitude (a local or engineering CRS).
    """
    from pyproj import Transformer
    from pyproj.exceptions import CRSError, ProjError

    try:
        source = _pyproj(crs)
        transformer = Transformer.from_crs(source, "EPSG:4326", always_xy=True)
        out = transformer.transform_bounds(*bounds, densify_pts=21)
    except (CRSError, ProjError) as exc:
        out, reason = (math.nan,) * 4, str(exc)
    else:
        reason = "its coordinates do not transform to longitude and latitude"
    if not all(math.isfinite(v) for v in out):
        raise InputError(
            f"the raster's CRS ({getattr(crs, 'to_string', lambda: crs)()}) cannot be placed on the "
            f"Earth ({reason}), so its cells cannot be measured in metres; assign the raster's "
            "real CRS (`rio edit-info --crs EPSG:XXXX`) or reproject it to a projected CRS in metres"
        )
    return tuple(float(v) for v in out)


def suggest_crs(crs: Any, bounds: tuple[float, float, float, float]) -> str:
    """Return the local projected CRS in metres of a raster: its UTM zone, or UPS near the poles.

    Parameters
    ----------
    crs : CRS
        The raster's CRS.
    bounds : (left, bottom, right, top)
        The raster's bounds in ``crs``.

    Returns
    -------
    str
        ``"EPSG:<code>"`` of the UTM zone of the raster's centre (pyproj's
        estimation), or of UPS North/South (EPSG:32661/32761) beyond UTM's latitudes.

    Raises
    ------
    InputError
        If ``crs`` cannot be related to longitude and latitude.
    """
    west, south, east, north = lonlat_bounds(crs, bounds)
    if north > _UTM_NORTH:
        return "EPSG:32661"
    if south < _UTM_SOUTH:
        return "EPSG:32761"
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    centre_lon, centre_lat = (west + east) / 2.0, (south + north) / 2.0
    found = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(centre_lon, centre_lat, centre_lon, centre_lat),
    )
    if not found:  # pragma: no cover - every point between 80°S and 84°N has a zone
        raise InputError(
            f"no UTM zone holds the raster's centre ({centre_lon:.3f}, {centre_lat:.3f})"
        )
    return f"{found[0].auth_name}:{found[0].code}"


def analysis_crs(crs: Any, bounds: tuple[float, float, float, float], requested: Any = None) -> Any:
    """Choose the CRS in which cells, road lengths and areas are measured.

    Parameters
    ----------
    crs : CRS
        The raster's CRS.
    bounds : (left, bottom, right, top)
        The raster's bounds in ``crs``.
    requested : str or CRS, optional
        A CRS the user names (``--analysis-crs``); it must be projected in metres.

    Returns
    -------
    pyproj.CRS
        ``requested``; else the raster's own CRS when it is projected in metres; else
        :func:`suggest_crs` (the local UTM zone).

    Raises
    ------
    InputError
        If ``requested`` is not a projected CRS in metres (the message names the local
        zone), or the raster's CRS cannot be placed on the Earth or lies beyond UTM's
        latitudes (the message names UPS).
    """
    from pyproj.exceptions import CRSError

    if requested is not None:
        try:
            chosen = _pyproj(requested)
        except CRSError as exc:
            local = suggest_crs(crs, bounds)
            raise InputError(
                f"cannot read the analysis CRS {requested!r} ({exc}); give e.g. "
                f"analysis_crs='{local}', the raster's local zone",
                options={f"analysis_crs='{local}'": "analysis_crs"},
            ) from None
        if not in_metres(chosen):
            local = suggest_crs(crs, bounds)
            raise InputError(
                f"the analysis CRS {requested} is not projected in metres; cell sizes and road "
                f"densities need metres: use the local zone, analysis_crs='{local}'",
                options={f"analysis_crs='{local}'": "analysis_crs"},
            )
        lonlat_bounds(crs, bounds)  # the raster must be placeable to be moved
        return chosen
    if in_metres(crs):
        return _pyproj(crs)
    local = suggest_crs(crs, bounds)
    if local in ("EPSG:32661", "EPSG:32761"):
        raise InputError(
            "the raster reaches beyond UTM's latitudes (80°S to 84°N), where no UTM zone fits; "
            f"give a polar CRS in metres, e.g. analysis_crs='{local}' "
            f"(UPS {'North' if local == 'EPSG:32661' else 'South'}), or reproject it to one",
            options={f"analysis_crs='{local}'": "analysis_crs"},
        )
    return _pyproj(local)
