"""The raster contract every stage shares: dims, pixel types, nodata, the cast, georeferencing.

One home for what the stages used to do each in their own way:

* :func:`as_band_yx` -- scenes are ``(band, y, x)``; a ``(y, x)`` scene gets one band (and
  loses it again on the way out), any other layout is a
  :class:`~geo_ntl.exceptions.DimensionError`.
* :data:`SUPPORTED_DTYPES` and :func:`check_dtype` -- the one set of pixel types that
  reading, writing, the tiled engine, the enhancer and the deblooming GAN take, with one
  :class:`~geo_ntl.exceptions.UnsupportedRasterError` for the others.
* :func:`nodata_mask` and :func:`invalid_pixels` -- which pixels are nodata: every band
  equal to the nodata value, or (invalid pixels) a NaN -- and, for stages whose filters an
  infinity would poison, an infinite -- band.
* :func:`to_dtype` -- the float -> output-dtype cast (round, clip, fill nodata) of
  :func:`geo_ntl.io.write_cog`, the enhancer, the deblooming GAN and the mosaic. A *valid*
  pixel whose computed value equals the nodata value would otherwise become nodata; it is
  nudged to the nearest value that is not nodata (nodata 0 -> 1 for integer outputs, the
  next float for float outputs).
* :func:`cast` and :func:`from_float` -- numpy or dask blocks through :func:`to_dtype`.
* :func:`like` -- a stage's result gets its scene's CRS, transform, attrs and nodata back.
* :func:`check_nodata` -- a nodata tag that the dtype cannot hold (uint8 999, float32 1e40)
  is an error naming the fix, not a tag dropped without a word.
* :func:`disk_errors` -- a full disk while writing is a :class:`~geo_ntl.exceptions.DiskFullError`
  naming the file, whatever layer (Python, GDAL, libtiff) noticed it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geo_ntl.exceptions import DimensionError, DiskFullError, InputError, UnsupportedRasterError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SUPPORTED_DTYPES",
    "as_band_yx",
    "cast",
    "check_dtype",
    "check_nodata",
    "disk_errors",
    "from_float",
    "has_alpha",
    "has_gdal_mask",
    "image_bands",
    "invalid_pixels",
    "is_disk_full",
    "like",
    "nodata_mask",
    "raw_nodata",
    "to_dtype",
    "valid_window",
]

#: Pixel types every stage reads, processes and writes (see DESIGN.md, "Data contract").
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")

#: Free bytes below which a failed write is taken for a full disk (GDAL's write errors do not
#: always say why they failed).
DISK_FULL_MARGIN = 64 * 1024 * 1024


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


# --- dims and pixel types ----------------------------------------------------------------


def as_band_yx(da: xr.DataArray) -> tuple[xr.DataArray, bool]:
    """Return ``da`` as ``(band, y, x)`` and whether a band was added to a ``(y, x)`` scene.

    Raises
    ------
    DimensionError
        For any other layout, naming the ``transpose`` that fixes it.
    """
    if da.dims == ("y", "x"):
        return da.expand_dims("band").assign_coords(band=[1]), True
    if da.ndim != 3 or da.dims[1:] != ("y", "x"):
        raise DimensionError(
            f"expected dims (band, y, x) or (y, x), got {da.dims}; "
            "reorder with da.transpose('band', 'y', 'x')"
        )
    return da, False


def as_band_yx_array(image: Any) -> tuple[np.ndarray, bool]:
    """Return an image array as ``(band, y, x)``, its dtype checked, and whether a band was added.

    Raises
    ------
    DimensionError
        For anything but a ``(band, y, x)`` or ``(y, x)`` array.
    UnsupportedRasterError
        For an unsupported dtype.
    """
    arr = np.asarray(image)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3:
        raise DimensionError(f"expected a (band, y, x) or (y, x) array, got shape {arr.shape}")
    check_dtype(arr.dtype)
    return arr, squeeze


def check_dtype(dtype: Any, *, source: str | None = None) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if it is one of :data:`SUPPORTED_DTYPES`.

    Parameters
    ----------
    dtype : numpy dtype or str
        Pixel type to check.
    source : str, optional
        File the pixels come from, named in the message.

    Raises
    ------
    UnsupportedRasterError
        For any other pixel type (the same message from every stage).
    """
    out = np.dtype(dtype)
    if out.name not in SUPPORTED_DTYPES:
        subject = f"{source} has pixel type {out.name}" if source else f"pixel type {out.name}"
        raise UnsupportedRasterError(
            f"{subject} is not supported; geo_ntl takes {', '.join(SUPPORTED_DTYPES)}; convert "
            "first, e.g. da.astype('float32') or `gdal_translate -ot Float32`"
        )
    return out


# --- nodata ------------------------------------------------------------------------------


def _nodata_as(nodata: float, dtype: np.dtype) -> np.ndarray | None:
    """``nodata`` in ``dtype``, or None where no pixel of ``dtype`` can equal it."""
    value = float(nodata)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        if not (value.is_integer() and info.min <= value <= info.max):
            return None
    elif not math.isinf(value) and abs(value) > float(np.finfo(dtype).max):
        return None
    return np.asarray(nodata, dtype=dtype)


def nodata_mask(block: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Mask of nodata pixels of a ``(band, y, x)`` block, or None if there is no nodata value.

    A pixel is nodata when every band equals ``nodata`` (or is NaN when ``nodata`` is NaN).

    Parameters
    ----------
    block : (band, y, x) ndarray
        Pixel values.
    nodata : float or None
        The nodata value.

    Returns
    -------
    (y, x) ndarray of bool or None
    """
    if nodata is None:
        return None
    if _is_nan(nodata):
        return np.isnan(block).all(axis=0)
    value = _nodata_as(nodata, block.dtype)
    if value is None:
        return np.zeros(block.shape[1:], dtype=bool)
    return (block == value).all(axis=0)


def invalid_pixels(x: np.ndarray, nodata: float | None, *, nonfinite: bool = False) -> np.ndarray:
    """Mask the pixels of a ``(band, y, x)`` block that hold no valid value.

    A pixel is invalid when every band equals ``nodata``, or any band is NaN (float
    blocks) -- or, with ``nonfinite``, infinite: the choice of the stages whose filters an
    infinity would spread (the enhancer, deconvolution, the flux pass, PSF estimation);
    the cast and the GAN clip infinities to full scale instead.
    """
    bad = np.zeros(x.shape[1:], dtype=bool)
    if x.dtype.kind == "f":
        bad |= (~np.isfinite(x) if nonfinite else np.isnan(x)).any(axis=0)
    if nodata is not None and not _is_nan(nodata):
        bad |= nodata_mask(x, nodata)
    return bad


def to_dtype(
    x: np.ndarray,
    dtype: Any,
    nodata: float | None = None,
    invalid: np.ndarray | None = None,
) -> np.ndarray:
    """Cast a ``(band, y, x)`` block to ``dtype`` without inventing or losing nodata.

    Parameters
    ----------
    x : (band, y, x) ndarray
        Computed values (any dtype; floats are rounded and clipped into integer dtypes).
    dtype : numpy dtype
        Output pixel type.
    nodata : float, optional
        Nodata value of the output (NaN allowed for float outputs).
    invalid : (y, x) ndarray of bool, optional
        Pixels that are nodata; defaults to :func:`invalid_pixels` of ``x`` (pixels that
        were nodata before the cast stay nodata).

    Returns
    -------
    (band, y, x) ndarray of ``dtype``
        Invalid pixels hold ``nodata`` in every band (NaN for float outputs without
        nodata, 0 for integer outputs without nodata). A valid pixel whose every band
        rounds to ``nodata`` is moved by one step (integers) or one ulp (floats) away
        from it, towards its computed value.
    """
    out_dtype = np.dtype(dtype)
    if invalid is None:
        invalid = invalid_pixels(x, nodata)
    any_invalid = bool(invalid.any())
    if out_dtype.kind in "ui":
        info = np.iinfo(out_dtype)
        if x.dtype.kind == "f":
            y = np.rint(np.nan_to_num(x, nan=0.0, posinf=info.max, neginf=info.min))
            y = np.clip(y, info.min, info.max).astype(out_dtype)
        elif x.dtype == out_dtype:
            y = x.copy()
        else:
            y = np.clip(x, info.min, info.max).astype(out_dtype)
    else:
        y = x.astype(out_dtype, copy=True)
    fill = nodata if nodata is not None else (np.nan if out_dtype.kind == "f" else 0)
    if nodata is not None and not _is_nan(nodata):
        value = np.asarray(nodata, dtype=out_dtype)
        hit = (y == value).all(axis=0) & ~invalid
        if hit.any():
            y[:, hit] = _nudged(x[:, hit], value, out_dtype)
    if any_invalid:
        y[:, invalid] = fill
    return y


def cast(data: Any, dtype: Any, nodata: float | None = None) -> Any:
    """:func:`to_dtype` for numpy or dask ``(band, y, x)`` data (dask stays lazy, block-wise)."""
    import dask.array as dsa

    dtype = np.dtype(dtype)
    if data.dtype == dtype:
        return data
    if isinstance(data, dsa.Array):
        return data.map_blocks(to_dtype, dtype, nodata, dtype=dtype)  # type: ignore[arg-type]
    return to_dtype(np.asarray(data), dtype, nodata)


def from_float(x: np.ndarray, dtype: Any, nodata: float | None) -> np.ndarray:
    """Cast a float result whose NaN pixels (any band) are nodata; ``(band, y, x)`` or ``(y, x)``.

    Unlike :func:`to_dtype`'s default, a valid pixel that computes to ``nodata`` exactly is
    not taken for nodata: it is nudged off it.
    """
    if x.ndim == 3:
        return to_dtype(x, dtype, nodata, np.isnan(x).any(axis=0))
    return to_dtype(x[None], dtype, nodata, np.isnan(x))[0]


_TEMPLATE: Any = object()


def like(
    result: xr.DataArray,
    template: xr.DataArray,
    *,
    nodata: Any = _TEMPLATE,
    attrs: bool = True,
) -> xr.DataArray:
    """Give a stage's result its scene's CRS, transform, attrs and nodata.

    Parameters
    ----------
    result : xarray.DataArray
        The stage's output, on the template's grid.
    template : xarray.DataArray
        The scene it came from.
    nodata : float or None, optional
        Nodata value of the result; default the template's. ``None`` writes none (and
        drops a ``_FillValue`` the attrs carried).
    attrs : bool, default True
        Replace the result's attrs by a copy of the template's.

    Returns
    -------
    xarray.DataArray
        A new DataArray (``result`` is not changed).
    """
    import rioxarray  # noqa: F401 - the .rio accessor

    out = result.copy(deep=False)
    if attrs:
        out.attrs = dict(template.attrs)
    if template.rio.crs is not None:
        out = out.rio.write_crs(template.rio.crs)
    out = out.rio.write_transform(template.rio.transform())
    value = template.rio.nodata if nodata is _TEMPLATE else nodata
    if value is not None:
        return out.rio.write_nodata(value, encoded=False)
    out.attrs.pop("_FillValue", None)
    return out


def _nudged(computed: np.ndarray, value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return the valid value next to ``value`` on the side of ``computed`` (``(band, n)``)."""
    above = np.asarray(computed, dtype=np.float64).mean(axis=0) >= float(value)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        up = np.where(above, value < info.max, value == info.min)
        step = np.where(up, 1, -1).astype(np.int64)
        out = (int(value) + step).astype(dtype)
    else:
        up = np.where(above, value < np.finfo(dtype).max, value == -np.finfo(dtype).max)
        out = np.where(
            up, np.nextafter(value, np.inf, dtype=dtype), np.nextafter(value, -np.inf, dtype=dtype)
        ).astype(dtype)
    return np.broadcast_to(out, computed.shape)


# --- GDAL masks --------------------------------------------------------------------------


def has_alpha(src: Any) -> bool:
    """Whether an open rasterio dataset has an alpha band (its last band, by GDAL's rule)."""
    from rasterio.enums import ColorInterp

    return src.count > 1 and src.colorinterp[-1] == ColorInterp.alpha


def image_bands(src: Any) -> list[int]:
    """Return the 1-based indexes of an open dataset's image bands: all but an alpha band."""
    return list(range(1, src.count + (0 if has_alpha(src) else 1)))


def has_gdal_mask(src: Any) -> bool:
    """Whether a dataset masks pixels beyond its nodata value.

    True for an internal or ``.msk`` mask band (per dataset or per band) and an alpha band:
    GDAL's mask flags say more than "all valid" or "nodata".
    """
    from rasterio.enums import MaskFlags

    plain = {MaskFlags.all_valid, MaskFlags.nodata}
    return has_alpha(src) or any(not set(flags) <= plain for flags in src.mask_flag_enums)


def valid_window(src: Any, window: Any) -> np.ndarray:
    """Return the valid pixels of a window of an open dataset, ``(height, width)`` bool.

    GDAL's dataset mask: not nodata in every band, and not masked by a mask band
    (internal or ``.msk``, per dataset or per band) or an alpha band. Pixels of the window
    outside the dataset are not valid.
    """
    from rasterio.windows import Window

    height, width = int(window.height), int(window.width)
    valid = np.zeros((height, width), dtype=bool)
    row0, col0 = int(window.row_off), int(window.col_off)
    top, left = max(row0, 0), max(col0, 0)
    bottom, right = min(row0 + height, src.height), min(col0 + width, src.width)
    if bottom > top and right > left:
        inside = Window(left, top, right - left, bottom - top)
        if has_alpha(src):  # read it: GDAL's dataset mask ignores the alpha band of floats
            inner = src.read(src.count, window=inside) > 0
            invalid = nodata_mask(src.read(image_bands(src), window=inside), src.nodata)
            inner = inner if invalid is None else inner & ~invalid
        else:
            inner = src.dataset_mask(window=inside) > 0
        valid[top - row0 : bottom - row0, left - col0 : right - col0] = inner
    return valid


# --- nodata tags -------------------------------------------------------------------------


def _tiff_nodata_tag(path: str) -> str | None:
    """Read the raw GDAL_NODATA (42113) text of a (Big)TIFF's first IFD, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None:
                return None
            version = struct.unpack(order + "H", head[2:4])[0]
            if version == 42:
                f.seek(struct.unpack(order + "I", head[4:8])[0])
                (n,) = struct.unpack(order + "H", f.read(2))
                entry, fmt, size = 12, "HHII", 4
            elif version == 43:
                f.seek(struct.unpack(order + "Q", head[8:16])[0])
                (n,) = struct.unpack(order + "Q", f.read(8))
                entry, fmt, size = 20, "HHQQ", 8
            else:
                return None
            table = f.read(n * entry)
            for i in range(n):
                tag, _type, count, offset = struct.unpack(
                    order + fmt, table[i * entry : (i + 1) * entry]
                )
                if tag != 42113:
                    continue
                if count <= size:
                    raw = table[i * entry + entry - size : i * entry + entry - size + count]
                else:
                    f.seek(offset)
                    raw = f.read(count)
                return raw.split(b"\x00")[0].decode("ascii", "replace").strip()
    except (OSError, struct.error):
        return None
    return None


def raw_nodata(src: Any) -> str | None:
    """Return the nodata tag of an open rasterio dataset as written in the file, or None.

    rasterio drops a tag its dtype cannot hold (uint8 999 reads as no nodata, float32
    1e40 as inf); this reads the GeoTIFF tag itself.
    """
    name = getattr(src, "name", "")
    if src.driver in ("GTiff", "COG") and os.path.isfile(name):
        return _tiff_nodata_tag(name)
    return None


def check_nodata(src: Any) -> None:
    """Raise if the dataset's nodata tag is not representable in its dtype.

    Parameters
    ----------
    src : rasterio dataset
        Open dataset.

    Raises
    ------
    InputError
        Naming the value, the dtype and the ``gdal_edit.py`` fix.
    """
    text = raw_nodata(src)
    if text is None:
        return
    try:
        value = float(text)
    except ValueError:
        return
    dtype = np.dtype(src.dtypes[0])
    if math.isnan(value):
        if dtype.kind == "f":
            return
        ok = False
    elif dtype.kind in "ui":
        info = np.iinfo(dtype)
        ok = value.is_integer() and info.min <= value <= info.max
    else:
        ok = math.isinf(value) or abs(value) <= float(np.finfo(dtype).max)
    if not ok:
        raise InputError(
            f"{src.name} has nodata tag {text}, which pixel type {dtype.name} cannot hold; "
            f"fix the tag, e.g. `gdal_edit.py -a_nodata 0 {src.name}`, or remove it with "
            f"`gdal_edit.py -unsetnodata {src.name}`"
        )


# --- disk errors -------------------------------------------------------------------------

_DISK_FULL_TEXT = (
    "no space left",
    "disk full",
    "disk is full",  # SQLite (GeoPackage): "database or disk is full"
    "not enough space",
    "quota exceeded",
)
_WRITE_FAILURE_TEXT = (
    "write failed",
    "write error",
    "failed to write",
    "cannot write",
    "failed to create",
    "could not add feature",
    "failed to execute",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        yield item
        item = item.__cause__ or item.__context__


def is_disk_full(exc: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``exc`` (or an exception it came from) means the disk is full.

    True for ``OSError`` ENOSPC/EDQUOT, for messages that say so, and for a GDAL write
    failure when ``folder``'s file system has less than :data:`DISK_FULL_MARGIN` free.
    """
    write_failure = False
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(item).lower()
        if any(word in text for word in _DISK_FULL_TEXT):
            return True
        write_failure |= any(word in text for word in _WRITE_FAILURE_TEXT)
    if write_failure and folder is not None:
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < DISK_FULL_MARGIN
    return False


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None):
    """Turn a full disk inside the block into :class:`DiskFullError` naming ``path``.

    Use it inside the block that holds the temporary files, so that free space is
    measured before they are removed.
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        where = folder if folder is not None else Path(os.fspath(path)).absolute().parent
        if is_disk_full(exc, where):
            raise DiskFullError(
                f"no space left on device writing {os.fspath(path)}; free space or choose "
                "another `out`",
                options={"`out`": "out"},
            ) from exc
        raise
