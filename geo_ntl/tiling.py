"""The tiled engine: run a per-tile function over overlapping windows.

Every restoration stage runs through :func:`apply_tiled`. Each dask chunk of
the scene is extended by a halo of ``halo`` pixels on every side (dask calls
this width the overlap *depth*), taken from its neighbours or, at the edges of
the scene, by symmetric reflection (``numpy.pad(mode="symmetric")``); the
function runs on the extended block and the halo is trimmed from its result.

The guarantee, pinned by property-based tests: for any operator whose output
at a pixel depends only on input pixels within ``halo`` of it, the tiled
result equals :func:`apply_whole` -- the same operator on the whole image,
reflect-padded by ``halo`` -- exactly, for every scene size, chunking and
halo width. Choose ``halo`` at least the operator's radius of support (for a
CNN, its effective receptive field; for iterative global solvers, the distance
beyond which the influence falls below the tolerance you accept).

With ``boundary="none"`` the scene's own edges get no halo: blocks there are
smaller, and the function meets the scene edge as it would on the whole image
(a CNN's own padding, say). The guarantee is then tiled == ``func(whole image)``
and no pixel is computed twice at the scene's border.

The graph has one task per tile: it takes the tile's chunk and its (up to
eight) neighbouring chunks, cuts the halo from them, reflects at the scene's
edges and runs the function. ``dask.array.overlap`` builds the same extended
blocks from about 30 slicing and concatenation tasks per tile, and on
dask.distributed every task costs a round trip to the scheduler (about 2.5 ms
on a 2-core machine), so one task per tile keeps the graph and its overhead
small.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import numpy.typing as npt
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from geo_ntl._raster import as_band_yx, check_dtype, like, nodata_mask
from geo_ntl.exceptions import DimensionError, TilingError
from geo_ntl.io import DEFAULT_CHUNKS

__all__ = [
    "Boundary",
    "TileFunction",
    "TilePlacement",
    "apply_tiled",
    "apply_whole",
    "rechunk_for_halo",
]

#: ``func(block) -> block``: ``(band, h + halo, w + halo)`` in, ``(bands_out, same h, same w)`` out.
#: With ``apply_tiled(..., placement=True)`` it is called as ``func(block, placement)``.
TileFunction = Callable[..., np.ndarray]

#: What a block holds beyond the scene's edges: a symmetric reflection, or nothing.
Boundary = Literal["reflect", "none"]


@dataclass(frozen=True)
class TilePlacement:
    """Where a block given to a tile function lies in the scene.

    Attributes
    ----------
    origin : tuple of int
        Scene ``(row, col)`` of ``block[:, 0, 0]``; negative where a reflected
        halo lies beyond the scene's top or left edge.
    halo : tuple of int
        Halo widths ``(top, bottom, left, right)`` around the tile proper; only
        the tile proper of the function's result is kept.
    """

    origin: tuple[int, int]
    halo: tuple[int, int, int, int]


def _halo_argument(halo: int | None, depth: int | None, caller: str) -> int:
    """Return the checked halo width, accepting the deprecated ``depth`` keyword."""
    if depth is not None:
        if halo is not None:
            raise TilingError(f"{caller}() got both halo and depth; pass halo only")
        warnings.warn(
            f"{caller}(depth=...) is deprecated; use halo=... (the same width in pixels)",
            DeprecationWarning,
            stacklevel=3,
        )
        halo = depth
    if halo is None:
        raise TypeError(f"{caller}() missing required keyword argument: 'halo'")
    return _check_halo(halo)


def _check_halo(halo: int) -> int:
    if isinstance(halo, bool) or not isinstance(halo, int | np.integer) or halo < 0:
        raise TilingError(f"halo must be a non-negative integer number of pixels, got {halo!r}")
    return int(halo)


def _check_boundary(boundary: str) -> None:
    if boundary not in ("reflect", "none"):
        raise TilingError(f'boundary must be "reflect" or "none", got {boundary!r}')


def _checked_output(result: np.ndarray, expected: tuple[int, int], bands_out: int) -> np.ndarray:
    if result.ndim == 2:
        result = result[None]
    if result.shape != (bands_out, *expected):
        raise TilingError(
            f"the tile function returned shape {result.shape}, expected {(bands_out, *expected)}: "
            "it must keep the spatial shape of its input block (halo included)"
        )
    return result


def apply_whole(
    array: np.ndarray,
    func: TileFunction,
    *,
    halo: int | None = None,
    bands_out: int | None = None,
    boundary: Boundary = "reflect",
    depth: int | None = None,
) -> np.ndarray:
    """Apply ``func`` to a whole ``(band, y, x)`` array padded by ``halo``.

    This is the reference that :func:`apply_tiled` reproduces.

    Parameters
    ----------
    array : (band, y, x) ndarray
        Input pixels.
    func : callable
        Tile function, see :data:`TileFunction`.
    halo : int
        Halo width in pixels (symmetric reflection at the edges).
    bands_out : int, optional
        Number of bands ``func`` returns; defaults to the input's.
    boundary : {"reflect", "none"}, default "reflect"
        ``"none"`` runs ``func`` on the array as it is (no padding).
    depth : int, optional
        Deprecated name of ``halo``.
    resources : mapping of str to float, optional
        dask.distributed worker resources each ``func`` task asks for (``{"GPU": 1}``): on a
        cluster they run only on workers that declare them, as many at once as declared.
        Only these tasks ask, not the reads and halo slices around them.

    Returns
    -------
    (bands_out, y, x) ndarray
    """
    halo = _halo_argument(halo, depth, "apply_whole")
    _check_boundary(boundary)
    pad = 0 if boundary == "none" else halo
    if array.ndim != 3:
        raise DimensionError(f"expected a (band, y, x) array, got shape {array.shape}")
    bands_out = array.shape[0] if bands_out is None else bands_out
    padded = np.pad(array, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    result = _checked_output(func(padded), padded.shape[1:], bands_out)
    return result[:, pad : pad + array.shape[1], pad : pad + array.shape[2]]


def _merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each is at least ``minimum`` long (or the whole axis)."""
    merged: list[int] = []
    for size in chunks:
        if merged and merged[-1] < minimum:
            merged[-1] += size
        else:
            merged.append(size)
    if len(merged) > 1 and merged[-1] < minimum:
        last = merged.pop()
        merged[-1] += last
    return tuple(merged)


def rechunk_for_halo(data: dsa.Array, halo: int) -> dsa.Array:
    """Rechunk a ``(band, y, x)`` dask array so every spatial chunk is at least ``halo`` long.

    Bands are put into one chunk. Axes shorter than ``halo`` become one chunk.
    """
    chunks = (
        (data.shape[0],),
        _merge_small_chunks(data.chunks[1], halo),
        _merge_small_chunks(data.chunks[2], halo),
    )
    return data if chunks == data.chunks else data.rechunk(chunks)


def _halo_slice(position: int, halo: int) -> slice:
    """Rows (or columns) a tile takes from the chunk before it (-1), itself (0) or after it (1)."""
    return {-1: slice(-halo, None), 0: slice(None), 1: slice(0, halo)}[position]


def _extended_block(
    neighbourhood: list[list[np.ndarray]],
    positions: tuple[tuple[int, ...], tuple[int, ...]],
    halo: int,
    reflect: bool,
) -> np.ndarray:
    """Assemble a chunk with its halo from the chunks around it, reflecting at scene edges.

    ``neighbourhood[r][c]`` is the chunk at row offset ``positions[0][r]`` and column offset
    ``positions[1][c]`` (each in -1, 0, 1) from the tile's own chunk. Without ``reflect``
    the scene's edges get no halo.
    """
    row_offsets, col_offsets = positions
    rows = [
        np.concatenate(
            [
                chunk[:, _halo_slice(dy, halo), _halo_slice(dx, halo)]
                for chunk, dx in zip(row, col_offsets, strict=True)
            ],
            axis=2,
        )
        for row, dy in zip(neighbourhood, row_offsets, strict=True)
    ]
    block = rows[0] if len(rows) == 1 else np.concatenate(rows, axis=1)
    if not reflect:
        return block
    pad_y = (0 if -1 in row_offsets else halo, 0 if 1 in row_offsets else halo)
    pad_x = (0 if -1 in col_offsets else halo, 0 if 1 in col_offsets else halo)
    if pad_y == (0, 0) and pad_x == (0, 0):
        return block
    return np.pad(block, ((0, 0), pad_y, pad_x), mode="symmetric")


def _tile_task(
    run_tile: Callable[[np.ndarray, TilePlacement], np.ndarray],
    neighbourhood: list[list[np.ndarray]],
    positions: tuple[tuple[int, ...], tuple[int, ...]],
    halo: int,
    reflect: bool,
    placement: TilePlacement,
) -> np.ndarray:
    return run_tile(_extended_block(neighbourhood, positions, halo, reflect), placement)


def _map_tiles(
    data: dsa.Array,
    run_tile: Callable[[np.ndarray, TilePlacement], np.ndarray],
    *,
    halo: int,
    boundary: Boundary,
    bands_out: int,
    dtype: np.dtype,
    name: str | None,
    token: Any,
    resources: Mapping[str, float] | None = None,
) -> dsa.Array:
    """One task per chunk of ``data``: the chunk, its halo from its neighbours, ``run_tile``.

    ``resources``: dask worker resources each of these tasks asks for (the layer's annotation).
    """
    out_name = f"{name or 'tile'}-{tokenize(data.name, halo, boundary, bands_out, dtype, token)}"
    starts_y = np.concatenate([[0], np.cumsum(data.chunks[1])]).astype(int)
    starts_x = np.concatenate([[0], np.cumsum(data.chunks[2])]).astype(int)
    n_y, n_x = data.numblocks[1:]
    reach = (-1, 0, 1) if halo > 0 else (0,)
    reflect = boundary == "reflect"
    graph: dict[tuple[Any, ...], Any] = {}
    for i in range(n_y):
        row_offsets = tuple(dy for dy in reach if 0 <= i + dy < n_y)
        top = halo if reflect or i > 0 else 0
        bottom = halo if reflect or i < n_y - 1 else 0
        for j in range(n_x):
            col_offsets = tuple(dx for dx in reach if 0 <= j + dx < n_x)
            left = halo if reflect or j > 0 else 0
            right = halo if reflect or j < n_x - 1 else 0
            neighbourhood = [
                [(data.name, 0, i + dy, j + dx) for dx in col_offsets] for dy in row_offsets
            ]
            placement = TilePlacement(
                origin=(int(starts_y[i]) - top, int(starts_x[j]) - left),
                halo=(top, bottom, left, right),
            )
            graph[(out_name, 0, i, j)] = (
                _tile_task,
                run_tile,
                neighbourhood,
                (row_offsets, col_offsets),
                halo,
                reflect,
                placement,
            )
    with dask.annotate(resources=dict(resources)) if resources else contextlib.nullcontext():
        layer = HighLevelGraph.from_collections(out_name, graph, dependencies=[data])  # type: ignore[arg-type, list-item]
    return dsa.Array(
        layer,
        out_name,
        chunks=((bands_out,), *data.chunks[1:]),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype),
    )


def apply_tiled(
    da: xr.DataArray,
    func: TileFunction,
    *,
    halo: int | None = None,
    dtype: npt.DTypeLike | None = None,
    bands_out: int | None = None,
    nodata: float | None = None,
    chunks: int | None = None,
    name: str | None = None,
    placement: bool = False,
    boundary: Boundary = "reflect",
    depth: int | None = None,
    resources: Mapping[str, float] | None = None,
) -> xr.DataArray:
    """Run ``func`` over overlapping windows of a scene, lazily.

    Parameters
    ----------
    da : xarray.DataArray
        Scene with dims ``(band, y, x)`` or ``(y, x)``, numpy- or dask-backed.
        Its dask chunks are the tiles; a numpy-backed array is chunked with
        ``chunks`` (default :data:`geo_ntl.io.DEFAULT_CHUNKS`).
    func : callable
        ``func(block) -> result``: ``block`` is ``(band, h + 2*halo, w + 2*halo)``
        in the input dtype (less at the scene's edges with ``boundary="none"``),
        ``result`` is ``(bands_out, same height, same width)``.
        It runs once per tile, possibly in several threads or processes at
        once, so it must not change shared state.
    halo : int
        Halo width in pixels on every side.
    dtype : str or numpy.dtype, optional
        Result dtype; defaults to the input's.
    bands_out : int, optional
        Bands ``func`` returns; defaults to the input's.
    nodata : float, optional
        Nodata value of the result. Pixels that are nodata in the input (every
        band equal to ``da.rio.nodata``) are set to it. Defaults to the input's
        nodata value.
    chunks : int, optional
        Rechunk to tiles of this edge first.
    name : str, optional
        Prefix of the dask task names (shows in the dashboard).
    placement : bool, default False
        Call ``func(block, placement)`` with the block's :class:`TilePlacement`
        (its scene origin and halo widths), for functions anchored to the
        scene's grid or that split blocks themselves.
    boundary : {"reflect", "none"}, default "reflect"
        Halo beyond the scene's edges: a symmetric reflection (every block has
        ``halo`` on every side), or none (the function sees the scene edge;
        no pixel beyond the scene is computed).
    depth : int, optional
        Deprecated name of ``halo``.
    resources : mapping of str to float, optional
        dask.distributed worker resources each ``func`` task asks for (``{"GPU": 1}``): on a
        cluster they run only on workers that declare them, as many at once as declared.
        Only these tasks ask, not the reads and halo slices around them.

    Returns
    -------
    xarray.DataArray
        Lazy result with the input's dims, spatial coords, CRS, transform and
        attrs, and ``nodata`` written as its nodata value.

    Raises
    ------
    TilingError
        If ``halo`` is negative or ``func`` changes the block's spatial shape.
    DimensionError
        If ``da`` is not ``(band, y, x)`` or ``(y, x)``.
    UnsupportedRasterError
        If ``da``'s pixel type is not one of :data:`geo_ntl._raster.SUPPORTED_DTYPES`.

    Examples
    --------
    >>> from scipy import ndimage
    >>> from geo_ntl.testing import make_scene
    >>> scene = make_scene((3, 100, 80), chunks=32)
    >>> blurred = apply_tiled(scene, lambda b: ndimage.uniform_filter(b, (1, 5, 5)), halo=2)
    >>> blurred.shape, blurred.rio.crs == scene.rio.crs
    ((3, 100, 80), True)
    """
    halo = _halo_argument(halo, depth, "apply_tiled")
    _check_boundary(boundary)
    da3, squeeze = as_band_yx(da)
    check_dtype(da3.dtype)
    in_nodata = da3.rio.nodata
    out_nodata = in_nodata if nodata is None else nodata
    out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(da3.dtype)
    n_out = da3.shape[0] if bands_out is None else int(bands_out)

    data = da3.data
    if not isinstance(data, dsa.Array):
        edge = chunks or DEFAULT_CHUNKS
        data = dsa.from_array(np.asarray(data), chunks=(-1, edge, edge))
    elif chunks is not None:
        data = data.rechunk((-1, chunks, chunks))
    data = rechunk_for_halo(data, halo)

    def run_tile(block: np.ndarray, where: TilePlacement) -> np.ndarray:
        result = _checked_output(
            func(block, where) if placement else func(block), block.shape[1:], n_out
        )
        top, bottom, left, right = where.halo
        core = (slice(top, block.shape[1] - bottom), slice(left, block.shape[2] - right))
        inner = np.asarray(result[:, core[0], core[1]], dtype=out_dtype)
        mask = nodata_mask(block[:, core[0], core[1]], in_nodata)
        if mask is not None and out_nodata is not None and mask.any():
            inner = inner.copy()
            inner[:, mask] = out_nodata
        return inner

    if any(size < halo for size in data.shape[1:]):
        # A neighbour can only lend `halo` pixels if it has them: make the scene one tile,
        # which numpy reflects whatever its size.
        data = data.rechunk((-1, -1, -1))
    out = _map_tiles(
        data,
        run_tile,
        halo=halo,
        boundary=boundary,
        bands_out=n_out,
        dtype=out_dtype,
        name=name,
        token=(func, in_nodata, out_nodata, placement),
        resources=resources,
    )

    coords = {key: value for key, value in da3.coords.items() if "band" not in value.dims}
    coords["band"] = np.arange(1, n_out + 1) if n_out != da3.shape[0] else da3.coords["band"].values
    result = xr.DataArray(out, dims=da3.dims, coords=coords, name=da3.name)
    result = like(result, da3, nodata=out_nodata)
    return result.isel(band=0, drop=True) if squeeze else result
