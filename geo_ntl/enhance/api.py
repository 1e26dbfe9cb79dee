"""Public entry points of the ASM enhancer: numpy arrays and (dask-backed) DataArrays.

Tiling. :func:`enhance` runs in two passes. The first streams over the scene
once (dask reductions) for the quantities the paper takes over the whole image
(:class:`~geo_ntl.enhance.stats.GlobalStats`: white level, ASD blocks of 1/50
of the scene, E_G on an overview, nodata fill). The second runs
:func:`~geo_ntl.enhance.core.enhance_block` per tile through
:func:`geo_ntl.tiling.apply_tiled`, which tells each tile where it lies
(``placement=True``): the coarse grid, the superpixel seeds and the ASD blocks
are anchored at the scene origin, and the reflected halo at scene edges is
cropped off so edge tiles see the same boundary as the whole image. The halo
(:func:`~geo_ntl.enhance.core.halo_depth`, 256 px with the defaults) is the
radius of support of the whole chain: every filter is truncated, SLIC uses
only neighbouring seeds, the solvers take a fixed number of local
(Jacobi / Chebyshev) steps and the night-light guard is local, so a tile with
this halo computes exactly what the whole image computes; the only differences
are float rounding (measured: at most 1 DN, mean < 0.01 DN on 8-bit scenes). The halo is
a worst-case bound dominated by the superpixels (128 of its 256 px), all
coarse-grid work: a tile runs the initialisation on tile + halo (2.2x the area
of a 1024 tile) but the full-resolution solver, most of the cost, only on the
tile plus the solver's own 27-px support (1.1x), still exactly (on CPU in
512-px pieces, each with that support: see :mod:`~geo_ntl.enhance.solver`).
``enhance(..., halo=N)`` trades exactness for less initialisation work
(measured seams in ``benchmarks/RESULTS.md``).

Dtypes. The output has the input's dtype (float32 on request) and scale:
uint8 is read as [0, 255]; uint16 and float as [0, scene maximum]. Pixels whose
bands are all nodata, or that hold NaN/inf, are nodata (NaN for float output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geo_ntl import defaults
from geo_ntl._raster import as_band_yx, check_dtype, from_float, invalid_pixels, like
from geo_ntl.enhance.core import enhance_block, halo_depth
from geo_ntl.enhance.params import ASMParams
from geo_ntl.enhance.stats import GlobalStats, global_stats
from geo_ntl.exceptions import DimensionError, ParameterError
from geo_ntl.tiling import TilePlacement

if TYPE_CHECKING:
    from geo_ntl._device import DevicePlan

__all__ = ["enhance", "enhance_array"]

#: Default tile edge (pixels, halo excluded) of :func:`enhance` (:data:`geo_ntl.defaults.ENHANCE_TILE`).
DEFAULT_TILE = defaults.ENHANCE_TILE
#: Most bands the enhancer accepts.
MAX_BANDS = 4


def _resolve(params: ASMParams | dict[str, Any] | None) -> ASMParams:
    if params is None:
        return ASMParams()
    if isinstance(params, ASMParams):
        return params
    if isinstance(params, dict):
        return ASMParams.from_mapping(params)
    raise ParameterError(f"params must be an ASMParams or a dict, got {type(params).__name__}")


def _out_dtype(in_dtype: np.dtype, dtype: Any) -> np.dtype:
    if dtype is None:
        return np.dtype(in_dtype)
    out = np.dtype(dtype)
    if out not in (np.dtype(np.float32), np.dtype(in_dtype)):
        raise ParameterError(f"dtype must be None (keep {in_dtype}) or float32, got {out}")
    return out


def _to_float(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Float32 copy with NaN where a pixel is nodata (all bands) or any band is not finite."""
    x = block.astype(np.float32, copy=True)
    bad = invalid_pixels(block, nodata, nonfinite=True)
    if bad.any():
        x[:, bad] = np.nan
    return x


def enhance_array(
    image: np.ndarray,
    *,
    params: ASMParams | dict[str, Any] | None = None,
    device: str | None = "auto",
    global_stats: GlobalStats | None = None,
    nodata: float | None = None,
    dtype: Any = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Enhance a low-light image held in memory (the whole image at once).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        1 to 4 bands; uint8 (read as 0-255), uint16 or float (0 to the maximum).
    params : ASMParams or dict, optional
        Parameters; defaults to the paper's (:class:`ASMParams`).
    device : str, default "auto"
        Torch device (see :func:`geo_ntl._device.resolve_device`).
    global_stats : GlobalStats, optional
        Scene-wide quantities when ``image`` is a window of a larger scene;
        computed from ``image`` when omitted.
    nodata : float, optional
        Value marking missing pixels (all bands equal to it); kept in the output.
    dtype : {None, "float32"}, optional
        Output dtype; defaults to the input's.
    origin : (int, int), default (0, 0)
        Scene ``(row, col)`` of ``image[..., 0, 0]`` when ``global_stats`` describes
        a larger scene; multiples of ``params.cell``.

    Returns
    -------
    ndarray
        Same shape as ``image``.

    Raises
    ------
    DimensionError
        Wrong number of dimensions or bands, or an empty image.
    UnsupportedRasterError
        Non-numeric pixels.
    AllNoDataError
        No valid pixel.
    ParameterError
        Bad parameters.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> dark = (rng.random((3, 64, 64)) * 40).astype("uint8")
    >>> out = enhance_array(dark, device="cpu")
    >>> out.dtype, out.shape, bool(out.mean() > dark.mean())
    (dtype('uint8'), (3, 64, 64), True)
    """
    from geo_ntl._device import resolve_device

    arr = np.asarray(image)
    check_dtype(arr.dtype)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3:
        raise DimensionError(
            f"expected a (band, y, x) or (y, x) array, got shape {np.shape(image)}"
        )
    if not 1 <= arr.shape[0] <= MAX_BANDS:
        raise DimensionError(
            f"expected 1 to {MAX_BANDS} bands on the first axis, got shape {arr.shape}; "
            "put bands first with np.moveaxis(image, -1, 0)"
        )
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise DimensionError(f"the image is empty (shape {arr.shape})")
    prm = _resolve(params)
    if origin[0] % prm.cell or origin[1] % prm.cell:
        raise ParameterError(f"origin {origin} must be multiples of cell={prm.cell}")
    out_dtype = _out_dtype(arr.dtype, dtype)
    dev = resolve_device(device)
    x = _to_float(arr, nodata)
    stats = global_stats if global_stats is not None else _global(x, arr.dtype, prm, dev)
    y = enhance_block(x, origin=origin, stats=stats, params=prm, device=dev)
    nodata_out: float | None
    if nodata is None and out_dtype.kind == "f":
        nodata_out = np.nan
    else:
        nodata_out = nodata
    out = from_float(y, out_dtype, nodata_out)
    return out[0] if squeeze else out


def _global(x, dtype, params, device) -> GlobalStats:
    return global_stats(x, dtype=dtype, params=params, device=device)


def enhance(
    da: xr.DataArray,
    *,
    params: ASMParams | dict[str, Any] | None = None,
    device: str | DevicePlan | None = "auto",
    tile: int = DEFAULT_TILE,
    dtype: Any = None,
    halo: int | None = None,
) -> xr.DataArray:
    """Enhance a georeferenced scene tile by tile (lazy, dask-backed).

    Parameters
    ----------
    da : xarray.DataArray
        Scene with dims ``(band, y, x)`` or ``(y, x)``, 1 to 4 bands, numpy- or
        dask-backed, e.g. from :func:`geo_ntl.io.open_scene`.
    params : ASMParams or dict, optional
        Parameters; defaults to the paper's.
    device : str, default "auto"
        Torch device, planned where the tiles run (:func:`geo_ntl._device.plan_device`);
        a tile that does not fit in the GPU's memory raises
        :class:`~geo_ntl.exceptions.DeviceMemoryError` (lower ``tile``).
    tile : int, default 1024
        Tile edge in pixels (the halo of :func:`~geo_ntl.enhance.core.halo_depth`
        comes on top; memory per tile is about 60 float32 copies of the padded tile).
    dtype : {None, "float32"}, optional
        Output dtype; defaults to the input's.
    halo : int, optional
        Halo in pixels; defaults to :func:`~geo_ntl.enhance.core.halo_depth` (the
        method's radius of support: tiles then match a whole-image run up to float
        rounding). A smaller halo saves initialisation work (the solver already
        runs only on the tile plus 27 px) at the price of seams where a
        superpixel assignment near the tile edge differs; measured on a 1024^2
        night crop with 256-px tiles: half the default halo gave 0 DN, a quarter
        2 DN (see ``benchmarks/results/enhance.md``).

    Returns
    -------
    xarray.DataArray
        Lazy result with the input's dims, coords, CRS, transform, attrs and
        nodata. The first pass (global statistics) has run already.

    Raises
    ------
    DimensionError, UnsupportedRasterError, AllNoDataError, ParameterError

    Examples
    --------
    >>> from geo_ntl.testing import make_scene
    >>> scene = make_scene((3, 96, 80), chunks=48)
    >>> out = enhance(scene, tile=48, device="cpu")
    >>> out.dtype == scene.dtype, out.rio.crs == scene.rio.crs
    (True, True)
    """
    import dask.array as dsa

    from geo_ntl._device import plan_device, resolve_device
    from geo_ntl.parallel import active_client
    from geo_ntl.tiling import apply_tiled

    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 16:
        raise ParameterError(f"tile must be an integer >= 16 pixels, got {tile!r}")
    if halo is not None and (isinstance(halo, bool) or not isinstance(halo, int) or halo < 0):
        raise ParameterError(f"halo must be None or an integer >= 0 pixels, got {halo!r}")
    da3, squeeze = as_band_yx(da)
    bands, h, w = da3.shape
    if not 1 <= bands <= MAX_BANDS:
        raise DimensionError(f"expected 1 to {MAX_BANDS} bands, got {bands}")
    if h == 0 or w == 0:
        raise DimensionError(f"the scene is empty (shape {da3.shape})")
    in_dtype = check_dtype(da3.dtype)
    prm = _resolve(params)
    out_dtype = _out_dtype(in_dtype, dtype)
    plan = plan_device(device)
    # The scene-wide statistics finish in this process: on its device when it runs the tiles
    # too, on the CPU when a cluster does (this process may have no GPU).
    here = resolve_device(plan.device) if active_client() is None else resolve_device("cpu")
    nodata = da3.rio.nodata
    data = da3.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=(-1, tile, tile))
    data = data.rechunk((-1, tile, tile))
    xf = data.map_blocks(_to_float, nodata, dtype=np.float32)
    stats = global_stats(xf, dtype=in_dtype, params=prm, device=here)
    # The tiles get the pixels as stored (a quarter of float32's bytes in their halos); each
    # converts its own block. The scene's nodata is left off so that apply_tiled leaves the
    # masking to the enhancer (NaN inside, nodata_out outside).
    spatial = {k: v for k, v in da3.coords.items() if "band" not in v.dims}
    carrier = like(xr.DataArray(data, dims=da3.dims, coords=spatial), da3, nodata=None, attrs=False)
    halo = halo_depth(prm) if halo is None else halo
    func = _TileFunction(
        bands=bands, halo=halo, stats=stats, params=prm, device=plan.device, nodata=nodata
    )
    enhanced = apply_tiled(
        carrier,
        func,
        halo=halo,
        dtype=np.float32,
        bands_out=bands,
        name="enhance",
        placement=True,
        resources=plan.resources,
    )
    nodata_out = nodata if nodata is not None else (np.nan if out_dtype.kind == "f" else None)
    result_data = enhanced.data.map_blocks(from_float, out_dtype, nodata_out, dtype=out_dtype)
    result = xr.DataArray(result_data, dims=da3.dims, coords=da3.coords, name=da3.name)
    if nodata is None and out_dtype.kind == "f" and in_dtype.kind != "f":
        nodata = np.nan  # integer scene, float result: its nodata pixels are NaN
    result = like(result, da3, nodata=nodata)
    return result.isel(band=0, drop=True) if squeeze else result


class _TileFunction:
    """Per-tile function: crop the block to the scene (its halo is reflected at edges), enhance."""

    def __init__(
        self,
        *,
        bands: int,
        halo: int,
        stats: GlobalStats,
        params: ASMParams,
        device: str,
        nodata: float | None,
    ) -> None:
        self.bands = bands
        self.halo = halo
        self.stats = stats
        self.params = params
        self.device = device  # resolved where the tile runs
        self.nodata = nodata

    def __call__(self, block: np.ndarray, placement: TilePlacement) -> np.ndarray:
        import torch

        from geo_ntl._device import gpu_slot, on_out_of_memory, resolve_device

        device = resolve_device(self.device)
        try:
            with gpu_slot(device):
                return self._enhance(block, placement, device)
        except torch.OutOfMemoryError as exc:
            what = (
                f"one {block.shape[1]} x {block.shape[2]} px tile of the enhancer (halo included)"
            )
            raise on_out_of_memory(exc, what=what, options={"`tile`": "tile"}) from exc

    def _enhance(self, block: np.ndarray, placement: TilePlacement, device: Any) -> np.ndarray:
        d = self.halo
        hb, wb = block.shape[1:]
        oy, ox = placement.origin
        height, width = self.stats.shape
        cell = self.params.cell
        ys, ye = max(0, -oy), min(hb, height - oy)
        xs, xe = max(0, -ox), min(wb, width - ox)
        ys += (-(oy + ys)) % cell
        xs += (-(ox + xs)) % cell
        out = np.zeros((self.bands, hb, wb), dtype=np.float32)
        # The tile proper (the block without its halo), in the cropped block's coordinates:
        # only there must the result be exact, so the solver runs on it plus its own support.
        region = (d - ys, min(hb - d, ye) - ys, d - xs, min(wb - d, xe) - xs)
        out[:, ys:ye, xs:xe] = enhance_block(
            _to_float(block[:, ys:ye, xs:xe], self.nodata),
            origin=(oy + ys, ox + xs),
            stats=self.stats,
            params=self.params,
            device=device,
            region=region if region[0] < region[1] and region[2] < region[3] else None,
        )
        return out
