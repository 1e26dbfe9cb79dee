"""A second night-scene simulator: point-source street lamps on a random street graph.

:func:`geo_ntl.simulate.synthetic_city` renders lamps, buildings and parks from
vector layers. Training a deblooming model on one simulator teaches it that
simulator, so the solver's training mixes in scenes made differently: a street
graph from the edges of a random Voronoi diagram (irregular blocks, streets at
every angle), a lamp every 10-40 px along each street, whose brightness is
log-normal so that some lamps exceed full scale by a factor of ten, small pools
of light on the road under each lamp, rows of dim lit windows, a few floodlit
yards, and a dim textured ground. Colours are sodium, LED or mixed per scene.

The result is *linear* radiance where 1.0 is the sensor's full scale (values
above 1 are lamps brighter than it), ready for :func:`geo_ntl.simulate.degrade`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, spatial

__all__ = ["LAMP_COLOURS", "street_lamp_scene"]

#: RGB of the lamp types (sodium, white LED, warm LED).
LAMP_COLOURS = np.array([[1.0, 0.62, 0.28], [0.9, 0.95, 1.0], [1.0, 0.85, 0.65]])


def _splat(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, values: np.ndarray) -> None:
    """Add point sources at sub-pixel positions (bilinear), ``values`` (n, 3)."""
    h, w = canvas.shape[1:]
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                       (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):  # fmt: skip
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        for b in range(3):
            np.add.at(canvas[b], (yy[ok], xx[ok]), values[ok, b] * wt[ok])


def _street_segments(rng: np.random.Generator, size: int) -> np.ndarray:
    """Segments ``(n, 2, 2)`` (y, x) of a Voronoi street graph covering the square."""
    n_sites = int(rng.integers(6, 30)) * max(1, (size // 256) ** 2)
    sites = rng.uniform(-0.2 * size, 1.2 * size, (n_sites, 2))
    vor = spatial.Voronoi(sites)
    segs = []
    for a, b in vor.ridge_vertices:
        if a < 0 or b < 0:
            continue
        p, q = vor.vertices[a], vor.vertices[b]
        if np.all((p < -size) | (p > 2 * size)) and np.all((q < -size) | (q > 2 * size)):
            continue
        segs.append((p, q))
    return np.array(segs, dtype=np.float64).reshape(-1, 2, 2)


def street_lamp_scene(size: int, *, seed: int) -> np.ndarray:
    """Linear radiance ``(3, size, size)`` of a scene of street lamps (1.0 = full scale).

    Parameters
    ----------
    size : int
        Side in pixels.
    seed : int
        Seed of everything drawn.

    Returns
    -------
    ndarray of float32

    Examples
    --------
    >>> scene = street_lamp_scene(128, seed=0)
    >>> scene.shape, bool(scene.min() >= 0), bool(scene.max() > 0.3)
    ((3, 128, 128), True, True)
    """
    rng = np.random.default_rng(seed)
    canvas = np.zeros((3, size, size), dtype=np.float64)
    # Dim textured ground (sky glow on open land, dark roofs).
    ground = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(2, 12))
    ground = (ground - ground.min()) / max(np.ptp(ground), 1e-9)
    tint = np.array([1.0, 0.9, 0.75]) * rng.uniform(0.003, 0.03)
    canvas += tint[:, None, None] * (0.4 + ground)[None]
    kinds = rng.dirichlet(np.ones(3) * rng.uniform(0.2, 2.0))
    spacing = rng.uniform(10, 40)
    median = float(np.exp(rng.uniform(np.log(0.8), np.log(12.0))))
    pools = np.zeros_like(canvas)
    points = np.zeros_like(canvas)
    for p, q in _street_segments(rng, size):
        length = float(np.hypot(*(q - p)))
        n = int(length // spacing)
        if n < 1:
            continue
        t = (np.arange(n) + rng.uniform(0, 1)) / n
        side = rng.choice([-1.0, 1.0], n) * rng.uniform(0, 3) if rng.random() < 0.5 else 0.0
        normal = np.array([-(q - p)[1], (q - p)[0]]) / length
        pos = p[None] + t[:, None] * (q - p)[None] + np.outer(side * np.ones(n), normal)
        kind = rng.choice(3, p=kinds)
        colour = LAMP_COLOURS[kind] * rng.uniform(0.9, 1.1, 3)
        flux = median * rng.lognormal(0.0, 0.8, n)
        values = flux[:, None] * colour[None]
        _splat(points, pos[:, 0], pos[:, 1], values)
        _splat(pools, pos[:, 0], pos[:, 1], 0.6 * values)
    # Lamps are 1-2 px sources; their pools of light on the road 3-6 px.
    canvas += ndimage.gaussian_filter(points, (0, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)))
    canvas += ndimage.gaussian_filter(pools, (0, *(2 * [rng.uniform(3, 6)])))
    # Rows of lit windows and floodlit yards.
    for _ in range(int(rng.integers(0, 8)) * max(1, (size // 256) ** 2)):
        y, x = rng.integers(0, size, 2)
        rows, cols = rng.integers(2, 6), rng.integers(3, 12)
        gy, gx = rng.integers(3, 6, 2)
        level = rng.uniform(0.05, 0.4)
        for r in range(rows):
            for c in range(cols):
                if rng.random() < 0.6:
                    yy, xx = y + r * gy, x + c * gx
                    if yy < size - 1 and xx < size - 1:
                        canvas[:, yy : yy + 2, xx : xx + 2] += (
                            level * LAMP_COLOURS[2][:, None, None]
                        )
    for _ in range(int(rng.integers(0, 3))):
        y, x = rng.integers(0, size, 2)
        hh, ww = rng.integers(8, 40, 2)
        yard = np.zeros((size, size))
        yard[y : y + hh, x : x + ww] = rng.uniform(0.2, 0.9)
        canvas += ndimage.gaussian_filter(yard, 1.5)[None] * LAMP_COLOURS[1][:, None, None]
    return canvas.astype(np.float32)
