"""Reading georeferenced scenes and writing Cloud-Optimized GeoTIFFs.

:func:`open_scene` opens anything rasterio can open as a lazy, dask-backed
:class:`xarray.DataArray` with dims ``(band, y, x)``. :func:`write_cog` streams
such an array, block by block, into a Cloud-Optimized GeoTIFF that keeps the
CRS, transform, dtype, nodata, band descriptions and scale/offset, and records
provenance tags. Writes are atomic (see :mod:`geo_ntl._atomic`).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import dask.array as dsa
import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from geo_ntl._atomic import PathLike, atomic_output, check_output_path
from geo_ntl._gdal_errors import (
    failing_on_gdal_errors,
    gdal_worker_threads,
    gdal_write_error,
)
from geo_ntl._raster import (
    SUPPORTED_DTYPES,
    as_band_yx,
    cast,
    check_dtype,
    check_nodata,
    disk_errors,
    has_alpha,
    has_gdal_mask,
    nodata_mask,
    valid_window,
)
from geo_ntl._remote import check_not_subdataset, is_remote
from geo_ntl._version import __version__
from geo_ntl.exceptions import (
    AllNoDataError,
    ClusterError,
    InputError,
    MissingCRSError,
    NotARasterError,
    ParameterError,
    SceneNotFoundError,
    UnsupportedRasterError,
)
from geo_ntl.parallel import active_client

__all__ = [
    "COG_PROFILE",
    "DEFAULT_CHUNKS",
    "SUPPORTED_DTYPES",
    "MAX_BANDS",
    "atomic_output",
    "check_codec",
    "check_output_path",
    "cog_creation_options",
    "cog_overview_factors",
    "ensure_valid_data",
    "is_remote",
    "nodata_mask",
    "open_scene",
    "scene_info",
    "write_cog",
]

#: Default dask chunk edge, in pixels, for ``y`` and ``x`` (bands stay in one chunk).
DEFAULT_CHUNKS = 2048
#: Most bands a scene may have (RGB plus one extra such as NIR or alpha).
MAX_BANDS = 4
#: GDAL block cache (MB) for reading and writing: bounds memory whatever the scene size.
#: (rasterio passes GDAL_CACHEMAX to GDAL as bytes, so it is converted where it is set.)
GDAL_CACHE_MB = 256

#: Creation options of the GDAL COG driver used by :func:`write_cog`.
COG_PROFILE: dict[str, str] = {
    "BLOCKSIZE": "512",
    "COMPRESS": "DEFLATE",
    "PREDICTOR": "YES",
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}

#: Creation options geo_ntl sets itself: it builds the overviews before the COG driver runs.
RESERVED_CREATION_OPTIONS = ("OVERVIEWS",)
#: GDAL's overview resampling names and rasterio's for them (geo_ntl builds the overviews).
_OVERVIEW_RESAMPLING = {
    "NEAREST": "nearest",
    "AVERAGE": "average",
    "BILINEAR": "bilinear",
    "CUBIC": "cubic",
    "CUBICSPLINE": "cubic_spline",
    "LANCZOS": "lanczos",
    "MODE": "mode",
    "RMS": "rms",
}

Compression = Literal["DEFLATE", "ZSTD", "LZW", "NONE"]

#: Codecs that take only some pixel types or band counts: ``{codec: (dtypes, band counts)}``
#: (GDAL's GeoTIFF and COG drivers; a codec not listed takes every supported type).
CODEC_LIMITS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "JPEG": (("uint8",), (1, 3)),
    "WEBP": (("uint8",), (3, 4)),
    "JXL": (("uint8", "uint16", "float32"), (1, 2, 3, 4)),
}


def gdal_cache_environ() -> dict[str, str]:
    """``{"GDAL_CACHEMAX": MB}`` for processes geo_ntl starts, or ``{}`` if the user set one.

    GDAL's default block cache is 5 % of the machine's RAM (1.2 GB on 24 GiB, 6 GB on
    128 GiB) and keeps every block a scene read passes through until it is full: streaming
    a 20000 x 20000 scene once then costs as much memory as the scene. geo_ntl reads each
    block about once (plus halos), so it caps the cache, unless the user chose a size, in
    the GDAL work it does (:func:`_gdal_env`) and in the dask worker processes it starts
    (:mod:`geo_ntl.parallel`) -- never in this process's environment. (A bare number is MB
    to GDAL.)
    """
    return {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": str(GDAL_CACHE_MB)}


def _gdal_env(**options: Any) -> rasterio.Env:
    """``rasterio.Env`` with ``options`` and geo_ntl's block-cache cap (see :func:`gdal_cache_environ`).

    GDAL fixes its cache size at the first block it caches, so the cap holds for the
    process once the first read or write geo_ntl does runs inside this environment.
    """
    if "GDAL_CACHEMAX" not in os.environ:
        options.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB * 1024 * 1024)
    return rasterio.Env(**options)


def _check_exists(path: PathLike) -> str:
    text = os.fspath(path)
    if is_remote(text):
        return text
    check_not_subdataset(text)
    if not Path(text).exists():
        raise SceneNotFoundError(f"scene {text} does not exist; check the path")
    if Path(text).is_dir():
        raise NotARasterError(f"{text} is a folder, not a raster; give a GeoTIFF path")
    return text


def _describe_dtypes(dtypes: tuple[str, ...]) -> str:
    return ", ".join(sorted(set(dtypes)))


def open_scene(
    path: PathLike,
    *,
    chunks: int | Mapping[str, int] | None = DEFAULT_CHUNKS,
    allow_no_crs: bool = False,
) -> xr.DataArray:
    """Open a raster lazily as a dask-backed ``(band, y, x)`` DataArray.

    Parameters
    ----------
    path : str or os.PathLike
        Any dataset rasterio opens (GeoTIFF, COG, VRT, ``/vsicurl/`` URL...).
    chunks : int or mapping, default DEFAULT_CHUNKS
        Chunk edge in pixels for ``y`` and ``x`` (an int), or a mapping such as
        ``{"y": 2048, "x": 1024}``. Bands always form one chunk. ``None`` opens
        the scene without dask (numpy-backed, still lazy until accessed).
    allow_no_crs : bool, default False
        Open rasters that have no CRS instead of raising.

    Returns
    -------
    xarray.DataArray
        Dims ``(band, y, x)`` in the file's dtype; CRS and transform through
        the ``.rio`` accessor, ``da.rio.nodata`` the nodata value, band
        descriptions in ``attrs["long_name"]``, scale/offset in
        ``attrs["scale_factor"]`` and ``attrs["add_offset"]``. No pixel is read.

    Raises
    ------
    SceneNotFoundError
        If ``path`` does not exist.
    NotARasterError
        If no raster driver can open ``path``.
    MissingCRSError
        If the raster has no CRS and ``allow_no_crs`` is False.
    UnsupportedRasterError
        If the band count or pixel type is not supported.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from geo_ntl.testing import make_scene
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scene.tif"
    >>> _ = write_cog(make_scene((3, 64, 64)), path)
    >>> da = open_scene(path, chunks=32)
    >>> da.dims, da.dtype.name, da.data.chunksize
    (('band', 'y', 'x'), 'uint8', (3, 32, 32))
    """
    import rioxarray

    source = _check_exists(path)
    dask_chunks = _dask_chunks(chunks)
    try:
        with _gdal_env(), rasterio.open(source) as src:
            count, dtypes, crs = src.count, src.dtypes, src.crs
            if 1 <= count <= MAX_BANDS and len(set(dtypes)) == 1:
                check_nodata(src)
            truncated = _unreadable_tail(src)
            if truncated:  # GDAL's read error would resurface in the calls below
                raise NotARasterError(
                    f"{source} is truncated or corrupt: its last block cannot be read "
                    f"({truncated}); write or download it again"
                )
            alpha, masked, nodata = has_alpha(src), has_gdal_mask(src), src.nodata
            palette = src.colorinterp[0] == ColorInterp.palette
            gcps = bool(src.gcps[0])
            subdatasets = list(src.subdatasets)
    except RasterioIOError as exc:
        raise NotARasterError(
            f"{source} is not a raster rasterio can open ({exc}); give a GeoTIFF"
        ) from exc
    if subdatasets and count == 0:
        raise NotARasterError(
            f"{source} holds several subdatasets; extract one into a GeoTIFF first, e.g. "
            f"`gdal_translate {subdatasets[0]} scene.tif`"
        )
    if crs is None and gcps and not allow_no_crs:
        raise MissingCRSError(
            f"{source} is georeferenced by ground control points, not a transform; warp it "
            f"onto a grid first, e.g. `gdalwarp -t_srs EPSG:3067 {source} warped.tif`"
        )
    if crs is None and not allow_no_crs:
        raise MissingCRSError(
            f"{source} has no CRS; assign one, e.g. `rio edit-info --crs EPSG:3067 {source}` "
            "(in Python: `da.rio.write_crs(...)`, or open_scene(..., allow_no_crs=True))"
        )
    if palette:
        raise palette_error(source)
    bands = count - alpha
    if not 1 <= bands <= MAX_BANDS:
        raise UnsupportedRasterError(
            f"{source} has {count} bands; geo_ntl reads 1 to {MAX_BANDS} bands "
            "(panchromatic or RGB); select bands first, e.g. `gdal_translate -b 1 -b 2 -b 3`"
        )
    if len(set(dtypes)) != 1:
        raise UnsupportedRasterError(
            f"{source} has pixel types {_describe_dtypes(dtypes)}; geo_ntl reads one per scene "
            f"({', '.join(SUPPORTED_DTYPES)}); convert first, e.g. `gdal_translate -ot Float32`"
        )
    check_dtype(dtypes[0], source=source)
    da = rioxarray.open_rasterio(
        source, chunks=dask_chunks, masked=False, mask_and_scale=False, lock=False
    )
    if not isinstance(da, xr.DataArray):
        raise NotARasterError(
            f"{source} holds several subdatasets; extract one into a GeoTIFF first "
            "(`gdal_translate`)"
        )
    if alpha:
        da = da.isel(band=slice(0, bands))
    if masked:
        da = _masked_as_nodata(da, source, nodata)
    da.attrs.setdefault("source", source)
    return da


def palette_error(source: str) -> UnsupportedRasterError:
    """Return the error for a palette (colour-table) raster: its pixels are not light."""
    return UnsupportedRasterError(
        f"{source} is a palette (colour-table) raster: its pixels are colour indices, not "
        f"light; expand it first, e.g. `gdal_translate -expand rgb {source} rgb.tif`"
    )


def _dask_chunks(chunks: int | Mapping[str, int] | None) -> dict[str, int] | None:
    """open_scene's ``chunks`` as rioxarray's, refusing sizes dask cannot take."""
    if chunks is None:
        return None
    sizes = {"y": chunks, "x": chunks} if not isinstance(chunks, Mapping) else dict(chunks)
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 and size != -1:
            raise ParameterError(
                f"chunks must be a positive number of pixels (or -1 for whole), got {name}={size!r}"
            )
    return {"band": -1, **sizes}


def _valid_block(template: np.ndarray, source: str, block_info: Any = None) -> np.ndarray:
    """GDAL's dataset mask of one chunk of ``source`` (a dask block function)."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    with _gdal_env(), rasterio.open(source) as src:
        return valid_window(src, Window(c0, r0, c1 - c0, r1 - r0))


def _masked_as_nodata(da: xr.DataArray, source: str, nodata: float | None) -> xr.DataArray:
    """Make the pixels a GDAL mask (mask band, ``.msk``, alpha) hides nodata.

    They get the scene's nodata value; float scenes without one get NaN; integer scenes
    without one get a value no valid pixel holds (one streamed pass, see
    :func:`_free_value`), recorded as their nodata, so every stage and every output takes
    them for nodata.
    """
    data = da.data
    if isinstance(data, dsa.Array):
        valid: Any = dsa.map_blocks(
            _valid_block, data[0], source=source, dtype=bool, meta=np.array((), dtype=bool)
        )
    else:
        with _gdal_env(), rasterio.open(source) as src:
            valid = valid_window(src, Window(0, 0, src.width, src.height))
        data = np.asarray(data)
    if nodata is not None:
        fill = nodata
    elif da.dtype.kind == "f":
        fill = float("nan")
    else:
        fill = _free_value(source, da.dtype)
    lib = dsa if isinstance(data, dsa.Array) else np
    out = da.copy(data=lib.where(valid[None], data, np.asarray(fill, dtype=da.dtype)))
    if nodata is None and da.dtype.kind in "ui":
        out = out.rio.write_nodata(fill, encoded=False)
    return out


def _free_value(source: str, dtype: np.dtype) -> int:
    """Return a value of an integer ``dtype`` that no valid pixel of ``source`` holds.

    0 if it is free, else the highest free value.

    Raises
    ------
    UnsupportedRasterError
        If the valid pixels use every value of the dtype.
    """
    info = np.iinfo(dtype)
    counts = np.zeros(int(info.max) - int(info.min) + 1, dtype=np.int64)
    with _gdal_env(), rasterio.open(source) as src:
        bands = list(range(1, src.count + 1 - has_alpha(src)))
        for row in range(0, src.height, 1024):
            window = Window(0, row, src.width, min(1024, src.height - row))
            values = src.read(bands, window=window).astype(np.int64)
            # a pixel is nodata when every band holds the value: only such pixels rule one out
            alike = (values == values[0]).all(axis=0) & valid_window(src, window)
            counts += np.bincount(values[0][alike] - int(info.min), minlength=counts.size)
    free = np.flatnonzero(counts == 0) + int(info.min)
    if free.size == 0:
        raise UnsupportedRasterError(
            f"{source} has a mask band and its valid pixels use every {dtype.name} value, so "
            f"none is free to mark the masked ones; convert it, e.g. "
            f"`gdal_translate -ot Float32 {source} float.tif` (masked pixels then read as NaN)"
        )
    return 0 if counts[-int(info.min)] == 0 else int(free[-1])


def _unreadable_tail(src: Any) -> str | None:
    """Why the last block of the full-resolution image cannot be read, or None.

    A COG stores its full-resolution tiles last, so a file cut short (a full disk, an
    interrupted copy) fails here while its header and overviews still read.
    """
    if src.width == 0 or src.height == 0:
        return None
    block_h, block_w = src.block_shapes[0]
    row = ((src.height - 1) // block_h) * block_h
    col = ((src.width - 1) // block_w) * block_w
    window = Window(col, row, min(block_w, src.width - col), min(block_h, src.height - row))
    try:
        src.read(window=window)
    except Exception as exc:  # any GDAL read error: the file is damaged
        detail = exc.__cause__ if exc.__cause__ is not None else exc
        return _one_line(str(detail)) or type(exc).__name__
    return None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def ensure_valid_data(da: xr.DataArray) -> None:
    """Raise if a scene holds no valid pixel.

    A quick look at a decimated copy settles most scenes; only when that copy
    is entirely nodata is the whole scene checked, block by block.

    Parameters
    ----------
    da : xarray.DataArray
        Scene as returned by :func:`open_scene`.

    Raises
    ------
    AllNoDataError
        If every pixel is nodata (or NaN for float scenes).
    """
    nodata = da.rio.nodata
    is_float = np.issubdtype(da.dtype, np.floating)
    if nodata is None and not is_float:
        return
    data = as_band_yx(da)[0].data
    step = max(1, max(data.shape[1:]) // 256)

    def all_invalid(arr: Any) -> bool:
        invalid = dsa.isnan(arr).all(axis=0) if is_float else dsa.zeros(arr.shape[1:], dtype=bool)
        if nodata is not None:
            invalid = invalid | (arr == nodata).all(axis=0)
        result = invalid.all()
        return bool(result.compute() if hasattr(result, "compute") else result)

    data = data if isinstance(data, dsa.Array) else dsa.from_array(data, chunks=DEFAULT_CHUNKS)
    if all_invalid(data[:, ::step, ::step]) and all_invalid(data):
        raise AllNoDataError(
            f"{da.attrs.get('source', 'the scene')} holds no valid pixel (all nodata={nodata}); "
            "check the file or its nodata value"
        )


class _StagingFileWriter:
    """Picklable ``dask.array.store`` target for cluster workers.

    Each write opens the uncompressed staging GeoTIFF in update mode and
    rewrites one window in place (its tiles were allocated when the file was
    created), under a cluster-wide lock, so workers in any process -- on any
    machine that sees the same file system -- can write their own blocks.
    """

    def __init__(self, path: Path, mask_band: int | None = None) -> None:
        self.path = str(path)
        self.mask_band = mask_band

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray) -> None:
        with _gdal_env(), rasterio.open(self.path, "r+") as dataset:
            _WindowWriter(dataset, self.mask_band)[key] = value


def cog_overview_factors(width: int, height: int, blocksize: int = 512) -> list[int]:
    """Overview decimation factors GDAL's COG driver makes with ``OVERVIEWS=AUTO``.

    Factors double while the last level (integer division) is still larger
    than one block on its longer side: 8192 px with 512 px blocks gives
    ``[2, 4, 8, 16]``, 512 px gives none.

    Parameters
    ----------
    width, height : int
        Raster size in pixels.
    blocksize : int, default 512
        Internal tile edge.

    Returns
    -------
    list of int
    """
    factors: list[int] = []
    factor = 1
    while max(width, height) // factor > blocksize:
        factor *= 2
        factors.append(factor)
    return factors


def _build_staging_overviews(staging: Path, blocksize: int, resampling: str) -> None:
    """Build the COG's overview levels inside the uncompressed staging file.

    GDAL's COG driver, given a source without overviews, computes them into a
    compressed temporary file and then decompresses and recompresses them into
    the COG; built here, uncompressed, the driver only encodes them once
    (``OVERVIEWS=FORCE_USE_EXISTING``): about 40 % less time for the COG step,
    same ``AVERAGE`` resampling, nodata respected.
    """
    from rasterio.enums import Resampling

    with rasterio.open(staging, "r+") as dst:
        factors = cog_overview_factors(dst.width, dst.height, blocksize)
        if factors:
            dst.build_overviews(factors, Resampling[_OVERVIEW_RESAMPLING[resampling.upper()]])


#: Tile tasks per worker thread in one band of rows stored by a cluster (see :func:`_row_bands`).
BAND_TASKS_PER_THREAD = 8


def _row_bands(chunks_y: tuple[int, ...], n_cols: int, threads: int) -> list[tuple[int, int]]:
    """Split the chunk rows into bands of about ``BAND_TASKS_PER_THREAD * threads`` chunks.

    Given a whole scene, dask.distributed starts every cheap task (reads, halo slices) long
    before the slow tile tasks that consume them, so a worker's memory grew with the scene
    (3.4-4.0 GB per worker for a 20000^2 scene through the ASM enhancer). Stored band by band,
    only one band's tiles and their neighbours' halos are in flight.
    """
    rows = max(1, math.ceil(BAND_TASKS_PER_THREAD * max(1, threads) / max(1, n_cols)))
    bounds = np.concatenate([[0], np.cumsum(chunks_y)]).astype(int)
    return [
        (int(bounds[i]), int(bounds[min(i + rows, len(chunks_y))]))
        for i in range(0, len(chunks_y), rows)
    ]


#: Bands of rows a cluster computes at once (see :func:`_store_distributed`).
BANDS_IN_FLIGHT = 2


def _store_distributed(data: dsa.Array, staging: Path, mask_band: int | None = None) -> None:
    """Store ``data`` into the staging file from the cluster's workers, band by band.

    Two bands are in flight at a time: the next band is submitted while the current one
    computes, so workers do not idle at band boundaries, and the chunks two neighbouring
    bands share (the halo rows) are read once -- the scheduler sees the same keys in both.
    """
    from distributed import Lock
    from distributed.scheduler import KilledWorker

    client = active_client()
    threads = sum(client.nthreads().values()) if client is not None else 1
    lock = Lock(name=f"geo_ntl-write-{staging.name}")
    writer = _StagingFileWriter(staging, mask_band)
    count, _, width = data.shape
    # Optimise (fuse) the graph once: re-optimising each band's slice fuses differently, and
    # the scheduler then sees one key with two definitions (dask/dask#9888). A graph whose
    # tasks ask for worker resources is not optimised at all (see _asks_for_resources).
    as_built = _asks_for_resources(data)
    if not as_built:
        import dask

        (data,) = dask.optimize(data)
    in_flight: list[Any] = []
    try:
        for y0, y1 in _row_bands(data.chunks[1], data.numblocks[2], threads):
            region = (slice(0, count), slice(y0, y1), slice(0, width))
            band = dsa.store(
                data[:, y0:y1, :],
                writer,  # type: ignore[arg-type]  # any object with __setitem__ (dask's stubs: arrays)
                lock=lock,  # type: ignore[arg-type]
                regions=region,
                optimize_graph=False,
                compute=False,
            )
            in_flight.append(client.compute(band, optimize_graph=not as_built))
            if len(in_flight) >= BANDS_IN_FLIGHT:
                in_flight.pop(0).result()
        for future in in_flight:
            future.result()
    except KilledWorker as exc:
        edge = max(max(data.chunks[1]), max(data.chunks[2]))
        raise ClusterError(
            f"dask workers died repeatedly computing a {edge}-pixel tile, most likely out of memory; "
            "lower `tile`, use fewer `threads_per_worker`, or give workers more memory",
            options={"`tile`": "tile", "`threads_per_worker`": "threads_per_worker"},
        ) from exc
    finally:
        for future in in_flight:
            future.cancel()


def _asks_for_resources(data: dsa.Array) -> bool:
    """Whether a layer of ``data``'s graph asks for dask worker resources (``GPU``).

    Optimising a graph materialises it into one layer, which drops the layers' annotations:
    the model tasks' ``GPU`` resource would be lost and half of them run on workers without
    a GPU. Such a graph is computed as built (its keys do not change between bands either).
    """
    layers = getattr(data.__dask_graph__(), "layers", {})
    return any((layer.annotations or {}).get("resources") for layer in layers.values())


class _WindowWriter:
    """``dask.array.store`` target that writes each block to a rasterio window.

    Writes are serialised by the writer's own lock. :meth:`close` takes that
    lock too, so once it returns no thread is writing and none will: blocks
    that finish after a failure elsewhere (dask returns on the first error while
    other threads are still computing) are dropped instead of writing into a
    closed dataset.
    """

    def __init__(self, dataset: rasterio.io.DatasetWriter, mask_band: int | None = None) -> None:
        self.dataset = dataset
        self.mask_band = mask_band  # index (0-based) of the plane holding the mask, if any
        self._lock = threading.Lock()
        self._closed = False

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray) -> None:
        bands, rows, cols = key
        window = Window.from_slices(rows, cols)
        mask = None
        if self.mask_band is not None:
            mask = value[self.mask_band - bands.start].astype(np.uint8)
            value = value[: self.mask_band - bands.start]
            bands = slice(bands.start, self.mask_band)
        indexes = list(range(bands.start + 1, bands.stop + 1))
        with self._lock:
            if not self._closed:
                self.dataset.write(value, indexes=indexes, window=window)
                if mask is not None:
                    self.dataset.write_mask(mask, window=window)

    def close(self) -> None:
        """Wait for the write in progress, if any, and refuse later ones."""
        with self._lock:
            self._closed = True


def check_codec(compress: str, dtype: Any, count: int) -> None:
    """Refuse a codec that cannot encode ``count`` bands of ``dtype``, before any work.

    GDAL would otherwise report the failure tile by tile on its encoding threads and
    leave a file of zeros (see :data:`CODEC_LIMITS`).

    Raises
    ------
    ParameterError
        Naming the codec, what it takes and what to use instead.
    """
    limits = CODEC_LIMITS.get(compress.upper())
    if limits is None:
        return
    dtypes, counts = limits
    name = np.dtype(dtype).name
    if name not in dtypes or count not in counts:
        raise ParameterError(
            f"compression {compress.upper()} cannot encode {count} band(s) of {name} (it takes "
            f"{', '.join(dtypes)} with {' or '.join(map(str, counts))} bands); use DEFLATE, ZSTD "
            "or LZW (`compress`), or convert the output first",
            options={"`compress`": "compress"},
        )


def _creation_blocksize(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParameterError(
            f"creation_options BLOCKSIZE={text} is not a number of pixels; give a multiple of 16",
            options={"creation_options": "creation_options"},
        ) from None


def cog_creation_options(
    compress: str | None = None,
    blocksize: int | None = None,
    creation_options: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the GDAL COG driver's creation options that :func:`write_cog` uses.

    :data:`COG_PROFILE`, then ``compress`` and ``blocksize``, then ``creation_options``
    (keys case-insensitive), as ``rio``'s ``--co KEY=VALUE`` does.

    Parameters
    ----------
    compress : str, optional
        Compression; default DEFLATE, or ``creation_options["COMPRESS"]``.
    blocksize : int, optional
        Internal tile edge in pixels, a multiple of 16; default 512, or
        ``creation_options["BLOCKSIZE"]``.
    creation_options : mapping of str to str, optional
        Further COG driver options (``LEVEL``, ``PREDICTOR``, ``BIGTIFF``, ...).

    Returns
    -------
    dict of str to str

    Raises
    ------
    ParameterError
        For a reserved key (:data:`RESERVED_CREATION_OPTIONS`), a ``COMPRESS`` or
        ``BLOCKSIZE`` that contradicts ``compress`` or ``blocksize``, or a block size that
        is not a positive multiple of 16.
    """
    user = {
        str(key).strip().upper(): str(value).strip()
        for key, value in (creation_options or {}).items()
    }
    cli = {"creation_options": "creation_options"}
    for key in user:
        if key in RESERVED_CREATION_OPTIONS:
            raise ParameterError(
                f"creation_options {key} is set by geo_ntl (it builds the overviews itself); "
                "leave it out",
                options=cli,
            )
    if "COMPRESS" in user:
        given = user.pop("COMPRESS").upper()
        if compress is not None and given != compress.upper():
            raise ParameterError(
                f"creation_options COMPRESS={given} contradicts compress={compress!r}; "
                "give the compression once",
                options={**cli, f"compress={compress!r}": "compress"},
            )
        compress = given
    if "BLOCKSIZE" in user:
        text = user.pop("BLOCKSIZE")
        size = _creation_blocksize(text)
        if blocksize is not None and size != blocksize:
            raise ParameterError(
                f"creation_options BLOCKSIZE={text} contradicts blocksize={blocksize}; "
                "give the block size once",
                options={**cli, f"blocksize={blocksize}": "blocksize"},
            )
        if size <= 0 or size % 16:
            raise ParameterError(
                f"creation_options BLOCKSIZE={text} is not a positive multiple of 16 pixels",
                options=cli,
            )
        blocksize = size
    resampling = user.get("OVERVIEW_RESAMPLING", "AVERAGE").upper()
    if resampling not in _OVERVIEW_RESAMPLING:
        raise ParameterError(
            f"creation_options OVERVIEW_RESAMPLING={resampling} is not one of "
            f"{', '.join(_OVERVIEW_RESAMPLING)}",
            options=cli,
        )
    if "OVERVIEW_RESAMPLING" in user:
        user["OVERVIEW_RESAMPLING"] = resampling
    blocksize = 512 if blocksize is None else blocksize
    if (
        isinstance(blocksize, bool)
        or not isinstance(blocksize, int)
        or blocksize <= 0
        or blocksize % 16
    ):
        raise ParameterError(
            f"blocksize must be a positive multiple of 16 pixels, got {blocksize!r}"
        )
    compress = "DEFLATE" if compress is None else compress.upper()
    options = {**COG_PROFILE, "BLOCKSIZE": str(blocksize), "COMPRESS": compress}
    if compress == "NONE":
        options.pop("PREDICTOR")
    return {**options, **user}


def _provenance_tags(
    stage: str | None, params: Mapping[str, Any] | None, tags: Mapping[str, Any] | None
) -> dict[str, str]:
    from geo_ntl._provenance import library_versions

    out = {**library_versions(), "GEO_NTL_VERSION": __version__}
    if stage:
        out["GEO_NTL_STAGE"] = stage
    if params:
        out["GEO_NTL_PARAMS"] = json.dumps(dict(params), sort_keys=True, default=str)
        if params.get("weights_sha256"):
            out["GEO_NTL_WEIGHTS_SHA256"] = str(params["weights_sha256"])
    for key, value in (tags or {}).items():
        out[str(key)] = str(value)
    return out


def _result_tags(da: xr.DataArray) -> dict[str, str]:
    """Tags a stage's result carries for its output (the PSF a deblooming stage used)."""
    psf = da.attrs.get("geo_ntl_psf")
    return {"GEO_NTL_PSF": str(psf)} if psf else {}


def write_cog(
    da: xr.DataArray,
    path: PathLike,
    *,
    overwrite: bool = False,
    compress: Compression | None = None,
    blocksize: int | None = None,
    creation_options: Mapping[str, str] | None = None,
    nodata: float | None = None,
    dtype: str | np.dtype | None = None,
    stage: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    allow_no_crs: bool = False,
    mask: Any = None,
) -> Path:
    """Stream a DataArray into a Cloud-Optimized GeoTIFF, atomically.

    The array is computed chunk by chunk (dask) and each chunk written to a
    tiled, uncompressed intermediate GeoTIFF beside the output, whose overview
    levels are then built in place (see :func:`cog_overview_factors`); GDAL's
    COG driver encodes it into a temporary file that is renamed onto ``path``.
    At no point is the scene held whole in memory, and a failure at any point
    leaves neither a partial output nor a changed existing one.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``(band, y, x)`` or ``(y, x)``, numpy- or dask-backed, with a CRS
        and transform (rioxarray).
    path : str or os.PathLike
        Output file.
    overwrite : bool, default False
        Replace an existing file. Without it the final rename also refuses a
        file that appeared while writing (see :func:`geo_ntl._atomic.atomic_output`).
    compress : {"DEFLATE", "ZSTD", "LZW", "NONE"}, optional
        Compression (default DEFLATE), always with a predictor (horizontal for
        integers, floating point for floats).
    blocksize : int, optional
        Internal tile edge in pixels, a multiple of 16 (default 512).
    creation_options : mapping of str to str, optional
        Further GDAL COG driver creation options, e.g. ``{"LEVEL": "9"}``, as ``rio``'s
        ``--co`` (see :func:`cog_creation_options`); they change the encoding, not the
        pixels.
    nodata : float, optional
        Nodata value to record; defaults to ``da.rio.nodata``.
    dtype : str or numpy.dtype, optional
        Output pixel type; floats are rounded and clipped into integer types.
        Defaults to the array's dtype.
    stage : str, optional
        Processing stage recorded in the ``GEO_NTL_STAGE`` tag.
    params : mapping, optional
        Parameters recorded as JSON in the ``GEO_NTL_PARAMS`` tag (and a
        ``weights_sha256`` among them in ``GEO_NTL_WEIGHTS_SHA256``). Every
        output also records ``GEO_NTL_VERSION``, ``GEO_NTL_CODE`` (see
        :func:`geo_ntl._provenance.code_hash`), ``GEO_NTL_TORCH`` and ``GEO_NTL_GDAL``.
    tags : mapping, optional
        Further dataset tags.
    allow_no_crs : bool, default False
        Write arrays that have no CRS instead of raising.
    mask : (y, x) array of bool, optional
        Valid pixels (True), numpy- or dask-backed, written as the GeoTIFF's internal
        mask band (GDAL ``GMF_PER_DATASET``): the way to mark gaps where no value of
        the dtype is free to be nodata (see :func:`geo_ntl.mosaic.mosaic`).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    MissingCRSError
        If ``da`` has no CRS and ``allow_no_crs`` is False.
    ParameterError
        For bad creation options (see :func:`cog_creation_options`).
    OutputExistsError, OutputPathError
        If ``path`` cannot be written; raised before any computation.
    DiskFullError
        If the disk fills up while writing (nothing partial is left).

    Notes
    -----
    Peak memory is about (dask threads + 2) chunks of the input graph plus
    GDAL's block cache; the intermediate file takes the uncompressed size of
    the scene plus a third (its overviews) on disk next to the output until
    the COG is done.
    """
    da = as_band_yx(da)[0]
    cog_options = cog_creation_options(compress, blocksize, creation_options)
    blocksize = int(cog_options["BLOCKSIZE"])
    crs = da.rio.crs
    if crs is None and not allow_no_crs:
        raise MissingCRSError("the array has no CRS; call da.rio.write_crs(...) before writing")
    out_dtype = check_dtype(dtype if dtype is not None else da.dtype)
    nodata = da.rio.nodata if nodata is None else nodata
    data = _with_mask_plane(_as_dask(da.data), out_dtype, nodata, mask)
    count = data.shape[0] - (mask is not None)
    shape = (count, *data.shape[1:])  # the image bands, without the mask plane
    check_codec(cog_options["COMPRESS"], out_dtype, count)
    profile = _staging_profile(da, shape, out_dtype, crs=crs, nodata=nodata, blocksize=blocksize)
    if cog_options.get("NUM_THREADS") == "ALL_CPUS":
        cog_options["NUM_THREADS"] = gdal_worker_threads()
    with (
        atomic_output(path, overwrite=overwrite) as tmp_cog,
        disk_errors(path, tmp_cog.parent),
        failing_on_gdal_errors(path),
    ):
        staging = tmp_cog.with_name(tmp_cog.name + ".staging.tif")
        try:
            _write_staging(
                staging,
                data,
                profile,
                tags=_provenance_tags(stage, params, {**_result_tags(da), **(tags or {})}),
                attrs=da.attrs,
                mask_count=count if mask is not None else None,
            )
            try:
                with _gdal_env(GDAL_NUM_THREADS="ALL_CPUS"):
                    _build_staging_overviews(staging, blocksize, cog_options["OVERVIEW_RESAMPLING"])
                    rasterio.shutil.copy(
                        staging,
                        tmp_cog,
                        driver="COG",
                        **{**cog_options, "OVERVIEWS": "FORCE_USE_EXISTING"},
                    )
            except (RasterioError, CPLE_BaseError) as exc:  # GDAL's error on this thread
                raise gdal_write_error(path, str(exc)) from exc
        finally:
            staging.unlink(missing_ok=True)
    return Path(path)


def _as_dask(data: Any) -> dsa.Array:
    """Return the pixels as a dask array (an in-memory array gets the default chunks)."""
    if isinstance(data, dsa.Array):
        return data
    return dsa.from_array(np.asarray(data), chunks=(-1, DEFAULT_CHUNKS, DEFAULT_CHUNKS))


def _with_mask_plane(
    data: dsa.Array, out_dtype: np.dtype, nodata: float | None, mask: Any | None
) -> dsa.Array:
    """Cast to the output dtype; a mask travels as one more plane (the writers split it off)."""
    data = cast(data, out_dtype, nodata)
    if mask is None:
        return data
    mask = getattr(mask, "data", mask)
    if not isinstance(mask, dsa.Array):
        mask = dsa.from_array(np.asarray(mask), chunks=data.chunks[1:])
    plane = dsa.where(mask.rechunk(data.chunks[1:]), 255, 0).astype(out_dtype)[None]
    return dsa.concatenate([data, plane], axis=0).rechunk({0: -1})


def _staging_profile(
    da: xr.DataArray,
    shape: tuple[int, ...],
    out_dtype: np.dtype,
    *,
    crs: Any,
    nodata: float | None,
    blocksize: int,
) -> dict[str, Any]:
    """Rasterio profile of the uncompressed, tiled staging GeoTIFF the COG is copied from."""
    count, height, width = shape
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": out_dtype.name,
        "crs": crs,
        "transform": da.rio.transform(),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "NONE",
        "BIGTIFF": "IF_SAFER",
        # band-interleaved: each (band, y, x) chunk is copied plane by plane, with no
        # pixel interleaving in Python or GDAL; the COG driver interleaves once, as it encodes
        "interleave": "band",
    }


def _write_staging(
    staging: Path,
    data: dsa.Array,
    profile: dict[str, Any],
    *,
    tags: dict[str, str],
    attrs: dict[str, Any],
    mask_count: int | None,
) -> None:
    """Write the pixels (and the mask plane) into the staging file, here or on the cluster's workers.

    ``mask_count``: the number of image bands (``profile["count"]``) when ``data`` carries a
    mask plane after them, else None.
    """
    count = profile["count"]
    client = active_client()
    if client is not None:
        profile["SPARSE_OK"] = False  # allocate every tile, so workers rewrite in place
    descriptions = attrs.get("long_name")
    if isinstance(descriptions, str):
        descriptions = (descriptions,) * count if count == 1 else None
    scales, offsets = attrs.get("scale_factor"), attrs.get("add_offset")
    gdal_env = _gdal_env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK=True)
    with gdal_env, rasterio.open(staging, "w", **profile) as dst:
        if mask_count is not None:
            dst.write_mask(np.full((1, 1), 255, np.uint8), window=Window(0, 0, 1, 1))
        dst.update_tags(**tags)
        if descriptions is not None and len(descriptions) == count:
            for index, text in enumerate(descriptions, start=1):
                dst.set_band_description(index, str(text))
        if scales is not None:
            dst.scales = tuple(np.broadcast_to(scales, (count,)).tolist())
        if offsets is not None:
            dst.offsets = tuple(np.broadcast_to(offsets, (count,)).tolist())
        if client is None:
            writer = _WindowWriter(dst, mask_count)
            try:
                dsa.store(data, writer, lock=False)  # type: ignore[arg-type]
            finally:
                writer.close()
    if client is not None:
        _store_distributed(data, staging, mask_count)


def scene_info(path: PathLike) -> dict[str, Any]:
    """Describe a raster: size, bands, dtype, CRS, resolution, nodata, COG validity.

    Parameters
    ----------
    path : str or os.PathLike
        Raster to describe.

    Returns
    -------
    dict
        JSON-serialisable description.

    Raises
    ------
    SceneNotFoundError, NotARasterError
        If ``path`` is missing or not a raster.

    Notes
    -----
    ``is_cog`` needs both rio-cogeo's ``cog_validate`` and a read of the last
    full-resolution block (a COG cut short still has a valid header); ``read_error``
    says why that read failed and ``nodata_error`` describes a nodata tag the dtype
    cannot hold (see :func:`geo_ntl._raster.check_nodata`).
    """
    from rio_cogeo.cogeo import cog_validate

    source = _check_exists(path)
    try:
        with rasterio.open(source) as src:
            info: dict[str, Any] = {
                "path": source,
                "driver": src.driver,
                "width": src.width,
                "height": src.height,
                "bands": src.count,
                "dtype": _describe_dtypes(src.dtypes),
                "crs": src.crs.to_string() if src.crs else None,
                "resolution": [abs(src.res[0]), abs(src.res[1])],
                "bounds": list(src.bounds),
                "nodata": src.nodata,
                "band_descriptions": list(src.descriptions),
                "alpha_band": has_alpha(src),
                "palette": src.colorinterp[0] == ColorInterp.palette,
                "mask": has_gdal_mask(src),
                "block_shape": list(src.block_shapes[0]),
                "compression": src.compression.name if src.compression else None,
                "overviews": src.overviews(1),
                "tags": src.tags(),
            }
            info["read_error"] = _unreadable_tail(src)
            info["nodata_error"] = None
            try:
                check_nodata(src)
            except InputError as exc:
                info["nodata_error"] = str(exc)
    except RasterioIOError as exc:
        raise NotARasterError(f"{source} is not a raster rasterio can open ({exc})") from exc
    try:
        is_valid, errors, _warnings = cog_validate(source, quiet=True)
    except Exception as exc:  # rio-cogeo fails on some damaged files instead of reporting
        is_valid, errors = False, [f"cannot be validated ({_one_line(str(exc))})"]
    errors = list(errors)
    if info["read_error"] is not None:
        is_valid = False
        reason = f"truncated or corrupt: its last block cannot be read ({info['read_error']})"
        errors.insert(0, reason)
    info["is_cog"] = bool(is_valid)
    info["cog_errors"] = errors
    return info
