"""Shared conversions for the image-quality metrics.

Every metric takes ``(band, y, x)`` or ``(y, x)`` arrays and works on an 8-bit
scale: values are divided by ``data_range`` (default: 255 for uint8, 65535 for
uint16, 1 for float) and multiplied by 255. Colour images are reduced to luma
with the BT.601 weights (0.299, 0.587, 0.114) where a metric needs one channel.
"""

from __future__ import annotations

import numpy as np

from geo_ntl.exceptions import DimensionError, InputError

LUMA = (0.299, 0.587, 0.114)


def default_range(dtype: np.dtype) -> float:
    """Default data range of a dtype: 255 (uint8), 65535 (uint16), 1.0 otherwise."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def as_255(image: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """Return a float64 ``(band, y, x)`` copy on a 0-255 scale; NaN/inf become 0."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif":
        raise InputError(f"expected a numeric image, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] > 4 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise DimensionError(
            f"expected a (band, y, x) or (y, x) image with 1-4 bands, got shape {np.shape(image)}"
        )
    rng = default_range(arr.dtype) if data_range is None else float(data_range)
    if not rng > 0:
        raise InputError(f"data_range must be > 0, got {data_range!r}")
    out = arr.astype(np.float64) * (255.0 / rng)
    return np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)


def luma(x255: np.ndarray) -> np.ndarray:
    """Luma (y, x) of a (band, y, x) 0-255 array: BT.601 for 3 bands, the band mean otherwise."""
    if x255.shape[0] == 3:
        return LUMA[0] * x255[0] + LUMA[1] * x255[1] + LUMA[2] * x255[2]
    return x255.mean(axis=0)


def same_shape(a: np.ndarray, b: np.ndarray) -> None:
    """Raise DimensionError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise DimensionError(f"output and reference shapes differ: {a.shape} vs {b.shape}")
