"""Scene-wide quantities of the enhancer, computed once before the per-tile pass.

The paper computes on one whole image. Four quantities depend on the whole
scene and would make a tiled result differ from the whole one if each tile
computed its own: the intensity scale (white level), the adaptive standard
deviation (ASD) on blocks of 1/50 of the scene's height and width, the global
exposure E_G (the scene mean of max_c R0, eq. 30) and the value that fills
nodata pixels. :func:`global_stats` computes them from block sums and an
overview (at most :data:`OVERVIEW_MAX` pixels on its long side), both of which
come from one task per chunk of a dask-backed scene (partial block sums added
up on the client; see :func:`_lazy_pass`), and for a numpy array from torch
block sums (numpy's ``nanmean`` over reshaped blocks cost as much as the whole
enhancement of the block).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geo_ntl._runs import run_starts, sum_runs
from geo_ntl.enhance.initial_estimate import LUMA_WEIGHTS
from geo_ntl.enhance.params import ASMParams
from geo_ntl.exceptions import AllNoDataError

if TYPE_CHECKING:
    import torch

__all__ = ["GlobalStats", "OVERVIEW_MAX", "asd_at", "global_stats", "white_level"]

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
    mean_luma : float
        Mean luminance of the valid pixels on [0, 1] (measured on the overview).
    black : float
        Black level: the 1st percentile of the overview's luminance on [0, 1].
    """

    shape: tuple[int, int]
    scale: float
    fill: tuple[float, ...]
    asd: np.ndarray
    block: tuple[int, int]
    e_g: float
    mean_luma: float = 0.0
    black: float = 0.0


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
    """NaN-ignoring means of a numpy (…, y, x) array over by x bx blocks (torch, float64 sums)."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ny, nx = math.ceil(h / by), math.ceil(w / bx)
    # float64: the ASD is sqrt(E[g^2] - E[g]^2), which float32 sums of dark scenes cancel away
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(-1, h, w)
    pad = (0, nx * bx - w, 0, ny * by - h)

    def block_sum(v: torch.Tensor) -> torch.Tensor:
        v = F.pad(v, pad) if any(pad) else v
        v = v.reshape(-1, ny * by, nx, bx).sum(-1)
        return v.reshape(-1, ny, by, nx).sum(2)

    # One summing pass tells whether there is any NaN (a finite sum means none); the
    # mask is only built when there is.
    if not bool(torch.isfinite(t.sum())) and bool((nan := torch.isnan(t)).any()):
        sums = block_sum(torch.where(nan, 0.0, t))
        count = block_sum((~nan).double())
    else:
        sums = block_sum(t)
        rows = torch.clamp(h - torch.arange(ny) * by, max=by).double()
        cols = torch.clamp(w - torch.arange(nx) * bx, max=bx).double()
        count = (rows[:, None] * cols[None, :]).expand_as(sums)
    mean = (sums / count).masked_fill_(count == 0, float("nan"))
    return mean.reshape(*x.shape[:-2], ny, nx).numpy()


def _block_reduce(x: np.ndarray, by: int, bx: int) -> np.ndarray:
    """NaN-ignoring means of a numpy (…, y, x) array over by x bx blocks anchored at (0, 0)."""
    return _block_nanmean_np(x, by, bx)


def _partial_block_sums(
    x: np.ndarray, y0: int, x0: int, by: int, bx: int
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Sum and count the non-NaN values of a chunk over the scene's by x bx blocks.

    The chunk starts at scene pixel ``(y0, x0)``; blocks are anchored at the
    scene origin, so a block cut by chunk edges gets partial sums from each
    chunk. Returns the first block row and column the chunk touches, then
    ``sums`` (float64) and ``counts`` (int64), both ``(…, n_block_rows, n_block_cols)``.
    """
    h, w = x.shape[-2:]
    rows = (y0 + np.arange(h)) // by
    cols = (x0 + np.arange(w)) // bx
    rs, cs = run_starts(rows), run_starts(cols)

    def block_sums(v: np.ndarray) -> np.ndarray:
        return sum_runs(v, rs, cs, dtype=np.float64)

    sums = block_sums(x)
    if np.isfinite(sums).all():  # no NaN in the chunk (the usual case): counts are block areas
        areas = np.diff(np.append(rs, h))[:, None] * np.diff(np.append(cs, w))[None, :]
        counts = np.broadcast_to(areas, sums.shape)
    else:
        valid = ~np.isnan(x)
        sums = block_sums(np.where(valid, x, 0.0))
        counts = block_sums(valid).astype(np.int64)
    return int(rows[0]), int(cols[0]), sums, counts


def _chunk_partials(
    block: np.ndarray,
    y0: int,
    x0: int,
    *,
    f: int,
    by: int,
    bx: int,
    scale: float | None,
    first: bool,
) -> dict:
    """Everything the scene-wide statistics need from one chunk, as small arrays.

    ``first``: the chunk's maximum and its overview sums; ``scale`` (when known):
    the sums of gray(I / scale) and of its square over the ASD blocks.
    """
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chunk
        if first:
            out["max"] = float(np.nanmax(block)) if block.size else np.nan
            out["overview"] = _partial_block_sums(block, y0, x0, f, f)
        if scale is not None:
            gray = (_gray(block) / scale).clip(0.0, 1.0)
            out["m1"] = _partial_block_sums(gray, y0, x0, by, bx)
            out["m2"] = _partial_block_sums(gray * gray, y0, x0, by, bx)
    return out


def _accumulate(parts: list[tuple[int, int, np.ndarray, np.ndarray]], shape: tuple) -> np.ndarray:
    """NaN-ignoring block means from the per-chunk partial sums (NaN where a block is empty)."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    for r0, c0, sums, counts in parts:
        nr, nc = sums.shape[-2:]
        total[..., r0 : r0 + nr, c0 : c0 + nc] += sums
        count[..., r0 : r0 + nr, c0 : c0 + nc] += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _lazy_pass(data, *, f: int, by: int, bx: int, scale: float | None, first: bool) -> list[dict]:
    """One task per chunk of a dask ``(band, y, x)`` array; the small results come back.

    A dask ``coarsen`` over blocks that do not align with the chunks would
    rechunk into hundreds of small tasks, which cost about a millisecond each
    on dask.distributed; here a scene of N chunks is N tasks besides its reads.
    """
    import dask

    if data.numblocks[0] != 1:
        data = data.rechunk({0: -1})
    y_off = np.concatenate([[0], np.cumsum(data.chunks[1])[:-1]])
    x_off = np.concatenate([[0], np.cumsum(data.chunks[2])[:-1]])
    blocks = data.to_delayed()[0]
    task = dask.delayed(_chunk_partials, pure=True)
    tasks = [
        task(
            blocks[i, j], int(y_off[i]), int(x_off[j]), f=f, by=by, bx=bx, scale=scale, first=first
        )
        for i in range(blocks.shape[0])
        for j in range(blocks.shape[1])
    ]
    return list(dask.compute(*tasks))


def asd_at(
    asd: np.ndarray,
    block: tuple[int, int],
    origin: tuple[float, float],
    shape: tuple[int, int],
    step: float,
    device: torch.device,
) -> torch.Tensor:
    """Bilinear interpolation of the block ASD grid at the centres of a coarse grid.

    Parameters
    ----------
    asd : (ny, nx) ndarray
        ASD per block, blocks anchored at the scene origin.
    block : (int, int)
        Block size in full-resolution pixels.
    origin : (float, float)
        Full-resolution ``(row, col)`` of the coarse grid's first pixel corner.
    shape : (int, int)
        Coarse-grid shape.
    step : float
        Coarse pixel size in full-resolution pixels.
    device : torch.device
        Result device.

    Returns
    -------
    (shape) torch.Tensor
    """
    import torch

    grid = torch.from_numpy(np.ascontiguousarray(asd, dtype=np.float32)).to(device)
    weights = []
    for axis in (0, 1):
        n_cells = grid.shape[axis]
        centres = (
            origin[axis]
            + (torch.arange(shape[axis], device=device, dtype=torch.float64) + 0.5) * step
        )
        pos = (centres / block[axis] - 0.5).clamp(0.0, n_cells - 1)
        i0 = pos.floor().long().clamp(max=n_cells - 1)
        i1 = (i0 + 1).clamp(max=n_cells - 1)
        frac = (pos - i0).float()
        wmat = torch.zeros(shape[axis], n_cells, device=device)
        rows = torch.arange(shape[axis], device=device)
        wmat[rows, i0] += 1.0 - frac
        wmat[rows, i1] += frac
        weights.append(wmat)
    return weights[0] @ grid @ weights[1].T


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

    from geo_ntl.enhance.initial_estimate import initial_reflectance

    bands, h, w = data.shape
    lazy = not isinstance(data, np.ndarray)
    by = max(1, math.ceil(h * params.asd_fraction))
    bx = max(1, math.ceil(w * params.asd_fraction))
    f = max(1, math.ceil(max(h, w) / OVERVIEW_MAX))
    ov_shape = (bands, math.ceil(h / f), math.ceil(w / f))
    asd_shape = (math.ceil(h / by), math.ceil(w / bx))
    # uint8's white level does not depend on the data: then one pass over a lazy scene reads it
    # once for everything; otherwise the moments need the maximum first (a second pass).
    known = white_level(dtype, np.nan) if np.dtype(dtype) == np.uint8 else None
    s1 = s2 = None
    if lazy:
        parts = _lazy_pass(data, f=f, by=by, bx=bx, scale=known, first=True)
        maxima = [p["max"] for p in parts if np.isfinite(p["max"])]
        vmax = max(maxima) if maxima else np.nan
        overview = _accumulate([p["overview"] for p in parts], ov_shape)
        if known is not None:
            s1 = _accumulate([p["m1"] for p in parts], asd_shape)
            s2 = _accumulate([p["m2"] for p in parts], asd_shape)
    else:
        vmax = np.fmax.reduce(data, axis=None) if data.size else np.nan  # NaN only if all NaN
        overview = _block_reduce(data, f, f)
    vmax = float(vmax)
    if not np.isfinite(vmax) or np.isnan(overview).all():
        raise AllNoDataError("the image has no valid pixel (all nodata, NaN or infinite)")
    scale = white_level(dtype, vmax)
    fill = tuple(float(v) if np.isfinite(v) else 0.0 for v in np.nanmean(overview, axis=(1, 2)))
    if s1 is None:
        if lazy:
            parts = _lazy_pass(data, f=f, by=by, bx=bx, scale=scale, first=False)
            s1 = _accumulate([p["m1"] for p in parts], asd_shape)
            s2 = _accumulate([p["m2"] for p in parts], asd_shape)
        else:
            # ASD: std of gray(I / scale) on blocks anchored at the scene origin.
            gray = (_gray(data) / scale).clip(0.0, 1.0)
            s1, s2 = _block_reduce(gray, by, bx), _block_reduce(gray * gray, by, bx)
    asd = np.sqrt(np.clip(np.nan_to_num(s2 - s1 * s1), 0.0, None)).astype(np.float32)
    # E_G on the overview: fill holes, scale, R0 at the overview's pixel size.
    ov = np.where(np.isnan(overview), np.asarray(fill, dtype=np.float32)[:, None, None], overview)
    ov = np.clip(ov / scale, 0.0, 1.0).astype(np.float32)
    dev = device if device is not None else torch.device("cpu")

    oh, ow = ov.shape[1:]
    tens = torch.from_numpy(ov).to(dev)
    asd_low = asd_at(asd, (by, bx), (0.0, 0.0), (oh, ow), float(f), dev)
    maps = initial_reflectance(tens, asd_low, params, cell=1, pixel=float(f))
    valid = torch.from_numpy(~np.isnan(overview).all(axis=0)).to(dev)
    e_g = float(maps.r0.amax(0)[valid].mean()) if bool(valid.any()) else 0.5
    luma = _gray(ov)[~np.isnan(overview).all(axis=0)]
    return GlobalStats(
        shape=(h, w),
        scale=scale,
        fill=fill,
        asd=asd,
        block=(by, bx),
        e_g=e_g,
        mean_luma=float(luma.mean()),
        black=float(np.percentile(luma, 1.0)),
    )
