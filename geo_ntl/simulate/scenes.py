"""Write simulated scenes as georeferenced Cloud-Optimized GeoTIFF pairs.

:func:`synthetic_scenes` lays ``n`` overlapping scenes out on one common grid
over a single procedural city, so that a mosaic of them is a seamless city:
the clean truth of two scenes is identical where they overlap, while the
degraded scenes differ there only by their noise, as two acquisitions would.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from geo_ntl._atomic import check_output_path
from geo_ntl.exceptions import OutputPathError, ParameterError
from geo_ntl.simulate.city import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    DEFAULT_RESOLUTION,
    generate_city,
)
from geo_ntl.simulate.degrade import degrade
from geo_ntl.simulate.lighting import light_scene
from geo_ntl.simulate.render import DEFAULT_SKY_GLOW, render_scene, to_uint8

__all__ = [
    "BAND_NAMES",
    "DEFAULT_SCENE_SIZE",
    "DEFAULT_OVERLAP",
    "ScenePair",
    "scene_grid",
    "to_dataarray",
    "synthetic_scenes",
]

#: Band descriptions written to the COGs.
BAND_NAMES = ("red", "green", "blue")
#: Scene edge in pixels.
DEFAULT_SCENE_SIZE = 1024
#: Overlap between neighbouring scenes in pixels.
DEFAULT_OVERLAP = 128


@dataclass(frozen=True)
class ScenePair:
    """Paths and grid of one written scene.

    Attributes
    ----------
    index : int
        Scene number (row-major on the layout).
    degraded : pathlib.Path
        Degraded scene COG (``scene_NNN.tif``).
    clean : pathlib.Path
        Clean truth COG (``truth_NNN.tif``).
    transform : affine.Affine
        Grid transform of both files.
    """

    index: int
    degraded: Path
    clean: Path
    transform: Affine


def to_dataarray(
    array: np.ndarray,
    *,
    transform: Affine,
    crs: str | CRS,
    band_names: tuple[str, ...] = BAND_NAMES,
) -> xr.DataArray:
    """Wrap a (band, y, x) array as a georeferenced DataArray (rioxarray).

    Parameters
    ----------
    array : (band, y, x) ndarray
        Pixels.
    transform : affine.Affine
        North-up grid transform.
    crs : str or pyproj.CRS
        Coordinate reference system.
    band_names : tuple of str, default ("red", "green", "blue")
        Band descriptions, stored in ``attrs["long_name"]``.

    Returns
    -------
    xarray.DataArray
        Dims ``(band, y, x)`` with pixel-centre coordinates, CRS and transform.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    bands, height, width = array.shape
    xs = transform.c + transform.a * (np.arange(width) + 0.5)
    ys = transform.f + transform.e * (np.arange(height) + 0.5)
    da = xr.DataArray(
        array,
        dims=("band", "y", "x"),
        coords={"band": np.arange(1, bands + 1), "y": ys, "x": xs},
        attrs={"long_name": tuple(band_names[:bands])},
    )
    da = da.rio.write_crs(CRS.from_user_input(crs))
    return da.rio.write_transform(transform)


def scene_grid(
    n: int,
    *,
    size: int = DEFAULT_SCENE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    resolution: float = DEFAULT_RESOLUTION,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
) -> list[Affine]:
    """Lay ``n`` square scenes out row-major on a common grid; return their transforms.

    Parameters
    ----------
    n : int
        Number of scenes (>= 1); ``ceil(sqrt(n))`` per row.
    size : int, default 1024
        Scene edge in pixels.
    overlap : int, default 128
        Pixels shared by neighbouring scenes (0 <= overlap < size).
    resolution : float, default 0.92
        Pixel size in metres.
    origin : tuple of float
        Upper-left corner of the first scene.

    Returns
    -------
    list of affine.Affine
        Scene ``i`` starts ``(size - overlap) * (i % cols)`` pixels east and
        ``(size - overlap) * (i // cols)`` pixels south of ``origin``: every
        scene is on the same pixel grid.

    Raises
    ------
    ParameterError
        If ``n``, ``size`` or ``overlap`` is out of range.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ParameterError(f"number of scenes must be an integer >= 1, got {n!r}.")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 16:
        raise ParameterError(f"scene size must be an integer >= 16 pixels, got {size!r}.")
    if not 0 <= overlap < size:
        raise ParameterError(f"overlap must be in [0, size) = [0, {size}), got {overlap!r} pixels.")
    if not resolution > 0:
        raise ParameterError(f"resolution must be > 0 metres, got {resolution!r}.")
    cols = math.ceil(math.sqrt(n))
    step = (size - overlap) * resolution
    return [
        Affine(
            resolution,
            0.0,
            origin[0] + step * (i % cols),
            0.0,
            -resolution,
            origin[1] - step * (i // cols),
        )
        for i in range(n)
    ]


def synthetic_scenes(
    n: int,
    *,
    out_dir: str | os.PathLike,
    size: int = DEFAULT_SCENE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    seed: int = 0,
    crs: str | CRS = DEFAULT_CRS,
    resolution: float = DEFAULT_RESOLUTION,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    lamp_density: float = 1.0,
    sky_glow: float = DEFAULT_SKY_GLOW,
    psf: np.ndarray | None = None,
    overwrite: bool = False,
    **degrade_options: Any,
) -> list[ScenePair]:
    """Write ``n`` overlapping (degraded, clean) COG pairs of one synthetic city.

    Parameters
    ----------
    n : int
        Number of scenes.
    out_dir : str or os.PathLike
        Existing folder; files are ``scene_NNN.tif`` (degraded) and
        ``truth_NNN.tif`` (clean), uint8 RGB COGs.
    size : int, default 1024
        Scene edge in pixels.
    overlap : int, default 128
        Pixels shared by neighbouring scenes.
    seed : int, default 0
        Seed of the city, its lighting and the noise (scene ``i`` uses its own
        stream).
    crs : str or pyproj.CRS, default "EPSG:3067"
        Projected CRS (metres).
    resolution : float, default 0.92
        Pixel size in metres.
    origin : tuple of float
        Upper-left corner of the first scene.
    lamp_density : float, default 1.0
        Lamps per metre of road, relative to the default lighting.
    sky_glow : float, default 0.06
        Ambient radiance of open ground.
    psf : (h, w) ndarray, optional
        Blur kernel; default the 15-pixel Moffat.
    overwrite : bool, default False
        Replace existing files.
    **degrade_options
        Passed to :func:`~geo_ntl.simulate.degrade`.

    Returns
    -------
    list of ScenePair

    Raises
    ------
    OutputExistsError
        If a file exists and ``overwrite`` is False (checked before any work).
    OutputPathError
        If ``out_dir`` does not exist or is not writable.
    ParameterError
        If a size or option is out of range.

    Notes
    -----
    The city is laid out and lit once over the union of all scenes, and each
    scene is rendered from it on its own window of the common grid, so the
    clean scenes agree exactly where they overlap. Memory is that of one scene
    (about 40 bytes per pixel while degrading) plus the vector layers.
    """
    from geo_ntl.io import write_cog

    transforms = scene_grid(n, size=size, overlap=overlap, resolution=resolution, origin=origin)
    folder = Path(out_dir)
    if not folder.is_dir():
        raise OutputPathError(f"output folder {folder} does not exist; create it first.")
    pairs = [
        ScenePair(i, folder / f"scene_{i:03d}.tif", folder / f"truth_{i:03d}.tif", t)
        for i, t in enumerate(transforms)
    ]
    for pair in pairs:
        check_output_path(pair.degraded, overwrite=overwrite)
        check_output_path(pair.clean, overwrite=overwrite)
    xmin = min(t.c for t in transforms)
    ymax = max(t.f for t in transforms)
    xmax = max(t.c for t in transforms) + size * resolution
    ymin = min(t.f for t in transforms) - size * resolution
    seeds = np.random.SeedSequence(seed).generate_state(2 + n)
    city = generate_city((xmin, ymin, xmax, ymax), seed=int(seeds[0]), crs=crs)
    city = light_scene(city, seed=int(seeds[1]), lamp_density=lamp_density)
    params = {
        "seed": seed,
        "lamp_density": lamp_density,
        "sky_glow": sky_glow,
        "size": size,
        "overlap": overlap,
        **degrade_options,
    }
    for pair in pairs:
        radiance = render_scene(
            city,
            transform=pair.transform,
            shape=(size, size),
            seed=int(seeds[1]),
            sky_glow=sky_glow,
        )
        degraded = degrade(radiance, seed=int(seeds[2 + pair.index]), psf=psf, **degrade_options)
        tags = {"GEO_NTL_SCENE_INDEX": pair.index}
        write_cog(
            to_dataarray(to_uint8(radiance), transform=pair.transform, crs=crs),
            pair.clean,
            overwrite=overwrite,
            stage="simulate-truth",
            params=params,
            tags=tags,
        )
        write_cog(
            to_dataarray(to_uint8(degraded), transform=pair.transform, crs=crs),
            pair.degraded,
            overwrite=overwrite,
            stage="simulate-degraded",
            params=params,
            tags=tags,
        )
    return pairs
