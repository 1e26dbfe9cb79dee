"""Render a clean (sharp) Jilin-1-like night-time-light RGB scene from vector layers.

The result is linear radiance in float32 where 1.0 is the sensor's full scale:
street-lamp cores exceed 1 (they saturate, as real lamps do) and everything
else is well below. :func:`to_uint8` clips and quantises it to the 8-bit RGB a
Jilin-1 product delivers. Degrade the *radiance* (not the uint8) with
:func:`geo_ntl.simulate.degrade` so that bright lamps bloom into saturated blobs.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage

from geo_ntl.exceptions import ParameterError
from geo_ntl.simulate._hash import grid_uniform
from geo_ntl.simulate.layers import VectorScene
from geo_ntl.simulate.lighting import light_scene

__all__ = [
    "DEFAULT_SKY_GLOW",
    "SKY_GLOW_COLOUR",
    "LAMP_CORE_SIGMA",
    "LAMP_POOL_SIGMA",
    "LAMP_POOL_SHARE",
    "RENDER_PAD",
    "render_scene",
    "to_uint8",
]

#: Radiance of the sky glow / ambient light on open ground (full scale 1).
DEFAULT_SKY_GLOW = 0.06
#: Colour of the sky glow (slightly green, as in real Jilin-1 night scenes).
SKY_GLOW_COLOUR = (0.80, 1.0, 0.62)
#: Gaussian sigma (pixels) of a lamp's bright core (about 1 m).
LAMP_CORE_SIGMA = 0.6
#: Gaussian sigma (pixels) of the pool of light a lamp casts on the ground.
LAMP_POOL_SIGMA = 3.0
#: Share of a lamp's flux seen in the ground pool rather than the core.
LAMP_POOL_SHARE = 0.12
#: Gaussian sigma (pixels) and strength of the local glow around lit areas.
SCATTER_SIGMA = 16.0
SCATTER_SHARE = 0.03
#: Diffuse glow of a building's roof relative to its lit windows.
BUILDING_GLOW = 0.15
#: Pixels rendered around the grid so that overlapping grids agree.
RENDER_PAD = 64
#: Relative sky-glow brightness over vegetation, water and roofs.
ALBEDO = {"vegetation": 0.55, "water": 0.2, "roof": 0.85}
_WATER_KINDS = {"water", "river", "lake", "pond", "reservoir", "basin", "riverbank", "sea", "bay"}


def _in_canvas(layer, box):  # noqa: ANN001, ANN202
    if layer is None or len(layer) == 0:
        return layer
    idx = layer.sindex.query(box, predicate="intersects")
    return layer.iloc[np.sort(idx)]


def _rasterize_ids(layer, *, shape, transform) -> np.ndarray:  # noqa: ANN001
    """0 where no feature, else 1 + the row position of the feature in ``layer``."""
    if layer is None or len(layer) == 0:
        return np.zeros(shape, dtype=np.int32)
    pairs = [(g, i + 1) for i, g in enumerate(layer.geometry.values) if g is not None]
    if not pairs:
        return np.zeros(shape, dtype=np.int32)
    return features.rasterize(pairs, out_shape=shape, transform=transform, fill=0, dtype="int32")


def _lookup(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    table = np.concatenate([[0.0], np.asarray(values, dtype=np.float32)]).astype(np.float32)
    return table[ids]


def _splat_lamps(lamps, *, shape, transform) -> np.ndarray:  # noqa: ANN001
    """Bilinear splat of lamp flux x colour onto a (3, h, w) grid of point sources."""
    out = np.zeros((3, *shape), dtype=np.float32)
    if lamps is None or len(lamps) == 0:
        return out
    inv = ~transform
    col, row = inv @ (shapely.get_x(lamps.geometry.values), shapely.get_y(lamps.geometry.values))
    fx, fy = np.asarray(col) - 0.5, np.asarray(row) - 0.5
    x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    wx, wy = fx - x0, fy - y0
    flux = lamps["flux"].to_numpy(dtype=np.float32)
    rgb = lamps[["r", "g", "b"]].to_numpy(dtype=np.float32).T
    for dy, dx, w in (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        for band in range(3):
            np.add.at(out[band], (yy[ok], xx[ok]), (flux * w * rgb[band])[ok])
    return out


def render_scene(
    scene: VectorScene,
    *,
    transform: Affine,
    shape: tuple[int, int],
    seed: int = 0,
    sky_glow: float = DEFAULT_SKY_GLOW,
    lamp_density: float = 1.0,
) -> np.ndarray:
    """Render linear RGB night-time radiance of a city on a raster grid.

    Parameters
    ----------
    scene : VectorScene
        Layers in a projected CRS. If ``scene.lamps`` is None the scene is lit
        first with :func:`~geo_ntl.simulate.lighting.light_scene` (``seed``,
        ``lamp_density``); pass a lit scene to render overlapping grids
        consistently.
    transform : affine.Affine
        North-up grid transform (pixel size e.g. 0.92 m), in the scene's CRS.
    shape : tuple of int
        ``(height, width)`` of the grid in pixels.
    seed : int, default 0
        Salt of the lit-window pattern (and of the lighting if not yet lit).
    sky_glow : float, default 0.06
        Ambient radiance of open ground (>= 0).
    lamp_density : float, default 1.0
        Lamps per metre multiplier, used only when the scene is not yet lit.

    Returns
    -------
    (3, height, width) ndarray of float32
        Linear radiance, 1.0 = full scale; lamp cores exceed 1.

    Raises
    ------
    ParameterError
        If the transform is rotated, the shape is not positive or ``sky_glow < 0``.

    Notes
    -----
    Light sources: lamps (a sharp core of sigma 0.6 px plus a ground pool of
    sigma 3 px), lit windows (2 x 2 px cells lit with each building's
    ``lit_share``), floodlit facades (building edges), floodlit areas, a faint
    sky glow dimmed over vegetation and water, and a weak local glow around lit
    areas. The grid is padded by :data:`RENDER_PAD` pixels while rendering and
    all per-pixel randomness is a hash of global pixel indices, so two
    overlapping grids of the same pixel size and alignment agree in the overlap.
    """
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ParameterError(
            f"render_scene needs a north-up transform without rotation, got {tuple(transform)[:6]}."
        )
    height, width = (int(v) for v in shape)
    if height <= 0 or width <= 0:
        raise ParameterError(f"shape must be two positive integers, got {shape!r}.")
    if not sky_glow >= 0:
        raise ParameterError(f"sky_glow must be >= 0, got {sky_glow!r}.")
    if scene.lamps is None:
        scene = light_scene(scene, seed=seed, lamp_density=lamp_density)
    pad = RENDER_PAD
    canvas = (height + 2 * pad, width + 2 * pad)
    t_pad = transform @ Affine.translation(-pad, -pad)
    x_min, y_max = t_pad @ (0, 0)
    x_max, y_min = t_pad @ (canvas[1], canvas[0])
    box = shapely.box(x_min, y_min, x_max, y_max)
    row0 = int(round(t_pad.f / t_pad.e))
    col0 = int(round(t_pad.c / t_pad.a))
    rows = (np.arange(canvas[0]) + row0)[:, None]
    cols = (np.arange(canvas[1]) + col0)[None, :]

    # Ambient sky glow, dimmed over vegetation, water and roofs.
    albedo = np.ones(canvas, dtype=np.float32)
    permeable = _in_canvas(scene.permeable, box)
    if permeable is not None and len(permeable):
        kinds = permeable["kind"].astype(str) if "kind" in permeable else None
        if kinds is not None:
            is_water = kinds.isin(_WATER_KINDS).to_numpy()
        else:
            is_water = np.zeros(len(permeable), dtype=bool)
        ids = _rasterize_ids(permeable, shape=canvas, transform=t_pad)
        veg = _lookup(ids, np.where(is_water, ALBEDO["water"], ALBEDO["vegetation"]))
        albedo = np.where(ids > 0, veg, albedo)
    water_ids = _rasterize_ids(_in_canvas(scene.water, box), shape=canvas, transform=t_pad)
    albedo[water_ids > 0] = ALBEDO["water"]
    buildings = _in_canvas(scene.buildings, box)
    b_ids = _rasterize_ids(buildings, shape=canvas, transform=t_pad)
    albedo[b_ids > 0] = ALBEDO["roof"]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 2)
    xw = (cols * t_pad.a) / 900.0
    yw = (rows * t_pad.e) / 1100.0
    variation = 1.0 + 0.2 * np.sin(xw + phase[0]) * np.cos(yw + phase[1])
    glow = (sky_glow * albedo * variation).astype(np.float32)
    radiance = np.stack([glow * np.float32(c) for c in SKY_GLOW_COLOUR])

    direct = np.zeros_like(radiance)
    # Floodlit open areas.
    areas = _in_canvas(scene.floodlit, box)
    a_ids = _rasterize_ids(areas, shape=canvas, transform=t_pad)
    if a_ids.any():
        unevenness = 0.8 + 0.4 * grid_uniform(rows // 16, cols // 16, salt=seed + 11)
        unevenness = ndimage.gaussian_filter(unevenness, 10.0)
        level = _lookup(a_ids, areas["radiance"].to_numpy()) * unevenness
        for band, name in enumerate("rgb"):
            direct[band] += level * _lookup(a_ids, areas[name].to_numpy())
    # Lit windows along the facades (seen obliquely from orbit), a dim glow from
    # skylights and rooftop fixtures, and floodlit facade edges.
    if b_ids.any():
        inner = ndimage.grey_erosion(b_ids, size=(5, 5))
        rim = (b_ids > 0) & (inner != b_ids)
        edge = (b_ids > 0) & (ndimage.grey_erosion(b_ids, size=(3, 3)) != b_ids)
        lit = rim & (
            grid_uniform(rows // 2, cols // 2, salt=seed + 7)
            < _lookup(b_ids, buildings["lit_share"].to_numpy())
        )
        window = _lookup(b_ids, buildings["window"].to_numpy())
        share = _lookup(b_ids, buildings["lit_share"].to_numpy())
        level = np.where(lit, window, np.float32(0.0)) + np.where(
            b_ids > 0, BUILDING_GLOW * share * window, np.float32(0.0)
        )
        level = level + np.where(edge, _lookup(b_ids, buildings["facade"].to_numpy()), 0.0)
        for band, name in enumerate("rgb"):
            direct[band] += level * _lookup(b_ids, buildings[name].to_numpy())
    # Street lamps: sharp cores plus ground pools.
    points = _splat_lamps(_in_canvas(scene.lamps, box), shape=canvas, transform=t_pad)
    for band in range(3):
        core = ndimage.gaussian_filter(points[band], LAMP_CORE_SIGMA, mode="constant", truncate=3)
        pool = ndimage.gaussian_filter(points[band], LAMP_POOL_SIGMA, mode="constant", truncate=3)
        direct[band] += (1 - LAMP_POOL_SHARE) * core + LAMP_POOL_SHARE * pool
    for band in range(3):
        radiance[band] += direct[band] + SCATTER_SHARE * ndimage.gaussian_filter(
            direct[band], SCATTER_SIGMA, mode="constant", truncate=3
        )
    return np.ascontiguousarray(radiance[:, pad:-pad, pad:-pad], dtype=np.float32)


def to_uint8(radiance: np.ndarray) -> np.ndarray:
    """Clip linear radiance to [0, 1] and quantise it to uint8 (0..255).

    Parameters
    ----------
    radiance : ndarray of float
        Linear radiance, 1.0 = full scale.

    Returns
    -------
    ndarray of uint8
        Same shape.
    """
    return np.round(np.clip(np.asarray(radiance, dtype=np.float32), 0.0, 1.0) * 255.0).astype(
        np.uint8
    )
