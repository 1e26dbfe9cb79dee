"""Assign night lighting to vector layers: street lamps, lit buildings, floodlit areas.

Everything random here is drawn once per feature from a seeded generator and
stored as columns, so rendering the same :class:`VectorScene` on overlapping
grids gives the same light in the overlap.

Lamp fluxes are in *radiance x pixels* with 1.0 the sensor's full scale, so a
lamp of flux 100 saturates a few pixels in the clean scene and blooms into a
saturated blob about 5-7 pixels wide once degraded. Spacing and brightness by road class
follow common European street-lighting practice (EN 13201 classes: main roads
are lit brighter, with closer, often two-sided poles; residential streets and
footpaths dimmer).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from geo_ntl.exceptions import ParameterError
from geo_ntl.simulate.layers import VectorScene

__all__ = [
    "LAMP_COLOURS",
    "ROAD_LIGHTING",
    "BUILDING_LIGHTING",
    "FLOODLIGHTING",
    "RoadLighting",
    "lamps_from_roads",
    "light_buildings",
    "light_areas",
    "light_scene",
]

#: Linear RGB of lamp types, brightest channel 1: high-pressure sodium (orange),
#: neutral-white LED (4000 K) and warm-white LED (3000 K).
LAMP_COLOURS: dict[str, tuple[float, float, float]] = {
    "hps": (1.0, 0.58, 0.20),
    "led": (0.90, 0.96, 1.0),
    "led_warm": (1.0, 0.82, 0.58),
}


@dataclass(frozen=True)
class RoadLighting:
    """How one road class is lit.

    Attributes
    ----------
    spacing : float
        Distance between poles along the road, metres.
    flux : float
        Mean lamp flux (radiance x pixels, full scale 1).
    led_share : float
        Probability that a road is lit by LED rather than sodium lamps.
    offset : float
        Distance of the poles from the centre line, metres (0: on the line).
    both_sides : bool
        Poles on both sides, staggered.
    """

    spacing: float
    flux: float
    led_share: float
    offset: float
    both_sides: bool


#: Lighting by OSM ``highway`` tag; classes not listed (tracks, trails, steps in
#: parks, corridors, elevators, construction) are unlit.
ROAD_LIGHTING: dict[str, RoadLighting] = {
    "motorway": RoadLighting(45.0, 400.0, 0.4, 12.0, True),
    "trunk": RoadLighting(40.0, 360.0, 0.4, 10.0, True),
    "primary": RoadLighting(32.0, 320.0, 0.5, 8.0, True),
    "secondary": RoadLighting(32.0, 260.0, 0.5, 7.0, True),
    "tertiary": RoadLighting(30.0, 200.0, 0.6, 5.0, False),
    "motorway_link": RoadLighting(35.0, 280.0, 0.4, 4.0, False),
    "trunk_link": RoadLighting(35.0, 260.0, 0.4, 4.0, False),
    "primary_link": RoadLighting(30.0, 240.0, 0.5, 4.0, False),
    "secondary_link": RoadLighting(30.0, 200.0, 0.5, 4.0, False),
    "tertiary_link": RoadLighting(30.0, 160.0, 0.6, 4.0, False),
    "residential": RoadLighting(28.0, 110.0, 0.7, 4.0, False),
    "unclassified": RoadLighting(30.0, 110.0, 0.6, 4.0, False),
    "living_street": RoadLighting(22.0, 80.0, 0.8, 3.0, False),
    "road": RoadLighting(30.0, 110.0, 0.6, 4.0, False),
    "service": RoadLighting(35.0, 60.0, 0.7, 2.0, False),
    "pedestrian": RoadLighting(18.0, 80.0, 0.9, 0.0, False),
    "footway": RoadLighting(25.0, 36.0, 0.9, 0.0, False),
    "cycleway": RoadLighting(25.0, 36.0, 0.9, 0.0, False),
    "path": RoadLighting(30.0, 24.0, 0.9, 0.0, False),
    "steps": RoadLighting(20.0, 24.0, 0.9, 0.0, False),
}

#: Building lighting by OSM ``building`` tag group:
#: (share of lit windows, window radiance, facade floodlight probability, colour).
BUILDING_LIGHTING: dict[str, tuple[float, float, float, str]] = {
    "commercial": (0.45, 0.60, 0.5, "led"),
    "public": (0.30, 0.45, 0.6, "led_warm"),
    "industrial": (0.20, 0.35, 0.2, "hps"),
    "residential": (0.25, 0.30, 0.03, "led_warm"),
}
_BUILDING_GROUPS = {
    "commercial": "commercial",
    "retail": "commercial",
    "office": "commercial",
    "hotel": "commercial",
    "supermarket": "commercial",
    "kiosk": "commercial",
    "train_station": "public",
    "transportation": "public",
    "public": "public",
    "civic": "public",
    "government": "public",
    "church": "public",
    "cathedral": "public",
    "chapel": "public",
    "university": "public",
    "school": "public",
    "college": "public",
    "hospital": "public",
    "museum": "public",
    "theatre": "public",
    "industrial": "industrial",
    "warehouse": "industrial",
    "manufacture": "industrial",
    "parking": "industrial",
    "garage": "industrial",
    "service": "industrial",
}

#: Floodlit open areas by ``kind``: (radiance, colour).
FLOODLIGHTING: dict[str, tuple[float, str]] = {
    "pitch": (0.75, "led"),
    "stadium": (0.85, "led"),
    "sports_centre": (0.45, "led"),
    "parking": (0.14, "hps"),
    "fuel": (0.70, "led"),
    "industrial": (0.10, "hps"),
    "railway": (0.06, "hps"),
    "commercial": (0.03, "led_warm"),
    "retail": (0.04, "led_warm"),
    "square": (0.30, "led_warm"),
}


def _colour_columns(kind: np.ndarray) -> dict[str, np.ndarray]:
    rgb = np.array([LAMP_COLOURS[k] for k in kind], dtype=np.float32).reshape(-1, 3)
    return {"r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]}


def _pick_colour(rng: np.random.Generator, led_share: float) -> str:
    if rng.random() >= led_share:
        return "hps"
    return "led" if rng.random() < 0.65 else "led_warm"


def lamps_from_roads(
    roads: gpd.GeoDataFrame, *, seed: int, density: float = 1.0
) -> gpd.GeoDataFrame:
    """Place street lamps along road centre lines.

    Parameters
    ----------
    roads : geopandas.GeoDataFrame
        LineStrings (or MultiLineStrings) with an OSM ``highway`` column, in a
        projected CRS in metres.
    seed : int
        Seed of the lamp colours, positions and fluxes.
    density : float, default 1.0
        Multiplier of the number of lamps per metre (> 0).

    Returns
    -------
    geopandas.GeoDataFrame
        Points with columns ``highway``, ``lamp`` (``hps``, ``led``, ``led_warm``),
        ``flux``, ``r``, ``g``, ``b``; same CRS as ``roads``.

    Raises
    ------
    ParameterError
        If ``density <= 0``.

    Notes
    -----
    Each road gets one lamp type (sodium or LED, by the class's LED share).
    Poles are spaced ``spacing / density`` apart with 10 % jitter, offset from
    the centre line (staggered on both sides for main roads); 3 % of lamps are
    off and fluxes vary by 20 %.
    """
    if not density > 0:
        raise ParameterError(f"lamp density must be > 0, got {density!r}.")
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    classes: list[str] = []
    kinds: list[str] = []
    fluxes: list[np.ndarray] = []
    lines = shapely.get_parts(np.asarray(roads.geometry.values))
    owners = np.repeat(
        np.arange(len(roads)), shapely.get_num_geometries(np.asarray(roads.geometry.values))
    )
    tags = roads["highway"].astype(str).to_numpy() if "highway" in roads else None
    for line, owner in zip(lines, owners, strict=True):
        tag = tags[owner] if tags is not None else "residential"
        rule = ROAD_LIGHTING.get(tag)
        if rule is None or line.is_empty or line.geom_type != "LineString":
            continue
        spacing = rule.spacing / density
        length = line.length
        kind = _pick_colour(rng, rule.led_share)
        n = int(length // spacing) + 1
        pos = rng.uniform(0, spacing) + spacing * np.arange(n)
        pos = pos + rng.uniform(-0.1, 0.1, n) * spacing
        pos = pos[(pos >= 0) & (pos <= length)]
        if pos.size == 0:
            continue
        here = shapely.line_interpolate_point(line, pos)
        ahead = shapely.line_interpolate_point(line, np.minimum(pos + 0.5, length))
        behind = shapely.line_interpolate_point(line, np.maximum(pos - 0.5, 0.0))
        tx = shapely.get_x(ahead) - shapely.get_x(behind)
        ty = shapely.get_y(ahead) - shapely.get_y(behind)
        norm = np.hypot(tx, ty)
        norm[norm == 0] = 1.0
        side = np.where(np.arange(pos.size) % 2 == 0, 1.0, -1.0) if rule.both_sides else 1.0
        offset = rule.offset * side
        xs.append(shapely.get_x(here) - ty / norm * offset)
        ys.append(shapely.get_y(here) + tx / norm * offset)
        flux = rule.flux * rng.uniform(0.8, 1.2, pos.size)
        flux[rng.random(pos.size) < 0.03] = 0.0
        fluxes.append(flux)
        classes += [tag] * pos.size
        kinds += [kind] * pos.size
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    kind_arr = np.array(kinds, dtype=object)
    data = {
        "highway": np.array(classes, dtype=object),
        "lamp": kind_arr,
        "flux": (np.concatenate(fluxes) if fluxes else np.zeros(0)).astype(np.float32),
        **_colour_columns(kind_arr),
    }
    return gpd.GeoDataFrame(data, geometry=shapely.points(x, y), crs=roads.crs)


def light_buildings(buildings: gpd.GeoDataFrame, *, seed: int) -> gpd.GeoDataFrame:
    """Add lighting columns to buildings.

    Parameters
    ----------
    buildings : geopandas.GeoDataFrame
        Polygons with an optional OSM ``building`` column.
    seed : int
        Seed of the per-building variation.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``lit_share`` (share of lit windows), ``window`` (radiance of a
        lit window), ``facade`` (radiance of a floodlit facade edge, 0 for most)
        and ``r``, ``g``, ``b``.
    """
    rng = np.random.default_rng(seed)
    out = buildings.copy()
    tags = out["building"].astype(str) if "building" in out else np.full(len(out), "yes")
    groups = [_BUILDING_GROUPS.get(t, "residential") for t in tags]
    rules = [BUILDING_LIGHTING[g] for g in groups]
    share = np.array([r[0] for r in rules], dtype=float)
    window = np.array([r[1] for r in rules], dtype=float)
    facade_p = np.array([r[2] for r in rules], dtype=float)
    colour = np.array([r[3] for r in rules], dtype=object)
    n = len(out)
    out["lit_share"] = (share * rng.uniform(0.3, 1.7, n)).clip(0, 0.9)
    out["window"] = (window * rng.uniform(0.6, 1.4, n)).astype(np.float32)
    out["facade"] = np.where(rng.random(n) < facade_p, rng.uniform(0.4, 1.0, n), 0.0)
    cols = _colour_columns(colour)
    for band in ("r", "g", "b"):
        out[band] = cols[band]
    return out


def light_areas(floodlit: gpd.GeoDataFrame, *, seed: int) -> gpd.GeoDataFrame:
    """Add ``radiance`` and ``r``, ``g``, ``b`` columns to floodlit areas by ``kind``.

    Parameters
    ----------
    floodlit : geopandas.GeoDataFrame
        Polygons with a ``kind`` column (see :data:`FLOODLIGHTING`; unknown kinds
        get a dim sodium light).
    seed : int
        Seed of the per-area variation (+-30 %).

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with the lighting columns.
    """
    rng = np.random.default_rng(seed)
    out = floodlit.copy()
    kinds = out["kind"].astype(str) if "kind" in out else np.full(len(out), "parking")
    rules = [FLOODLIGHTING.get(k, (0.08, "hps")) for k in kinds]
    level = np.array([r[0] for r in rules], dtype=float)
    out["radiance"] = (level * rng.uniform(0.7, 1.3, len(out))).astype(np.float32)
    cols = _colour_columns(np.array([r[1] for r in rules], dtype=object))
    for band in ("r", "g", "b"):
        out[band] = cols[band]
    return out


def light_scene(scene: VectorScene, *, seed: int, lamp_density: float = 1.0) -> VectorScene:
    """Return a copy of ``scene`` with lamps, lit buildings and floodlit areas.

    Parameters
    ----------
    scene : VectorScene
        Unlit layers.
    seed : int
        Seed of all lighting choices.
    lamp_density : float, default 1.0
        Multiplier of lamps per metre of road.

    Returns
    -------
    VectorScene
    """
    seeds = np.random.SeedSequence(seed).spawn(3)
    lamps = lamps_from_roads(
        scene.roads, seed=int(seeds[0].generate_state(1)[0]), density=lamp_density
    )
    buildings = light_buildings(scene.buildings, seed=int(seeds[1].generate_state(1)[0]))
    floodlit = light_areas(scene.floodlit, seed=int(seeds[2].generate_state(1)[0]))
    return VectorScene(
        roads=scene.roads,
        buildings=buildings,
        floodlit=floodlit,
        permeable=scene.permeable,
        water=scene.water,
        lamps=lamps,
    )
