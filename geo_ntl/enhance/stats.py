"""Scene-wide quantities of the enhancer, computed once before the per-tile pass.

The paper computes on one whole image. Four quantities depend on the whole
scene and would make a tiled result differ from the whole one if each tile
computed its own: the intensity scale (white level), the adaptive standard
deviation (ASD) on blocks of 1/50 of the scene's height and width, the global
exposure E_G (the scene mean of max_c R0, eq. 30) and the value that fills
nodata pixels. :func:`global_stats` computes them from block sums and an
overview (at most :data:`OVERVIEW_MAX` pixels on its long side), both of which
are streaming dask reductions for a dask-backed scene (for a numpy array, the
NaN-aware block means are torch block sums: numpy's ``nanmean`` over reshaped
blocks cost as much as the whole enhancement of the block).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from geo_ntl.enhance.init import LUMA_WEIGHTS
from geo_ntl.enhance.params import ASMParams
from geo_ntl.exceptions import AllNoDataError

__all__ = ["GlobalStats", "OVERVIEW_MAX", "global_stats", "white_level"]

#: Longest side, in pixels, of the overview on which E_G is measured.
OVERVIEW_MAX = 512


@dataclass(frozen=True)
class GlobalStats:
    """Scene-wide inputs of the per-tile pass.

    Attributes
    ----------
    shape : (int, int)
        Scene ``(height, width)``.
    scale : float
        Value mapped to 1.0 (255 for uint8, the scene maximum otherwise).
    fill : tuple of float
        Per-band value (scene DN) put into nodata pixels before filtering.
    asd : (ny, nx) ndarray
        Standard deviation of gray(I / scale) on each ASD block.
    block : (int, int)
        ASD block ``(height, width)`` in pixels.
    e_g : float
        Global exposure E_G.
    """

    shape: tuple[int, int]
    scale: float
    fill: tuple[float, ...]
    asd: np.ndarray
    block: tuple[int, int]
    e_g: float


def white_level(dtype: np.dtype, valid_max: float) -> float:
    """Value that maps to 1.0: 255 for uint8, else the scene's valid maximum (1.0 if <= 0)."""
    if np.dtype(dtype) == np.uint8:
        return 255.0
    return float(valid_max) if np.isfinite(valid_max) and valid_max > 0 else 1.0


def _gray(x):
    if x.shape[0] == 3:
        return x[0] * LUMA_WEIGHTS[0] + x[1] * LUMA_WEIGHTS[1] + x[2] * LUMA_WEIGHTS[2]
    return x.mean(axis=0)


def _block_nanmean_np(x: np.ndarray, by: int, bx: int) -> np.ndarray:
    """NaN-ignoring means of a numpy (…, y, x) array over by x bx blocks (torch, float32)."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ny, nx = math.ceil(h / by), math.ceil(w / bx)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, h, w)
    pad = (0, nx * bx - w, 0, ny * by - h)

    def block_sum(v: torch.Tensor) -> torch.Tensor:
        v = F.pad(v, pad) if any(pad) else v
        v = v.reshape(-1, ny * by, nx, bx).sum(-1)
        return v.reshape(-1, ny, by, nx).sum(2)

    # One summing pass tells whether there is any NaN (a finite sum means none); the
    # mask is only built when there is.
    if not bool(torch.isfinite(t.sum())) and bool((nan := torch.isnan(t)).any()):
        sums = block_sum(torch.where(nan, 0.0, t))
        count = block_sum((~nan).float())
    else:
        sums = block_sum(t)
        rows = torch.clamp(h - torch.arange(ny) * by, max=by).float()
        cols = torch.clamp(w - torch.arange(nx) * bx, max=bx).float()
        count = (rows[:, None] * cols[None, :]).expand_as(sums)
    mean = (sums / count).masked_fill_(count == 0, float("nan"))
    return mean.reshape(*x.shape[:-2], ny, nx).numpy()


def _block_reduce(x, by: int, bx: int, how: str):
    """Reduce a (…, y, x) numpy or dask array (NaN = missing) over by x bx blocks, padding with NaN."""
    h, w = x.shape[-2:]
    ny, nx = math.ceil(h / by), math.ceil(w / bx)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ny * by - h), (0, nx * bx - w)]
    if isinstance(x, np.ndarray):
        if how == "nanmean":
            return _block_nanmean_np(x, by, bx)
        xp = np.pad(x, pad, constant_values=np.nan)
        blocks = xp.reshape(*x.shape[:-2], ny, by, nx, bx)
        return getattr(np, how)(blocks, axis=(-3, -1))
    import dask.array as dsa

    xp = dsa.pad(x, pad, mode="constant", constant_values=np.nan)
    xp = xp.rechunk(
        xp.chunks[:-2]
        + (max(by, (xp.chunks[-2][0] // by) * by), max(bx, (xp.chunks[-1][0] // bx) * bx))
    )
    return dsa.coarsen(getattr(np, how), xp, {x.ndim - 2: by, x.ndim - 1: bx}, trim_excess=False)


def global_stats(data, *, dtype, params: ASMParams, device=None) -> GlobalStats:
    """Compute :class:`GlobalStats` for a ``(band, y, x)`` float array with NaN for invalid pixels.

    Parameters
    ----------
    data : (band, y, x) numpy.ndarray or dask.array.Array
        Float32 pixel values (original scale), NaN where invalid.
    dtype : numpy.dtype
        The scene's original dtype (sets the white level).
    params : ASMParams
        Parameters.
    device : torch.device, optional
        Device for the overview's R0.

    Returns
    -------
    GlobalStats

    Raises
    ------
    AllNoDataError
        If no pixel is valid.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _global_stats(data, dtype=dtype, params=params, device=device)


def _global_stats(data, *, dtype, params: ASMParams, device=None) -> GlobalStats:
    import torch

    from geo_ntl.enhance.init import initial_reflectance

    bands, h, w = data.shape
    lazy = not isinstance(data, np.ndarray)
    by = max(1, math.ceil(h * params.asd_fraction))
    bx = max(1, math.ceil(w * params.asd_fraction))
    f = max(1, math.ceil(max(h, w) / OVERVIEW_MAX))
    if lazy:
        import dask.array as dsa

        vmax = dsa.nanmax(data)
    else:
        vmax = np.fmax.reduce(data, axis=None) if data.size else np.nan  # NaN only if all NaN
    overview = _block_reduce(data, f, f, "nanmean")

    def block_moments(scale: float):
        # ASD: std of gray(I / scale) on blocks anchored at the scene origin.
        gray = (_gray(data) / scale).clip(0.0, 1.0)
        return _block_reduce(gray, by, bx, "nanmean"), _block_reduce(gray * gray, by, bx, "nanmean")

    # uint8's white level does not depend on the data: then one pass over a lazy scene reads it
    # once for everything; otherwise the moments need the maximum first (a second pass).
    scale_known = np.dtype(dtype) == np.uint8
    s1 = s2 = None
    if lazy:
        import dask

        if scale_known:
            moments = block_moments(white_level(dtype, np.nan))
            vmax, overview, s1, s2 = dask.compute(vmax, overview, *moments)
        else:
            vmax, overview = dask.compute(vmax, overview)
    vmax = float(vmax)
    if not np.isfinite(vmax) or np.isnan(overview).all():
        raise AllNoDataError("the image has no valid pixel (all nodata, NaN or infinite)")
    scale = white_level(dtype, vmax)
    fill = tuple(float(v) if np.isfinite(v) else 0.0 for v in np.nanmean(overview, axis=(1, 2)))
    if s1 is None:
        s1, s2 = block_moments(scale)
        if lazy:
            s1, s2 = dask.compute(s1, s2)
    asd = np.sqrt(np.clip(np.nan_to_num(s2 - s1 * s1), 0.0, None)).astype(np.float32)
    # E_G on the overview: fill holes, scale, R0 at the overview's pixel size.
    ov = np.where(np.isnan(overview), np.asarray(fill, dtype=np.float32)[:, None, None], overview)
    ov = np.clip(ov / scale, 0.0, 1.0).astype(np.float32)
    dev = device if device is not None else torch.device("cpu")
    from geo_ntl.enhance.core import asd_at

    oh, ow = ov.shape[1:]
    tens = torch.from_numpy(ov).to(dev)
    asd_low = asd_at(asd, (by, bx), (0.0, 0.0), (oh, ow), float(f), dev)
    maps = initial_reflectance(tens, asd_low, params, cell=1, pixel=float(f))
    valid = torch.from_numpy(~np.isnan(overview).all(axis=0)).to(dev)
    e_g = float(maps.r0.amax(0)[valid].mean()) if bool(valid.any()) else 0.5
    return GlobalStats(shape=(h, w), scale=scale, fill=fill, asd=asd, block=(by, bx), e_g=e_g)
