"""Small synthetic georeferenced rasters for tests, examples and benchmarks."""

from __future__ import annotations

import threading
import time

import numpy as np
import xarray as xr

__all__ = ["AtOnce", "make_scene"]


class AtOnce:
    """Count the most threads inside :meth:`visit` at the same time (tests of concurrency limits).

    Parameters
    ----------
    seconds : float, default 0.05
        How long each visit stays inside, so that unlimited threads overlap.
    """

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.most = 0
        self._inside = 0
        self._lock = threading.Lock()

    def visit(self) -> None:
        """Stay inside for ``seconds``, counting who else is."""
        with self._lock:
            self._inside += 1
            self.most = max(self.most, self._inside)
        time.sleep(self.seconds)
        with self._lock:
            self._inside -= 1


def make_scene(
    shape: tuple[int, int, int] | tuple[int, int] = (3, 64, 64),
    *,
    dtype: str = "uint8",
    crs: str | None = "EPSG:3067",
    resolution: float = 0.92,
    origin: tuple[float, float] = (385_000.0, 6_672_000.0),
    nodata: float | None = None,
    seed: int = 0,
    chunks: int | None = None,
) -> xr.DataArray:
    """Make a georeferenced night-light-like scene: dark noisy ground and bright lamps.

    Parameters
    ----------
    shape : tuple of int, default (3, 64, 64)
        ``(band, y, x)`` or ``(y, x)``.
    dtype : {"uint8", "uint16", "float32"}, default "uint8"
        Pixel type; floats are radiance in [0, 1].
    crs : str or None, default "EPSG:3067"
        CRS (ETRS-TM35FIN by default); None leaves the scene without one.
    resolution : float, default 0.92
        Pixel size in CRS units (Jilin-1's ground sampling).
    origin : (float, float), default (385000, 6672000)
        ``(x, y)`` of the upper-left corner.
    nodata : float, optional
        Nodata value to record (no pixel is set to it).
    seed : int, default 0
        Seed of the local random generator.
    chunks : int, optional
        Make it dask-backed with chunks of this edge.

    Returns
    -------
    xarray.DataArray
        Dims ``(band, y, x)`` (or ``(y, x)``) with pixel-centre coords.
    """
    import rioxarray  # noqa: F401  (registers .rio)
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    full = (1, *shape) if len(shape) == 2 else tuple(shape)
    bands, height, width = full
    radiance = np.abs(0.02 + 0.01 * rng.standard_normal((bands, height, width)))
    n_lamps = max(1, height * width // 200)
    ys, xs = rng.integers(0, height, n_lamps), rng.integers(0, width, n_lamps)
    radiance[:, ys, xs] += rng.uniform(0.3, 1.0, (bands, n_lamps))
    radiance = np.clip(radiance, 0, 1)
    np_dtype = np.dtype(dtype)
    if np.issubdtype(np_dtype, np.integer):
        values = np.round(radiance * np.iinfo(np_dtype).max).astype(np_dtype)
    else:
        values = radiance.astype(np_dtype)
    x = origin[0] + resolution * (np.arange(width) + 0.5)
    y = origin[1] - resolution * (np.arange(height) + 0.5)
    da = xr.DataArray(
        values, dims=("band", "y", "x"), coords={"band": np.arange(1, bands + 1), "y": y, "x": x}
    )
    if crs is not None:
        da = da.rio.write_crs(crs)
    da = da.rio.write_transform(from_origin(origin[0], origin[1], resolution, resolution))
    if nodata is not None:
        da = da.rio.write_nodata(nodata, encoded=False)
    if chunks is not None:
        da = da.chunk({"band": -1, "y": chunks, "x": chunks})
    return da.isel(band=0, drop=True) if len(shape) == 2 else da
