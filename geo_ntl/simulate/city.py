"""Procedural cities: street grids, blocks, buildings, parks and rivers, without OSM.

:func:`generate_city` lays out vector layers over any extent, deterministically
for a seed; :func:`synthetic_city` renders and degrades one to a pair of
(clean, degraded) uint8 RGB arrays for training and testing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from pyproj import CRS

from geo_ntl.exceptions import ParameterError
from geo_ntl.simulate.degrade import degrade
from geo_ntl.simulate.layers import VectorScene
from geo_ntl.simulate.lighting import light_scene
from geo_ntl.simulate.render import DEFAULT_SKY_GLOW, render_scene, to_uint8

__all__ = [
    "DEFAULT_CRS",
    "DEFAULT_RESOLUTION",
    "DEFAULT_ORIGIN",
    "generate_city",
    "synthetic_city",
    "city_grid",
]

#: ETRS-TM35FIN, the projected CRS of the Helsinki sample.
DEFAULT_CRS = "EPSG:3067"
#: Jilin-1 night-light ground sampling distance, metres.
DEFAULT_RESOLUTION = 0.92
#: Upper-left corner (x, y) of synthetic grids, metres in EPSG:3067 (near Helsinki),
#: a multiple of the default pixel size.
DEFAULT_ORIGIN = (385_000.0 - 385_000.0 % 0.92, 6_673_000.0 - 6_673_000.0 % 0.92)

_MAIN_CLASSES = ("primary", "secondary", "tertiary")


def city_grid(
    shape: tuple[int, int],
    *,
    resolution: float = DEFAULT_RESOLUTION,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
) -> tuple[Affine, tuple[float, float, float, float]]:
    """Return the north-up transform and bounds of a grid.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels.
    resolution : float, default 0.92
        Pixel size in metres.
    origin : tuple of float
        ``(x, y)`` of the upper-left corner.

    Returns
    -------
    transform : affine.Affine
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)``.
    """
    height, width = shape
    transform = Affine(resolution, 0.0, origin[0], 0.0, -resolution, origin[1])
    return transform, (
        origin[0],
        origin[1] - height * resolution,
        origin[0] + width * resolution,
        origin[1],
    )


def _street_positions(
    rng: np.random.Generator, start: float, stop: float
) -> list[tuple[float, str]]:
    """Positions along one axis of the street grid, with road classes."""
    out = []
    pos = start + rng.uniform(0, 60)
    main_every = int(rng.integers(4, 7))
    k = int(rng.integers(0, main_every))
    while pos < stop:
        if k % main_every == 0:
            main = k % (2 * main_every) == 0
            tag = _MAIN_CLASSES[int(rng.integers(0, 2))] if main else "tertiary"
        else:
            tag = "residential"
        out.append((pos, tag))
        pos += rng.uniform(55.0, 115.0)
        k += 1
    return out


def _rotate(geoms: np.ndarray, angle: float, centre: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)

    def f(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0] - centre[0], xy[:, 1] - centre[1]
        return np.column_stack([c * x - s * y + centre[0], s * x + c * y + centre[1]])

    return shapely.transform(geoms, f)


def generate_city(
    bounds: tuple[float, float, float, float],
    *,
    seed: int,
    crs: str | CRS = DEFAULT_CRS,
    park_share: float = 0.12,
    river: bool | None = None,
) -> VectorScene:
    """Lay out a synthetic city's vector layers over ``bounds``.

    Parameters
    ----------
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in metres of the projected ``crs``.
    seed : int
        Seed; the layout is a deterministic function of the inputs.
    crs : str or pyproj.CRS, default "EPSG:3067"
        Projected CRS of the layers.
    park_share : float, default 0.12
        Share of blocks that are parks (0..1).
    river : bool or None, default None
        Add a river across the city; None draws it (probability 0.5).

    Returns
    -------
    VectorScene
        Unlit layers: roads (``highway``), buildings (``building``), floodlit
        areas and permeable surfaces (``kind``) and water.

    Raises
    ------
    ParameterError
        If the bounds are empty or ``park_share`` is outside [0, 1].

    Notes
    -----
    A rotated street grid (blocks 55-115 m, every 4th-6th street a main road,
    sometimes a diagonal avenue); blocks are residential, commercial (more
    likely on main roads), industrial (floodlit yards), parking lots, sports
    pitches or parks with lit footpaths; buildings fill lots of 14-32 m with
    setbacks. A river, when present, cuts local streets (main roads cross it
    on bridges) and removes what it covers.
    """
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    if not (xmax > xmin and ymax > ymin):
        raise ParameterError(f"bounds must have xmax > xmin and ymax > ymin, got {bounds!r}.")
    if not 0 <= park_share <= 1:
        raise ParameterError(f"park_share must be in [0, 1], got {park_share!r}.")
    rng = np.random.default_rng(seed)
    centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)
    radius = float(np.hypot(xmax - xmin, ymax - ymin)) / 2 + 150.0
    angle = float(rng.uniform(0, np.pi / 2)) if rng.random() < 0.8 else 0.0
    extent = shapely.box(xmin - 120, ymin - 120, xmax + 120, ymax + 120)
    us, vs, roads = _street_grid(rng, centre, radius)
    blocks, block_main = _blocks_between(us, vs)
    keep = shapely.intersects(_rotate(blocks, angle, centre), extent)
    layout = _CityLayout(road_geoms=roads[0], road_tags=roads[1])
    for block, main, inside in zip(blocks, block_main, keep, strict=True):
        if inside and not block.is_empty and block.area >= 100:
            _fill_block(rng, layout, block, main=main, park_share=park_share)
    layout.road_geoms += layout.footways
    layout.road_tags += ["footway"] * len(layout.footways)
    layers = _RotatedLayers.of(layout, angle, centre)
    if river is None:
        river = bool(rng.random() < 0.5)
    if river:
        _add_river(rng, layers, centre, radius)
    return VectorScene(
        roads=_frame(layers.roads, extent, crs, highway=layers.road_tags),
        buildings=_frame(
            layers.buildings, extent, crs, building=np.array(layers.building_tags, dtype=object)
        ),
        floodlit=_frame(
            layers.floodlit, extent, crs, kind=np.array(layers.floodlit_kinds, dtype=object)
        ),
        permeable=_frame(
            layers.permeable, extent, crs, kind=np.array(layers.permeable_kinds, dtype=object)
        ),
        water=_frame(layers.water, extent, crs),
    )


#: Half the carriageway width of each road class, in metres (blocks start beyond it).
_HALF_WIDTH = {"primary": 11.0, "secondary": 10.0, "tertiary": 8.0, "residential": 6.0}


def _street_grid(
    rng: np.random.Generator, centre: tuple[float, float], radius: float
) -> tuple[list[tuple[float, str]], list[tuple[float, str]], tuple[list, list[str]]]:
    """Streets along u and v (unrotated frame) and the road lines, maybe with a diagonal avenue."""
    lo, hi = -radius, radius
    us = _street_positions(rng, centre[0] + lo, centre[0] + hi)
    vs = _street_positions(rng, centre[1] + lo, centre[1] + hi)
    road_geoms, road_tags = [], []
    for u, tag in us:
        road_geoms.append(shapely.linestrings([[u, centre[1] + lo], [u, centre[1] + hi]]))
        road_tags.append(tag)
    for v, tag in vs:
        road_geoms.append(shapely.linestrings([[centre[0] + lo, v], [centre[0] + hi, v]]))
        road_tags.append(tag)
    if rng.random() < 0.6:
        d = rng.uniform(-radius / 3, radius / 3)
        road_geoms.append(
            shapely.linestrings(
                [[centre[0] + lo, centre[1] + lo + d], [centre[0] + hi, centre[1] + hi + d]]
            )
        )
        road_tags.append("primary")
    return us, vs, (road_geoms, road_tags)


def _blocks_between(
    us: list[tuple[float, str]], vs: list[tuple[float, str]]
) -> tuple[np.ndarray, list[bool]]:
    """Blocks between consecutive streets (unrotated frame), and whether a main road borders each."""
    blocks, block_main = [], []
    for (u0, tu0), (u1, tu1) in zip(us[:-1], us[1:], strict=True):
        for (v0, tv0), (v1, tv1) in zip(vs[:-1], vs[1:], strict=True):
            blocks.append(
                shapely.box(
                    u0 + _HALF_WIDTH[tu0],
                    v0 + _HALF_WIDTH[tv0],
                    u1 - _HALF_WIDTH[tu1],
                    v1 - _HALF_WIDTH[tv1],
                )
            )
            block_main.append(any(t != "residential" for t in (tu0, tu1, tv0, tv1)))
    return np.array(blocks, dtype=object), block_main


@dataclass
class _CityLayout:
    """Geometries and tags of a city in the unrotated frame, filled block by block."""

    road_geoms: list
    road_tags: list[str]
    buildings: list = field(default_factory=list)
    building_tags: list[str] = field(default_factory=list)
    floodlit: list = field(default_factory=list)
    floodlit_kinds: list[str] = field(default_factory=list)
    permeable: list = field(default_factory=list)
    permeable_kinds: list[str] = field(default_factory=list)
    water: list = field(default_factory=list)
    footways: list = field(default_factory=list)


def _fill_block(
    rng: np.random.Generator,
    layout: _CityLayout,
    block: Any,
    *,
    main: bool,
    park_share: float,
) -> None:
    """Make one block a park, pitch, parking lot, or industrial, commercial or housing lots."""
    p = rng.random()
    if p < park_share:
        _add_park(rng, layout, block)
        return
    if p < park_share + 0.04:
        layout.floodlit.append(block)
        layout.floodlit_kinds.append("pitch")
        layout.permeable.append(block)
        layout.permeable_kinds.append("grass")
        return
    if p < park_share + 0.10:
        layout.floodlit.append(block)
        layout.floodlit_kinds.append("parking")
        return
    if p < park_share + 0.16:
        kind = "industrial"
        layout.floodlit.append(block)
        layout.floodlit_kinds.append("industrial")
    elif rng.random() < (0.55 if main else 0.12):
        kind = "commercial"
    else:
        kind = "apartments" if rng.random() < 0.8 else "house"
    _add_buildings(rng, layout, block, kind)


def _add_park(rng: np.random.Generator, layout: _CityLayout, block: Any) -> None:
    """Make a block a park or lawn, with one or two diagonal footpaths and sometimes a pond."""
    bx0, by0, bx1, by1 = block.bounds
    layout.permeable.append(block)
    layout.permeable_kinds.append("park" if rng.random() < 0.7 else "grass")
    layout.footways.append(shapely.linestrings([[bx0, by0], [bx1, by1]]))
    if rng.random() < 0.5:
        layout.footways.append(shapely.linestrings([[bx0, by1], [bx1, by0]]))
    if rng.random() < 0.2:
        pond = shapely.Point((bx0 + bx1) / 2, (by0 + by1) / 2).buffer(
            min(bx1 - bx0, by1 - by0) * 0.2
        )
        layout.water.append(pond)


def _add_buildings(rng: np.random.Generator, layout: _CityLayout, block: Any, kind: str) -> None:
    """Fill a block with lots of one kind, buildings set back in them, and maybe yards of grass."""
    bx0, by0, bx1, by1 = block.bounds
    lot = rng.uniform(30, 55) if kind == "industrial" else rng.uniform(14, 32)
    nx = max(1, int((bx1 - bx0) // lot))
    ny = max(1, int((by1 - by0) // lot))
    xs = np.linspace(bx0, bx1, nx + 1)
    ys = np.linspace(by0, by1, ny + 1)
    for i in range(nx):
        for j in range(ny):
            if rng.random() > 0.85:
                continue
            m = rng.uniform(1.0, 4.0, 4)
            x0, x1 = xs[i] + m[0], xs[i + 1] - m[1]
            y0, y1 = ys[j] + m[2], ys[j + 1] - m[3]
            if x1 - x0 > 4 and y1 - y0 > 4:
                layout.buildings.append(shapely.box(x0, y0, x1, y1))
                layout.building_tags.append(kind)
    if kind != "industrial" and rng.random() < 0.15:
        layout.permeable.append(
            shapely.box(bx0, by0, bx1, by1).difference(
                shapely.union_all(np.array(layout.buildings[-nx * ny :], dtype=object))
            )
        )
        layout.permeable_kinds.append("grass")


def _rotate_items(items: list, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """:func:`_rotate` a list of geometries; an empty list gives an empty array."""
    return _rotate(np.array(items, dtype=object), angle, centre) if items else np.array([])


@dataclass
class _RotatedLayers:
    """The layers as geometry arrays in the map frame, before clipping to the extent."""

    roads: np.ndarray
    road_tags: np.ndarray
    buildings: np.ndarray
    building_tags: list[str]
    floodlit: np.ndarray
    floodlit_kinds: list[str]
    permeable: np.ndarray
    permeable_kinds: list[str]
    water: np.ndarray

    @classmethod
    def of(cls, layout: _CityLayout, angle: float, centre: tuple[float, float]) -> _RotatedLayers:
        """Rotate a layout's geometries about ``centre`` by ``angle``."""
        return cls(
            roads=_rotate_items(layout.road_geoms, angle, centre),
            road_tags=np.array(layout.road_tags, dtype=object),
            buildings=_rotate_items(layout.buildings, angle, centre),
            building_tags=layout.building_tags,
            floodlit=_rotate_items(layout.floodlit, angle, centre),
            floodlit_kinds=layout.floodlit_kinds,
            permeable=_rotate_items(layout.permeable, angle, centre),
            permeable_kinds=layout.permeable_kinds,
            water=_rotate_items(layout.water, angle, centre),
        )


def _river_channel(rng: np.random.Generator, centre: tuple[float, float], radius: float) -> Any:
    """Return a meandering river polygon across the city."""
    t = np.linspace(-1.2, 1.2, 200) * radius
    width = rng.uniform(30, 80)
    amp, wavelength = rng.uniform(20, 120), rng.uniform(300, 900)
    offset = rng.uniform(-0.5, 0.5) * radius
    theta = rng.uniform(0, np.pi)
    along = np.column_stack([t, offset + amp * np.sin(2 * np.pi * t / wavelength)])
    c, s = np.cos(theta), np.sin(theta)
    pts = np.column_stack(
        [
            c * along[:, 0] - s * along[:, 1] + centre[0],
            s * along[:, 0] + c * along[:, 1] + centre[1],
        ]
    )
    return shapely.linestrings(pts).buffer(width / 2)


def _add_river(
    rng: np.random.Generator, layers: _RotatedLayers, centre: tuple[float, float], radius: float
) -> None:
    """Cut a river through the layers: local streets end at it, main roads cross on bridges."""
    channel = _river_channel(rng, centre, radius)
    banks = channel.buffer(6.0)
    layers.water = np.concatenate([layers.water, [channel]])
    bridges = np.isin(layers.road_tags, _MAIN_CLASSES)
    layers.roads = np.where(bridges, layers.roads, shapely.difference(layers.roads, banks))
    if len(layers.buildings):
        ok = ~shapely.intersects(layers.buildings, banks)
        layers.buildings = layers.buildings[ok]
        layers.building_tags = list(np.array(layers.building_tags)[ok])
    if len(layers.floodlit):
        layers.floodlit = shapely.difference(layers.floodlit, banks)
    if len(layers.permeable):
        layers.permeable = shapely.difference(layers.permeable, banks)
    layers.permeable = np.concatenate([layers.permeable, [channel]])
    layers.permeable_kinds.append("water")


def _frame(geoms: np.ndarray, extent: Any, crs: str | CRS, **cols: Any) -> gpd.GeoDataFrame:
    """Return a GeoDataFrame of ``geoms`` clipped to ``extent``, without the empty ones."""
    geoms = shapely.intersection(geoms, extent) if len(geoms) else geoms
    df = gpd.GeoDataFrame(cols, geometry=list(geoms), crs=crs)
    return df[~df.geometry.is_empty].reset_index(drop=True)


def synthetic_city(
    shape: tuple[int, int] = (1024, 1024),
    *,
    seed: int,
    lamp_density: float = 1.0,
    psf: np.ndarray | None = None,
    sky_glow: float = DEFAULT_SKY_GLOW,
    resolution: float = DEFAULT_RESOLUTION,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    crs: str | CRS = DEFAULT_CRS,
    **degrade_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Make one (clean, degraded) pair of a procedural city.

    Parameters
    ----------
    shape : tuple of int, default (1024, 1024)
        ``(height, width)`` in pixels.
    seed : int
        Seed of the layout, the lighting and the degradation.
    lamp_density : float, default 1.0
        Lamps per metre of road, relative to :data:`~geo_ntl.simulate.lighting.ROAD_LIGHTING`.
    psf : (h, w) ndarray, optional
        Blur kernel for :func:`~geo_ntl.simulate.degrade`; default the 15-pixel Moffat.
    sky_glow : float, default 0.06
        Ambient radiance of open ground.
    resolution : float, default 0.92
        Pixel size in metres.
    origin : tuple of float
        Upper-left corner of the grid (metres in ``crs``).
    crs : str or pyproj.CRS, default "EPSG:3067"
        Projected CRS.
    **degrade_options
        Passed to :func:`~geo_ntl.simulate.degrade` (``dilation``, ``exposure``,
        ``full_well``, ``read_noise``, ``noise_grain``, ``max_shift``).

    Returns
    -------
    clean : (3, height, width) ndarray of uint8
        Sharp truth.
    degraded : (3, height, width) ndarray of uint8
        Bloomed, blurred, noisy, clipped and misregistered scene.

    Raises
    ------
    ParameterError
        If the shape is not two positive integers or an option is out of range.

    Examples
    --------
    >>> clean, degraded = synthetic_city((64, 64), seed=0)
    >>> clean.shape, degraded.dtype
    ((3, 64, 64), dtype('uint8'))
    """
    if len(shape) != 2 or min(int(v) for v in shape) <= 0:
        raise ParameterError(f"shape must be (height, width) in pixels, got {shape!r}.")
    shape = (int(shape[0]), int(shape[1]))
    layout_seed, light_seed, noise_seed = np.random.SeedSequence(seed).generate_state(3)
    transform, bounds = city_grid(shape, resolution=resolution, origin=origin)
    scene = generate_city(bounds, seed=int(layout_seed), crs=crs)
    scene = light_scene(scene, seed=int(light_seed), lamp_density=lamp_density)
    radiance = render_scene(
        scene, transform=transform, shape=shape, seed=int(light_seed), sky_glow=sky_glow
    )
    degraded = degrade(radiance, seed=int(noise_seed), psf=psf, **degrade_options)
    return to_uint8(radiance), to_uint8(degraded)
