"""Run the deblooming GAN on scenes (tiled, lazy) and on arrays.

:func:`deblur` runs the generator through :func:`geo_ntl.tiling.apply_tiled`
with a halo of :data:`DEFAULT_HALO` pixels between tiles (at least the
generator's effective receptive field, see
:func:`geo_ntl.deblur.model.receptive_field`), projects the network's correction
so that it conserves light (:mod:`geo_ntl.deblur.flux`, a second exact tiled
pass; ``conserve=False`` skips it). For a viewing rendition, compose it with the
ASM low-light enhancer (:func:`geo_ntl.enhance.enhance`), or run both over files
with :func:`geo_ntl.pipeline.restore_scenes`, which runs the GAN once.
The scene's own edges get no halo (``boundary="none"``): the generator meets
them with its own padding, as it does on a whole image and as it did on the
edges of its training crops, so no pixel beyond the scene is computed.

Band handling
    3 bands are RGB. A 1-band (panchromatic) scene is replicated to three
    identical channels, deblurred, and merged back as the mean of the three
    output channels. 2- and 4-band scenes raise
    :class:`~geo_ntl.exceptions.UnsupportedRasterError` (select three bands,
    e.g. ``da.isel(band=[0, 1, 2])``): the network was trained on RGB only.

Scaling
    uint8 is read as 0..255. uint16, int16 and float are divided by ``scale``,
    by default the scene's largest valid value (one streamed pass), and the
    result is multiplied back; the output keeps the input dtype (integers
    rounded and clipped).

Nodata and NaN
    Nodata pixels (every band equal to the nodata value) and pixels with a NaN
    band are fed to the network as black (no light) so they do not bloom into
    their neighbours, and are nodata (or NaN for float scenes without a
    nodata value) again in the result.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geo_ntl import defaults
from geo_ntl._raster import (
    as_band_yx,
    as_band_yx_array,
    check_dtype,
    invalid_pixels,
    like,
    to_dtype,
)
from geo_ntl.deblur.flux import CLIP_RADIUS, FLUX_SIGMA, conserve_flux, flux_halo, ordered_dither
from geo_ntl.exceptions import ParameterError, TilingError, UnsupportedRasterError
from geo_ntl.tiling import TilePlacement

if TYPE_CHECKING:
    from geo_ntl._device import DevicePlan

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_HALO",
    "DEFAULT_BATCH_SIZE",
    "deblur",
    "deblur_array",
]

#: Tile edge in pixels (halo excluded). Large, so the halo costs little: an
#: interior tile computes (2048 + 2 x 100)^2 / 2048^2 = 1.20 x its pixels, a
#: scene of 2 x 2 tiles 1.10 x, a scene of one tile 1.0 x. (:data:`geo_ntl.defaults.DEBLUR_TILE`)
DEFAULT_TILE = defaults.DEBLUR_TILE
#: Halo in pixels on every side of a tile (multiple of 4). The shipped
#: generator's effective receptive field holds 99 % of its gradient mass within
#: 96 px (99.9 % within 118 px; theoretical radius 192 px); tiled and whole
#: results differ by at most 1 DN at this halo (benchmarks/RESULTS.md,
#: benchmarks/results/deblur_speed_2048.json).
DEFAULT_HALO = 100
#: Tiles per forward pass on a GPU; on a CPU batching gains nothing and
#: multiplies memory, so tiles run one at a time there.
DEFAULT_BATCH_SIZE = 4
_MULT = 4  # the generator's down-sampling factor
#: Smallest window edge the generator takes: its quarter-resolution blocks reflect-pad 6 px
#: (5x5 convolutions at dilation 3), which needs more than 6 px there.
_MIN_WINDOW = 32


#: Largest batch that fitted in the device's memory, by (device, window height, width).
_FITTING: dict[tuple[Any, ...], int] = {}


def _pad_to_valid(size: int) -> int:
    """Pixels to add to a window edge so the generator can run on it."""
    return _MIN_WINDOW - size if size < _MIN_WINDOW else (-size) % _MULT


def _scale_for(dtype: np.dtype, data: Any, nodata: float | None) -> float:
    if dtype == np.uint8:
        return 255.0
    import dask.array as dsa

    arr = data if isinstance(data, dsa.Array) else dsa.from_array(np.asarray(data))
    valid = arr
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid = dsa.where(arr == nodata, 0, arr)
    top = float(dsa.nanmax(valid).compute())
    return top if np.isfinite(top) and top > 0 else 1.0


def _clip_level(
    dtype: np.dtype,
    scale: float,
    *,
    saturation: float | None,
    scale_given: bool,
    attrs: dict[str, Any] | None = None,
) -> float:
    """Return the level at which the sensor clipped, for the flux pass (inf: none).

    Integer data clips at its full scale. Float radiance is not clipped at the scene's
    maximum: only a level the caller gives (``saturation``, or ``scale``) or the product
    states (a ``SATURATION`` tag) lets the flux pass remove light.
    """
    if saturation is not None:
        level = float(saturation)
        if not np.isfinite(level) or level <= 0:
            raise ParameterError(f"saturation must be a positive level, got {saturation!r}")
        return level
    if dtype.kind in "ui" or scale_given:
        return scale
    for key, value in (attrs or {}).items():
        if str(key).lower() == "saturation":
            try:
                return float(value) if float(value) > 0 else float("inf")
            except (TypeError, ValueError):
                break
    return float("inf")


def _check_bands(n: int) -> None:
    if n not in (1, 3):
        raise UnsupportedRasterError(
            f"the deblooming GAN needs 1 (panchromatic) or 3 (RGB) bands, got {n}; select three "
            "bands with da.isel(band=[0, 1, 2]) (or `gdal_translate -b 1 -b 2 -b 3`)"
        )


class _Runner:
    """Picklable per-block function: scale, split into tiles, batch, run, merge."""

    def __init__(
        self,
        *,
        weights: Any,
        device: str,
        halo: int,
        tile: int,
        batch_size: int,
        scale: float,
        nodata: float | None,
        bands: int,
        out_dtype: np.dtype,
        precision: str = "fp32",
    ) -> None:
        self.weights = weights
        self.device = device  # resolved where the task runs
        self.precision = precision
        self.halo = halo
        self.tile = tile
        self.batch_size = batch_size
        self.scale = scale
        self.nodata = nodata
        self.bands = bands
        self.out_dtype = np.dtype(out_dtype)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Run the generator on a (N, 3, h, w) float32 batch in [-1, 1] (h, w multiples of 4)."""
        import torch

        from geo_ntl._device import autocast_dtype, gpu_slot, resolve_device
        from geo_ntl.deblur.weights import get_generator

        dev = resolve_device(self.device)
        model = get_generator(self.weights, device=str(dev))
        half = autocast_dtype(self.precision) if dev.type == "cuda" else None
        with gpu_slot(dev), torch.inference_mode():
            t = torch.from_numpy(x).to(dev)
            with torch.autocast("cuda", dtype=half, enabled=half is not None):
                y = model(t)
            return y.float().cpu().numpy()

    def _forward_fitting(self, x: np.ndarray) -> np.ndarray:
        """:meth:`_forward` in batches that fit: halved while the device runs out of memory.

        The largest batch of a window size that fitted is remembered in this process, so the
        next tiles start from it rather than running out of memory again.
        """
        import torch

        key = (self.device, *x.shape[2:])
        fits = _FITTING.get(key, len(x))
        if len(x) > fits:
            parts = [x[i : i + fits] for i in range(0, len(x), fits)]
            return np.concatenate([self._forward_fitting(part) for part in parts])
        try:
            return self._forward(x)
        except torch.OutOfMemoryError as exc:
            if len(x) == 1:
                from geo_ntl._device import on_out_of_memory

                raise on_out_of_memory(
                    exc,
                    what=f"one {x.shape[2]} x {x.shape[3]} px window of the GAN (batch of 1)",
                    options={"`tile`": "tile"},
                ) from exc
            torch.cuda.empty_cache()
            _FITTING[key] = min(_FITTING.get(key, len(x)), len(x) // 2)
            return self._forward_fitting(x)

    def run_rgb(
        self, rgb: np.ndarray, block_halo: tuple[int, int, int, int] = (0, 0, 0, 0)
    ) -> np.ndarray:
        """Deblur a (3, H, W) float32 block in [0, 1] with ``block_halo`` px of context around it.

        The block's outer ``block_halo`` px (top, bottom, left, right) are context from
        neighbouring blocks. The block's core is cut into windows of ``tile`` px, each run with
        ``self.halo`` px of context around it where the block has them (a block side without
        halo is the scene's edge, which the generator meets with its own padding).
        """
        d, tile = self.halo, self.tile
        _, hb, wb = rgb.shape
        top, bottom, left, right = block_halo
        out = np.zeros_like(rgb)
        groups: dict[tuple[int, int], list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
        for y0 in range(top, max(hb - bottom, top + 1), tile):
            for x0 in range(left, max(wb - right, left + 1), tile):
                core = (y0, min(y0 + tile, hb - bottom), x0, min(x0 + tile, wb - right))
                ext = (max(0, y0 - d), min(hb, core[1] + d), max(0, x0 - d), min(wb, core[3] + d))
                groups.setdefault((ext[1] - ext[0], ext[3] - ext[2]), []).append((core, ext))
        for (h, w), windows in groups.items():
            ph, pw = _pad_to_valid(h), _pad_to_valid(w)
            for i in range(0, len(windows), self.batch_size):
                chunk = windows[i : i + self.batch_size]
                batch = np.stack([rgb[:, a:b, c:e] for _, (a, b, c, e) in chunk]) * 2.0 - 1.0
                if ph or pw:
                    batch = np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
                res = (self._forward_fitting(batch.astype(np.float32))[:, :, :h, :w] + 1.0) * 0.5
                for ((y0, y1, x0, x1), (a, _, c, _)), r in zip(chunk, res, strict=True):
                    out[:, y0:y1, x0:x1] = r[:, y0 - a : y1 - a, x0 - c : x1 - c]
        return out

    def __call__(self, block: np.ndarray, placement: TilePlacement | None = None) -> np.ndarray:
        """Deblur a block; without ``placement`` the whole block is the tile proper."""
        bad = invalid_pixels(block, self.nodata)
        x = block.astype(np.float32) / np.float32(self.scale)
        x[:, bad] = 0.0
        x = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)
        rgb = np.repeat(x, 3, axis=0) if self.bands == 1 else x
        y = self.run_rgb(rgb, placement.halo if placement is not None else (0, 0, 0, 0))
        if self.bands == 1:
            y = y.mean(axis=0, keepdims=True)
        y = y * np.float32(self.scale)
        if self.nodata is None and self.out_dtype.kind in "ui":
            bad = np.zeros_like(bad)  # no nodata to give them: keep the computed values
        return to_dtype(y, self.out_dtype, self.nodata, bad)


def _conserve_tiled(
    scene: xr.DataArray,
    restored: xr.DataArray,
    *,
    full_scale: float,
    nodata,
    dtype,
    clip_radius: int = CLIP_RADIUS,
    finish: Any = None,
    clip_level: float | None = None,
    sigma: float = FLUX_SIGMA,
) -> xr.DataArray:
    """Run the flux pass over a scene and its (lazy) restoration, tile by tile.

    ``clip_radius``, ``finish``, ``clip_level`` and ``sigma`` are :class:`_FluxProjector`'s.
    """
    import dask.array as dsa

    from geo_ntl.tiling import apply_tiled

    bands = scene.shape[0]
    stacked = dsa.concatenate([scene.data.astype(dtype), restored.data], axis=0)
    carrier = xr.DataArray(
        stacked.rechunk({0: -1}),
        dims=scene.dims,
        coords={k: v for k, v in scene.coords.items() if "band" not in v.dims},
    )
    carrier = like(carrier, scene, nodata=nodata, attrs=False)
    halo = flux_halo(sigma, clip_radius) + getattr(finish, "reach", 0)
    projector = _FluxProjector(
        bands=bands, full_scale=full_scale, nodata=nodata, out_dtype=dtype, halo=halo,
        clip_radius=clip_radius, finish=finish, clip_level=clip_level, sigma=sigma,
    )  # fmt: skip
    out = apply_tiled(
        carrier,
        projector,
        halo=halo,
        dtype=dtype,
        bands_out=bands,
        name="flux",
        placement=True,
    )
    return restored.copy(data=out.data)


class _FluxProjector:
    """Picklable per-block function of the flux pass: ``(scene, restored)`` stacked on bands in.

    ``clip_radius`` is :func:`~geo_ntl.deblur.flux.conserve_flux`'s; ``finish(out, scene)``,
    when given, runs on the projected float block before it is rounded (psf-gan's range fill
    and saturated cores). With ``clip_level``, the restoration is clipped there before the
    projection and what lay above it is the light that may leave near saturated pixels
    (``removable``); without, any light may leave there (the standalone GAN's rule).
    ``sigma`` is the projection's scale (the GAN's :data:`FLUX_SIGMA`, or psf-gan's
    :func:`~geo_ntl.deblur.psf_gan.flux_sigma_for`).
    """

    def __init__(
        self,
        *,
        bands: int,
        full_scale: float,
        nodata: float | None,
        out_dtype: np.dtype,
        halo: int,
        clip_radius: int = CLIP_RADIUS,
        finish: Any = None,
        clip_level: float | None = None,
        sigma: float = FLUX_SIGMA,
    ) -> None:
        self.sigma = sigma
        self.clip_level = clip_level
        self.clip_radius = clip_radius
        self.finish = finish
        self.bands = bands
        self.full_scale = full_scale
        self.nodata = nodata
        self.out_dtype = np.dtype(out_dtype)
        self.halo = halo

    def __call__(self, block: np.ndarray, placement: TilePlacement | None = None) -> np.ndarray:
        """Project one block; without ``placement`` it is a whole scene padded by ``halo``."""
        scene = block[: self.bands].astype(np.float32)
        restored = block[self.bands :].astype(np.float32)
        bad = invalid_pixels(block[: self.bands], self.nodata, nonfinite=True)
        if bad.any():  # no light there: the correction is 0 (the engine restores the nodata)
            scene[:, bad] = 0.0
            restored[:, bad] = 0.0
        origin = placement.origin if placement is not None else (-self.halo, -self.halo)
        removable = None
        if self.clip_level is not None:
            removable = np.maximum(restored - np.float32(self.clip_level), 0.0)
            restored = np.minimum(restored, np.float32(self.clip_level))
        out = conserve_flux(
            scene, restored, full_scale=self.full_scale, origin=origin, valid=~bad,
            clip_radius=self.clip_radius, removable=removable, sigma=self.sigma,
        )  # fmt: skip
        if self.finish is not None:
            out = self.finish(out, scene)
        if self.out_dtype.kind in "ui":
            # Rounding to the nearest integer would lose or add the smooth fractional part of
            # the projection everywhere (13 % of a dim scene's light, measured); an ordered
            # dither anchored on the scene's pixel grid rounds without bias and tile-exactly.
            out = np.floor(out + ordered_dither(out.shape[1:], origin))
        else:
            out = np.maximum(out, 0.0)
        return to_dtype(out, self.out_dtype, self.nodata, bad)


def default_batch_size(device_type: str) -> int:
    """Tiles per forward pass by default: :data:`DEFAULT_BATCH_SIZE` on a GPU, 1 on a CPU."""
    return DEFAULT_BATCH_SIZE if device_type == "cuda" else 1


def _check_options(tile: int, halo: int | None, batch_size: int | None) -> int:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 16 or tile % _MULT:
        raise ParameterError(f"tile must be a multiple of 4 and >= 16 pixels, got {tile!r}")
    resolved = DEFAULT_HALO if halo is None else halo
    if (
        isinstance(resolved, bool)
        or not isinstance(resolved, int)
        or resolved < 0
        or resolved % _MULT
    ):
        raise TilingError(f"halo must be a non-negative multiple of 4 pixels, got {halo!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    return resolved


def deblur_array(
    image: np.ndarray,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | None = "auto",
    halo: int | None = None,
    tile: int | None = None,
    batch_size: int | None = None,
    scale: float | None = None,
    nodata: float | None = None,
    conserve: bool = True,
    saturation: float | None = None,
) -> np.ndarray:
    """Deblur an image held in memory with the GAN (no enhancement).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        1 or 3 bands; uint8, uint16, int16, float32 or float64.
    weights : str or os.PathLike, optional
        Shipped name or weights file; default the shipped model.
    device : str, default "auto"
        Torch device.
    halo : int, optional
        Context around each tile when ``tile`` splits the image (default
        :data:`DEFAULT_HALO`); the image's own edges are not padded.
    tile : int, optional
        Split the image into tiles of this edge with ``halo`` overlap; default
        the whole image in one forward pass.
    batch_size : int, optional
        Tiles per forward pass; default 4 on a GPU, 1 on a CPU.
    scale : float, optional
        Value mapped to full scale; default 255 for uint8, else the image's maximum.
    nodata : float, optional
        Nodata value (pixels with every band equal to it are kept).
    conserve : bool, default True
        Project the GAN's output so that it moves light but neither creates nor destroys
        it, except around light clipped at full scale
        (:func:`geo_ntl.deblur.flux.conserve_flux`); False gives the bare network.
    saturation : float, optional
        Level (image units) at which the sensor clipped: around pixels at it the flux pass
        may remove light. Default: full scale for integer images (``scale``); for float
        images ``scale`` if given, else a ``SATURATION`` tag of the product, else none --
        radiance products are not clipped at their maximum, so no light is removed.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Raises
    ------
    UnsupportedRasterError
        For 2- or 4-band images.
    WeightsNotFoundError, WeightsError
        For missing or bad weights.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((3, 64, 64), dtype=np.uint8)
    >>> deblur_array(img, device="cpu").shape
    (3, 64, 64)
    """
    from geo_ntl._device import device_capability, precision_for, resolve_device
    from geo_ntl.tiling import apply_whole

    arr, squeeze = as_band_yx_array(image)
    _check_bands(arr.shape[0])
    halo = _check_options(tile or DEFAULT_TILE, halo, batch_size)
    dev = resolve_device(device)
    batch_size = batch_size or default_batch_size(dev.type)
    sc = float(scale) if scale is not None else _scale_for(arr.dtype, arr, nodata)
    h, w = arr.shape[1:]
    runner = _Runner(
        weights=weights,
        device=str(dev),
        precision=precision_for(device_capability(dev)),
        halo=halo,
        tile=tile or max(h, w) + _MULT,
        batch_size=batch_size,
        scale=sc,
        nodata=nodata,
        bands=arr.shape[0],
        out_dtype=arr.dtype,
    )
    out = apply_whole(arr, runner, halo=halo, boundary="none")
    if conserve:
        projector_halo = flux_halo()
        level = _clip_level(arr.dtype, sc, saturation=saturation, scale_given=scale is not None)
        projector = _FluxProjector(
            bands=arr.shape[0], full_scale=level, nodata=nodata, out_dtype=arr.dtype,
            halo=projector_halo,
        )  # fmt: skip
        stacked = np.concatenate([arr, out.astype(arr.dtype)])
        out = apply_whole(stacked, projector, halo=projector_halo, bands_out=arr.shape[0])
    return out[0] if squeeze else out


def deblur(
    da: xr.DataArray,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | DevicePlan | None = "auto",
    tile: int = DEFAULT_TILE,
    halo: int | None = None,
    batch_size: int | None = None,
    scale: float | None = None,
    conserve: bool = True,
    saturation: float | None = None,
) -> xr.DataArray:
    """Deblur a georeferenced scene with the deblooming GAN (tiled, lazy, light conserved).

    Parameters
    ----------
    da : xarray.DataArray
        Scene ``(band, y, x)`` or ``(y, x)`` with 1 or 3 bands, numpy- or
        dask-backed (e.g. :func:`geo_ntl.io.open_scene`).
    weights : str or os.PathLike, optional
        Shipped weights name (:func:`geo_ntl.deblur.list_models`) or a file
        written by ``geo-ntl train``; default the shipped model.
    device : str, default "auto"
        Torch device, planned where the tiles run (:func:`geo_ntl._device.plan_device`: on
        a dask cluster, the workers' GPUs); on CUDA the forward pass runs under bf16 autocast
        from compute capability 8.0 on, fp16 below. A tile whose batch does not fit in the
        GPU's memory is run in halves of the batch; a single window that does not fit raises
        :class:`~geo_ntl.exceptions.DeviceMemoryError` (lower ``tile``).
    tile : int, default 2048
        Tile edge in pixels (halo excluded), a multiple of 4. Peak memory is
        about ``300 x (tile + 2 halo)^2`` bytes per batch item (about 1.4 GB
        for the default tile); lower it on small machines.
    halo : int, optional
        Halo in pixels between tiles (multiple of 4); default
        :data:`DEFAULT_HALO`, chosen from the generator's effective receptive
        field so tiled and whole results differ by at most 1 DN (measured).
    batch_size : int, optional
        Tiles per forward pass (each dask chunk holds up to this many tiles);
        default 4 on a GPU, 1 on a CPU.
    scale : float, optional
        See :func:`deblur_array`.
    conserve : bool, default True
        Flux conservation (see :func:`deblur_array`): a second tiled pass with
        :func:`geo_ntl.deblur.flux.flux_halo` px of halo, exact across tiles.
    saturation : float, optional
        See :func:`deblur_array` (a ``SATURATION`` tag is read from ``da.attrs``).

    Returns
    -------
    xarray.DataArray
        Lazy result with the input's shape, dtype, dims, coords, CRS,
        transform, attrs and nodata.

    Raises
    ------
    UnsupportedRasterError
        For 2- or 4-band scenes.
    DimensionError, ParameterError, TilingError
        For bad dims or options.
    WeightsNotFoundError, WeightsError
        For missing, corrupt or foreign weights (checked before any tile runs).

    Notes
    -----
    The model is loaded once per process and device
    (:func:`geo_ntl.deblur.get_model`) and runs under ``torch.inference_mode``.
    Its norm layers use stored statistics, so each output pixel depends only
    on input pixels within its receptive field, never on where a tile was cut.

    For a viewing rendition, enhance the result with :func:`geo_ntl.enhance.enhance`
    (see :mod:`geo_ntl.radiometry`). The result is lazy, so the enhancer's first pass
    (whole-scene statistics) and its tiles would each evaluate the GAN: write it to a
    file and enhance that file, or let :func:`geo_ntl.pipeline.restore_scenes` do so
    (``stages=["deblur", "enhance"]``), as ``geo-ntl deblur --enhance`` does.

    References
    ----------
    .. [1] NTL-Db-Net, "Making the Earth Clear at Night: A High-resolution
       Nighttime Light Image Deblooming Network".

    Examples
    --------
    >>> from geo_ntl.testing import make_scene
    >>> scene = make_scene((3, 64, 64))
    >>> out = deblur(scene, device="cpu", tile=32)
    >>> out.shape == scene.shape and out.dtype == scene.dtype
    True
    """
    import dask.array as dsa

    from geo_ntl._device import plan_device, resolve_device
    from geo_ntl.deblur.weights import get_generator
    from geo_ntl.parallel import active_client
    from geo_ntl.tiling import apply_tiled

    halo = _check_options(tile, halo, batch_size)
    da3, squeeze = as_band_yx(da)
    _check_bands(da3.shape[0])
    dtype = check_dtype(da3.dtype)
    plan = plan_device(device)
    batch_size = batch_size or default_batch_size(plan.type)
    # Fail early on bad weights; in this process, also warm the cache of its device.
    here = resolve_device(plan.device) if active_client() is None else "cpu"
    get_generator(weights, device=str(here))
    nodata = da3.rio.nodata
    sc = float(scale) if scale is not None else _scale_for(dtype, da3.data, nodata)
    # Each dask chunk holds up to batch_size tiles (a square of k x k tiles).
    k = max(1, int(np.floor(np.sqrt(batch_size))))
    chunk = tile * k
    data = da3.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=(-1, chunk, chunk))
    carrier = da3.copy(data=data.rechunk((-1, chunk, chunk)))
    runner = _Runner(
        weights=weights,
        device=plan.device,
        halo=halo,
        tile=tile,
        batch_size=batch_size,
        scale=sc,
        nodata=nodata,
        bands=da3.shape[0],
        out_dtype=dtype,
        precision=plan.precision,
    )
    out = apply_tiled(
        carrier,
        runner,
        halo=halo,
        dtype=dtype,
        name="deblur",
        placement=True,
        boundary="none",
        resources=plan.resources,
    )
    if conserve:
        level = _clip_level(
            dtype, sc, saturation=saturation, scale_given=scale is not None, attrs=da3.attrs
        )
        out = _conserve_tiled(carrier, out, full_scale=level, nodata=nodata, dtype=dtype)
    out = like(out, da3)
    return out.isel(band=0, drop=True) if squeeze else out
