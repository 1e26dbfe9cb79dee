"""Image-quality metrics for enhanced images (8-bit scale, numpy in, float out).

Full-reference: :func:`psnr`, :func:`ssim`, :func:`vif`, :func:`lrsd`.
No-reference: :func:`brightness`, :func:`entropy`, :func:`average_gradient`,
:func:`niqe`, :func:`piqe`, :func:`ceiq`, and :func:`loe` (which compares the
output's lightness order with the input's). :func:`evaluate` runs them all.
Light measures of a restoration against the scene before it (flux per 100 m
cell, lamp widths, invented lamps, dark rings, highlights) are in
:mod:`geo_ntl.metrics.light`; :func:`compare_light` runs them all.
Everything runs offline; the NIQE pristine model ships in ``geo_ntl/data``.
BRISQUE is not included (no offline implementation without extra packages).
No-reference scores only rank methods on the same inputs; look at the images.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geo_ntl.metrics.light import (
    black_level,
    cell_flux,
    compare_light,
    dark_rings,
    flux_ratio_stats,
    highlights_kept,
    lamp_widths,
    lights_kept,
    new_maxima,
)
from geo_ntl.metrics.niqe import niqe
from geo_ntl.metrics.noreference import average_gradient, brightness, ceiq, entropy, loe
from geo_ntl.metrics.piqe import piqe
from geo_ntl.metrics.reference import lrsd, psnr, ssim, vif

__all__ = [
    "average_gradient",
    "black_level",
    "brightness",
    "cell_flux",
    "ceiq",
    "compare_light",
    "dark_rings",
    "entropy",
    "evaluate",
    "flux_ratio_stats",
    "highlights_kept",
    "lamp_widths",
    "lights_kept",
    "loe",
    "lrsd",
    "new_maxima",
    "niqe",
    "piqe",
    "psnr",
    "ssim",
    "vif",
]

NO_REFERENCE = {
    "brightness": brightness,
    "entropy": entropy,
    "average_gradient": average_gradient,
    "niqe": niqe,
    "piqe": piqe,
    "ceiq": ceiq,
}
FULL_REFERENCE = {"psnr": psnr, "ssim": ssim, "vif": vif, "lrsd": lrsd}


def evaluate(
    output: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    low_light: np.ndarray | None = None,
    data_range: float | None = None,
) -> dict[str, Any]:
    """All metrics that apply: no-reference always, full-reference with ``reference``.

    Parameters
    ----------
    output : (band, y, x) or (y, x) ndarray
        The image to score.
    reference : ndarray, optional
        Clean reference of the same shape (PSNR, SSIM, VIF, LRSD).
    low_light : ndarray, optional
        The low-light input, for LOE.
    data_range : float, optional
        Value range of the inputs (default from the dtype).

    Returns
    -------
    dict
        Metric name -> float; a metric that cannot run on this image (too small)
        is None.
    """
    result: dict[str, Any] = {}
    for name, fn in NO_REFERENCE.items():
        result[name] = _safe(fn, output, data_range=data_range)
    if low_light is not None:
        result["loe"] = _safe(loe, output, low_light, data_range=data_range)
    if reference is not None:
        for name, full_fn in FULL_REFERENCE.items():
            result[name] = _safe(full_fn, output, reference, data_range=data_range)
    return result


def _safe(fn, *args, **kwargs):
    from geo_ntl.exceptions import DimensionError

    try:
        value = fn(*args, **kwargs)
    except DimensionError:
        raise
    except ValueError:
        return None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
