"""Measure a scene's own blooming point-spread function (PSF) from the scene.

Street lamps are point sources: an isolated, unsaturated lamp *is* the PSF,
shifted and scaled. :func:`estimate_psf` finds such lamps, cuts a window
around each, subtracts the local background (the median of an annulus),
centres it to a sub-pixel position, normalises it to unit sum and stacks the
windows with a per-pixel median, per band. The result is an empirical kernel,
its radial profile, FWHM and wing slope -- a measurement, not a model fit.

Lamps are accepted when their peak stands :data:`DEFAULT_MIN_SNR` times the
noise above the background (the noise is the MAD of a 3x3 high-pass), no band
is above :data:`SATURATION_FRACTION` of full scale anywhere in the window (255
for uint8; for other types the scene's maximum, when a plateau of pixels reaches
it, i.e. the scene is clipped; else nothing counts as saturated), no
pixel in the window is nodata, and no other source within four FWHM is brighter
than :data:`ISOLATION_FRACTION` of the lamp (half of it within the whole
window). With fewer than :data:`SYMMETRISE_BELOW` lamps the kernel is averaged
azimuthally (a radially symmetric kernel from the stacked profile).

When fewer than ``min_sources`` lamps pass, the estimate falls back on the
edges of saturated blobs: around each isolated clipped blob the unsaturated
ring is the blurred edge of a (clipped) bright disc, and a Moffat PSF
convolved with a disc is fitted to its radial profile (``method =
"saturated-edges"``; every band then gets the same, fitted, kernel). When
neither works :class:`~geo_ntl.exceptions.PSFEstimationError` says what was
found; a guess is never returned as a measurement.

On a DataArray only a bounded part of the scene is read: windows of
:data:`WINDOW` px, those with the most lamp-like peaks first (a cheap count on
a decimated copy, in one streamed pass),
up to ``max_pixels`` (8 MP by default: 9.3 s on a 4096 x 4096 scene on a busy
2-core CPU, 7 % of the GAN's time there at 8 s/MP; 4 MP took 4.5 s but stacked
only 9 lamps of a crowded city and one band's FWHM came out at half the others').
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from geo_ntl._raster import as_band_yx, invalid_pixels
from geo_ntl.exceptions import (
    DimensionError,
    InputError,
    MissingDependencyError,
    ParameterError,
    PSFEstimationError,
)

__all__ = [
    "DEFAULT_MIN_SNR",
    "ISOLATION_FRACTION",
    "MAX_PIXELS",
    "PROFILE_FLOOR",
    "SATURATION_FRACTION",
    "PSFEstimate",
    "estimate_psf",
    "isolated_lamps",
    "lamp_fwhm",
    "noise_sigma",
    "profile_fwhm",
    "radial_profile",
    "read_psf",
    "write_profile_plot",
]

#: A lamp's peak must stand this many noise sigmas above its background.
DEFAULT_MIN_SNR = 20.0
#: Pixels at or above this fraction of full scale count as (near) saturated.
SATURATION_FRACTION = 0.95
#: Other sources within 4 FWHM of a lamp must be fainter than this fraction of it.
ISOLATION_FRACTION = 0.1
#: The kernel grows until its radial profile falls below this fraction of the peak.
PROFILE_FLOOR = 0.01
#: Most pixels read from a DataArray (the windows with the most lamp-like peaks).
MAX_PIXELS = 8 * 1024 * 1024
#: Edge of the windows read from a DataArray.
WINDOW = 1024
#: Largest kernel (px) when ``max_size`` is not given.
DEFAULT_MAX_SIZE = 101
#: Fewer lamps than this: the stacked kernel is averaged azimuthally.
SYMMETRISE_BELOW = 25
#: Most lamps stacked (the brightest that pass).
MAX_SOURCES = 2000
#: Radial profile bin width (px).
BIN = 0.5
#: Smallest scene edge (px) the estimate accepts.
MIN_SCENE = 48
#: Lamp window radii tried, in FWHM (the first that yields ``min_sources`` lamps is kept).
WINDOW_REACH = (4.0, 3.0, 2.0)
#: Other sources within this many FWHM must be fainter than :data:`ISOLATION_FRACTION`.
ISOLATION_REACH = 3.0
_CLIPPED_PIXELS = 4  # pixels at the maximum that make a non-uint8 scene count as clipped
_BLOB_CLEARANCE = 8  # px around a saturated blob that must hold no other blob
_ANNULUS = 4  # width (px) of the background annulus at the edge of a window
_FIRST_RADIUS = 10  # window half-size of the first pass (rough FWHM)


@dataclass(frozen=True)
class PSFEstimate:
    """A PSF measured on a scene.

    Attributes
    ----------
    kernel : (size, size) ndarray of float64
        Band-averaged (luminance) PSF; odd size, sums to 1.
    band_kernels : (bands, size, size) ndarray of float64
        One PSF per band, each summing to 1.
    fwhm : tuple of float
        Full width at half maximum per band (px), from the radial profile.
    radius : (n,) ndarray
        Radii (px) of the radial profile samples.
    profile : (bands, n) ndarray
        Radial profile per band, normalised to peak 1.
    wing_slope : tuple of float
        Per band, the log-log slope of the profile between 2 and 4 half widths
        (a Moffat of exponent beta tends to ``-2 beta``).
    n_sources : int
        Lamps (or saturated blobs) used.
    method : str
        ``"isolated-lamps"`` or ``"saturated-edges"``.
    """

    kernel: np.ndarray
    band_kernels: np.ndarray
    fwhm: tuple[float, ...]
    radius: np.ndarray
    profile: np.ndarray
    wing_slope: tuple[float, ...]
    n_sources: int
    method: str

    @property
    def size(self) -> int:
        """Kernel side in pixels."""
        return int(self.kernel.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists and plain numbers); :meth:`from_dict` reads it back."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        return {
            "method": self.method,
            "n_sources": int(self.n_sources),
            "size": self.size,
            "fwhm": [num(v) for v in self.fwhm],
            "wing_slope": [num(v) for v in self.wing_slope],
            "radius": [round(float(v), 4) for v in self.radius],
            "profile": [[num(v) for v in row] for row in self.profile],
            "kernel": self.kernel.tolist(),
            "band_kernels": self.band_kernels.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PSFEstimate:
        """Rebuild an estimate from :meth:`to_dict` output (e.g. ``geo-ntl psf --json``).

        Raises
        ------
        ParameterError
            If a key is missing or the kernels are not odd, square, non-negative.
        """
        try:
            kernel = _checked_kernel(np.asarray(data["kernel"], dtype=np.float64))
            bands = np.asarray(data["band_kernels"], dtype=np.float64)
            if bands.ndim != 3 or bands.shape[1:] != kernel.shape:
                raise ParameterError(
                    f"band_kernels has shape {bands.shape}, expected (bands, *{kernel.shape})"
                )
            bands = np.stack([_checked_kernel(b) for b in bands])

            def nums(values: list[Any]) -> tuple[float, ...]:
                return tuple(float("nan") if v is None else float(v) for v in values)

            profile = np.asarray(
                [[np.nan if v is None else v for v in row] for row in data["profile"]], float
            )
            return cls(
                kernel=kernel,
                band_kernels=bands,
                fwhm=nums(data["fwhm"]),
                radius=np.asarray(data["radius"], dtype=np.float64),
                profile=profile,
                wing_slope=nums(data["wing_slope"]),
                n_sources=int(data["n_sources"]),
                method=str(data["method"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ParameterError):
                raise
            raise ParameterError(
                f"not a PSF estimate ({type(exc).__name__}: {exc}); "
                "write one with `geo-ntl psf SCENE --json`"
            ) from exc


def _checked_kernel(kernel: np.ndarray) -> np.ndarray:
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ParameterError(f"a PSF kernel must be square with an odd side, got {kernel.shape}")
    if not np.all(np.isfinite(kernel)) or kernel.min() < 0 or kernel.sum() <= 0:
        raise ParameterError("PSF kernel values must be finite, non-negative, with a positive sum")
    return kernel / kernel.sum()


# --- input handling ---------------------------------------------------------------------


def _as_bands(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DimensionError(f"expected a (band, y, x) or (y, x) image, got shape {arr.shape}")
    return arr


def _saturation_level(dtype: np.dtype, top: float, n_at_top: int) -> float:
    """Level at which pixels count as clipped.

    uint8 scenes clip at 255. Other scenes clip at their largest valid value
    ``top`` when several pixels reach it (a plateau); when only a few do, the
    scene is not clipped and nothing counts as saturated (``inf``).
    """
    if np.dtype(dtype) == np.uint8:
        return 255.0
    if not (np.isfinite(top) and top > 0) or n_at_top < _CLIPPED_PIXELS:
        return np.inf
    return top


def _valid_max(arr: np.ndarray, bad: np.ndarray) -> float:
    if bad.all():
        return float("nan")
    return float(np.nanmax(np.where(bad[None], -np.inf, arr.astype(np.float64))))


def _window_score(block: np.ndarray) -> np.ndarray:
    """How many lamp-like peaks a window holds (on a 2x decimated copy): its ``(1, 1)`` score.

    Peaks are 5x5 maxima standing above the window's median by a tenth of its range
    and below 90 % of its maximum, so crowded, saturated city centres do not win
    over areas with separate lamps.
    """
    lum = np.nan_to_num(np.asarray(block, dtype=np.float32)[::2, ::2], nan=0.0)
    if lum.size == 0:
        return np.zeros((1, 1))
    smooth = ndimage.gaussian_filter(lum, 1.0)
    base, top = float(np.median(smooth)), float(smooth.max())
    peaks = (smooth == ndimage.maximum_filter(smooth, size=5)) & (
        smooth > base + 0.1 * (top - base)
    )
    peaks &= smooth < base + 0.9 * (top - base)
    return np.array([[float(peaks.sum())]])


def _read_windows(da: Any, max_pixels: int) -> tuple[list[np.ndarray], float | None, float]:
    """Read the :data:`WINDOW`-px windows with most lamps of a DataArray, up to ``max_pixels``."""
    import dask.array as dsa

    da3 = as_band_yx(da)[0]
    nodata = da3.rio.nodata if hasattr(da3, "rio") else None
    data = da3.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=(-1, 2048, 2048))
    _, h, w = data.shape
    if h * w <= max_pixels:
        arr = np.asarray(data.compute())
        return [arr], nodata, _valid_max(arr, invalid_pixels(arr, nodata, nonfinite=True))
    edge = max(2 * MIN_SCENE, min(WINDOW, math.isqrt(max_pixels)))
    lum = data.astype(np.float32).mean(axis=0)
    ny, nx = -(-h // edge), -(-w // edge)
    pad = ((0, ny * edge - h), (0, nx * edge - w))
    lum = dsa.pad(lum, pad, mode="constant").rechunk(edge)
    valid = data if nodata is None else dsa.where((data == nodata).all(axis=0)[None], 0, data)
    score = lum.map_blocks(_window_score, chunks=(1, 1), dtype=float)
    score, top = dsa.compute(score, dsa.nanmax(valid))
    order = np.argsort(np.nan_to_num(np.asarray(score), nan=-1).ravel())[::-1]
    picks, budget = [], max_pixels
    for k in order:
        i, j = divmod(int(k), nx)
        hh, ww = min(edge, h - i * edge), min(edge, w - j * edge)
        if hh < MIN_SCENE or ww < MIN_SCENE or hh * ww > budget:
            continue
        picks.append(data[:, i * edge : i * edge + hh, j * edge : j * edge + ww])
        budget -= hh * ww
    return [np.asarray(p) for p in dsa.compute(*picks)], nodata, float(top)


def _prepare(
    image: Any, nodata: float | None, max_pixels: int
) -> tuple[list[np.ndarray], float | None, float, np.dtype]:
    """Windows to analyse (float64, bad pixels NaN), nodata, full scale, source dtype."""
    if hasattr(image, "dims") and hasattr(image, "data"):
        windows, da_nodata, top = _read_windows(image, max_pixels)
        nodata = da_nodata if nodata is None else nodata
        dtype = np.dtype(image.dtype)
    else:
        arr = _as_bands(image)
        windows, dtype = [arr], arr.dtype
        top = _valid_max(arr, invalid_pixels(arr, nodata, nonfinite=True))
    if not np.isfinite(top):
        raise PSFEstimationError(
            "the scene holds no valid pixel (all nodata or NaN); check the file or its nodata value"
        )
    out, n_at_top = [], 0
    for win in windows:
        bad = invalid_pixels(win, nodata, nonfinite=True)
        f = win.astype(np.float64)
        f[:, bad] = np.nan
        n_at_top += int((f >= top).any(axis=0).sum())
        out.append(f)
    return out, nodata, _saturation_level(dtype, top, n_at_top), dtype


def noise_sigma(image: np.ndarray, *, nodata: float | None = None) -> float:
    """Robust noise standard deviation of an image, from the MAD of a 3x3 high-pass.

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        Pixels; NaN and nodata pixels are ignored.
    nodata : float, optional
        Nodata value.

    Returns
    -------
    float
        Sigma of white noise that has the same high-pass MAD (in image units),
        at least the quantisation noise of integer images (``1 / sqrt(12)``).
    """
    arr = _as_bands(image)
    bad = invalid_pixels(arr, nodata, nonfinite=True)
    floor = 1.0 / math.sqrt(12.0) if arr.dtype.kind in "ui" else 0.0
    x = np.where(bad[None], np.nan, arr.astype(np.float64)).mean(axis=0)
    filled = np.where(np.isnan(x), np.nanmedian(x) if (~bad).any() else 0.0, x)
    hp = filled - ndimage.uniform_filter(filled, 3, mode="reflect")
    hp = hp[~ndimage.binary_dilation(bad, iterations=1)]
    if hp.size == 0:
        return floor
    mad = float(np.median(np.abs(hp - np.median(hp))))
    # var(x - box3(x)) = sigma^2 (1 - 2/9 + 1/9) for white noise.
    return max(1.4826 * mad / math.sqrt(8.0 / 9.0), floor)


# --- radial profiles ---------------------------------------------------------------------


def radial_profile(
    cutout: np.ndarray, *, centre: tuple[float, float] | None = None, bin_width: float = BIN
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean of a ``(y, x)`` window around ``centre`` (default its middle).

    Parameters
    ----------
    cutout : (y, x) ndarray
        Window; NaN pixels are ignored.
    centre : (float, float), optional
        ``(row, col)`` of the centre, sub-pixel allowed; default the middle.
    bin_width : float, default 0.5
        Ring width in pixels. Rings reach the nearest edge of the window.

    Returns
    -------
    radius, profile : (n,) ndarray
        Mean radius and mean value of each ``bin_width`` ring (NaN pixels ignored);
        the first ring holds the pixels within ``bin_width`` of the centre.
    """
    h, w = cutout.shape
    cy, cx = ((h - 1) / 2, (w - 1) / 2) if centre is None else centre
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - cy, xx - cx).ravel()
    v = cutout.ravel()
    ok = np.isfinite(v)
    idx = (r[ok] / bin_width).astype(int)
    n = int(min(cy, cx, h - 1 - cy, w - 1 - cx) / bin_width) + 1
    keep = idx < n
    count = np.bincount(idx[keep], minlength=n)
    rsum = np.bincount(idx[keep], weights=r[ok][keep], minlength=n)
    vsum = np.bincount(idx[keep], weights=v[ok][keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        radius, profile = rsum / count, vsum / count
    good = count > 0
    return radius[good], profile[good]


def _hwhm(radius: np.ndarray, profile: np.ndarray) -> float:
    """Radius where a peak-1 profile first falls to 0.5 (linear interpolation)."""
    below = np.nonzero(profile < 0.5)[0]
    if below.size == 0 or below[0] == 0:
        return float("nan")
    i = int(below[0])
    r0, r1, p0, p1 = radius[i - 1], radius[i], profile[i - 1], profile[i]
    return float(r0 + (p0 - 0.5) / (p0 - p1) * (r1 - r0))


def _wing_slope(radius: np.ndarray, profile: np.ndarray, hwhm: float) -> float:
    sel = (radius >= 2 * hwhm) & (radius <= 4 * hwhm) & (profile > 0)
    if not np.isfinite(hwhm) or sel.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(radius[sel]), np.log(profile[sel]), 1)[0])


def _peak_one(profile: np.ndarray) -> np.ndarray:
    top = np.nanmax(profile)
    return profile / top if top > 0 else profile


def profile_fwhm(kernel: np.ndarray) -> float:
    """FWHM (px) of a centred kernel from its radial profile, as in :class:`PSFEstimate`.

    Parameters
    ----------
    kernel : (k, k) ndarray
        Kernel with its peak at the centre pixel.

    Returns
    -------
    float
        Twice the radius where the azimuthal mean first falls to half the peak
        (linear interpolation between rings); NaN if it never does.

    Examples
    --------
    >>> from geo_ntl.simulate.psf import gaussian_psf
    >>> round(profile_fwhm(gaussian_psf(21, sigma=2.0)), 2)  # 2.355 sigma = 4.71
    4.73
    """
    radius, profile = radial_profile(np.asarray(kernel, dtype=np.float64))
    return 2.0 * _hwhm(radius, _peak_one(profile))


# --- lamps ------------------------------------------------------------------------------


def _subpixel(win: np.ndarray, c: int) -> tuple[float, float]:
    """Offsets (dy, dx) of the peak at ``win[c, c]`` from a log-parabola through 3 points."""
    out = []
    for a, b in ((win[c - 1, c], win[c + 1, c]), (win[c, c - 1], win[c, c + 1])):
        m = win[c, c]
        if min(a, b, m) <= 0:
            out.append(0.0)
            continue
        la, lb, lm = math.log(a), math.log(b), math.log(m)
        den = la - 2 * lm + lb
        out.append(float(np.clip(0.5 * (la - lb) / den, -0.5, 0.5)) if den < 0 else 0.0)
    return out[0], out[1]


def _background(win: np.ndarray, half: int) -> np.ndarray:
    """Median per band of the outer :data:`_ANNULUS` px ring of a ``(band, 2h+1, 2h+1)`` window."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    ring = win[:, np.hypot(yy, xx) >= half - _ANNULUS]
    return np.nanmedian(ring, axis=1) if np.isnan(ring).any() else np.median(ring, axis=1)


def _local_background(lum: np.ndarray) -> np.ndarray:
    """Smooth local background: a median over about 44 px, on a 4x decimated copy."""
    small = ndimage.median_filter(lum[::4, ::4], size=11, mode="reflect")
    zoom = (lum.shape[0] / small.shape[0], lum.shape[1] / small.shape[1])
    return ndimage.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)[
        : lum.shape[0], : lum.shape[1]
    ]


def _detect(
    lum: np.ndarray, sigma: float, min_snr: float, sat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find the sources 5 sigma up and which of them are ``min_snr`` sigma up.

    Amplitudes are over the local background; saturated blobs count as sources.
    """
    from skimage.feature import peak_local_max

    filled = np.where(np.isnan(lum), np.nanmedian(lum), lum)
    smooth = ndimage.gaussian_filter(filled, 1.0)
    excess = smooth - _local_background(filled)
    # Plateaus (saturated blobs) give one maximum per blob, not one per pixel.
    labels, n = ndimage.label(sat)
    if n:
        _, first = np.unique(labels.ravel(), return_index=True)
        excess[sat] = -np.inf
        excess.ravel()[first[1:]] = np.inf
    coords = peak_local_max(
        excess,
        min_distance=1,
        footprint=np.ones((5, 5), bool),
        threshold_abs=5 * sigma,
        exclude_border=False,
    )
    if coords.size == 0:
        return np.empty((0, 2), int), np.empty(0), np.empty(0, bool)
    amp = excess[coords[:, 0], coords[:, 1]]
    unsat = ~sat[coords[:, 0], coords[:, 1]]
    return coords, amp, (amp >= min_snr * sigma) & unsat


@dataclass(frozen=True)
class _Sources:
    """Detections in one window, computed once and shared by every pass."""

    coords: np.ndarray
    amp: np.ndarray
    bright: np.ndarray
    sat: np.ndarray
    bad: np.ndarray


def _band_mean(win: np.ndarray) -> np.ndarray:
    """Return the mean of the bands that hold a value, NaN where none does.

    As ``np.nanmean``, without its warning for the pixels where no band holds a value.
    """
    present = ~np.isnan(win)
    count = present.sum(axis=0)
    total = np.where(present, win, 0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _sources(win: np.ndarray, *, full_scale: float, sigma: float, min_snr: float) -> _Sources:
    lum = _band_mean(win)
    sat: np.ndarray = (win >= SATURATION_FRACTION * full_scale).any(axis=0)  # type: ignore[assignment]
    coords, amp, bright = _detect(lum, sigma, min_snr, sat)
    return _Sources(coords, amp, bright, sat, np.isnan(win).any(axis=0))


def _candidates(
    win: np.ndarray,
    *,
    full_scale: float,
    sigma: float,
    min_snr: float,
    half: int,
    iso_radius: float,
    sources: _Sources | None = None,
) -> pd.DataFrame:
    """Isolated, unsaturated, valid lamps of one ``(band, y, x)`` float window (NaN = bad)."""
    src = sources or _sources(win, full_scale=full_scale, sigma=sigma, min_snr=min_snr)
    coords, amp, bright, sat, bad = src.coords, src.amp, src.bright, src.sat, src.bad
    cols = ["y", "x", "row", "col", "peak", "background", "snr"]
    if not bright.any():
        return pd.DataFrame(columns=cols)
    from scipy.spatial import cKDTree

    tree = cKDTree(coords)
    h, w = sat.shape
    blocked = ndimage.maximum_filter(sat | bad, size=2 * half + 1, mode="constant", cval=True)
    rows = []
    order = np.nonzero(bright)[0]
    order = order[np.argsort(amp[order])[::-1]]
    for i in order:
        y, x = coords[i]
        if y < half or x < half or y >= h - half or x >= w - half or blocked[y, x]:
            continue
        near = tree.query_ball_point(coords[i], r=half)
        others = [j for j in near if j != i]
        if others:
            d = np.hypot(*(coords[others] - coords[i]).T)
            a = amp[others]
            if (a[d <= iso_radius] > ISOLATION_FRACTION * amp[i]).any() or (a > 0.5 * amp[i]).any():
                continue
        cut = win[:, y - half : y + half + 1, x - half : x + half + 1]
        bg = _background(cut, half)
        lcut = cut.mean(axis=0) - bg.mean()
        c = half
        if lcut[c, c] < lcut[c - 1 : c + 2, c - 1 : c + 2].max():
            continue  # the smoothed maximum is off the raw peak: a flat or double source
        dy, dx = _subpixel(lcut, c)
        peak = float(lcut[c, c])
        snr = peak / sigma if sigma > 0 else np.inf
        if snr < min_snr:
            continue
        rows.append((y + dy, x + dx, int(y), int(x), peak, float(bg.mean()), float(snr)))
        if len(rows) >= MAX_SOURCES:
            break
    return pd.DataFrame(rows, columns=cols)


def isolated_lamps(
    image: Any,
    *,
    nodata: float | None = None,
    window: int = 2 * _FIRST_RADIUS + 1,
    min_snr: float = DEFAULT_MIN_SNR,
    isolation_radius: float | None = None,
) -> pd.DataFrame:
    """Find isolated, unsaturated point sources (lamps) in an image.

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        Pixels (uint8, uint16 or float).
    nodata : float, optional
        Nodata value; windows holding a nodata (or NaN) pixel are skipped.
    window : int, default 21
        Side (px, odd) of the window that must hold no saturated or nodata
        pixel and no source brighter than half the lamp.
    min_snr : float, default 20
        Least peak height above the local background, in noise sigmas.
    isolation_radius : float, optional
        Radius (px) within which every other source must be fainter than
        :data:`ISOLATION_FRACTION` of the lamp; default ``window / 2``.

    Returns
    -------
    pandas.DataFrame
        One row per lamp, brightest first: ``y``, ``x`` (sub-pixel centre),
        ``row``, ``col`` (peak pixel), ``peak`` (luminance above background),
        ``background`` and ``snr``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> img = np.zeros((64, 64))
    >>> img[20, 20] = img[44, 40] = 1000.0
    >>> img = ndimage.gaussian_filter(img, 1.5) + 1.0
    >>> sorted(isolated_lamps(img)[["row", "col"]].to_numpy().tolist())
    [[20, 20], [44, 40]]
    """
    if window < 7 or window % 2 == 0:
        raise ParameterError(f"window must be an odd number of pixels >= 7, got {window!r}")
    arr = _as_bands(image)
    bad = invalid_pixels(arr, nodata, nonfinite=True)
    top = _valid_max(arr, bad)
    f = arr.astype(np.float64)
    f[:, bad] = np.nan
    half = window // 2
    n_at_top = int((f >= top).any(axis=0).sum()) if np.isfinite(top) else 0
    return _candidates(
        f,
        full_scale=_saturation_level(arr.dtype, top, n_at_top),
        sigma=noise_sigma(arr, nodata=nodata),
        min_snr=min_snr,
        half=half,
        iso_radius=half if isolation_radius is None else isolation_radius,
    )


def _positions(positions: Any) -> np.ndarray:
    if isinstance(positions, pd.DataFrame):
        return positions[["y", "x"]].to_numpy(dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.size == 0:
        return pos.reshape(0, 2)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise DimensionError(f"positions must be (n, 2) (y, x), got shape {pos.shape}")
    return pos


def lamp_fwhm(image: Any, positions: Any, *, radius: int = 20) -> np.ndarray:
    """FWHM (px) of each lamp, from its background-subtracted radial profile.

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        Pixels; the band mean is measured.
    positions : (n, 2) array_like or DataFrame
        Lamp centres ``(y, x)`` in pixels (sub-pixel allowed), or the output of
        :func:`isolated_lamps`.
    radius : int, default 20
        Half-size of the window; the background is the median of its outer
        4 px ring, so it should be well beyond the lamp's halo.

    Returns
    -------
    (n,) ndarray of float
        FWHM per lamp; NaN where the window leaves the image or the lamp does
        not stand above its background.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> img = np.zeros((64, 64))
    >>> img[32, 32] = 1.0
    >>> img = ndimage.gaussian_filter(img, 2.0)
    >>> round(float(lamp_fwhm(img, [(32, 32)])[0]), 1)  # 2.355 sigma
    4.7
    """
    arr = _as_bands(image).astype(np.float64)
    lum = arr.mean(axis=0)
    h, w = lum.shape
    out = np.full(len(_positions(positions)), np.nan)
    for k, (y, x) in enumerate(_positions(positions)):
        r0, c0 = int(round(y)), int(round(x))
        if r0 < radius or c0 < radius or r0 >= h - radius or c0 >= w - radius:
            continue
        cut = lum[r0 - radius : r0 + radius + 1, c0 - radius : c0 + radius + 1]
        cut = cut - _background(cut[None], radius)[0]
        rr, prof = radial_profile(cut, centre=(radius + y - r0, radius + x - c0))
        if not np.isfinite(prof).all() or prof[0] <= 0:
            continue
        out[k] = 2.0 * _hwhm(rr, prof / prof[0])
    return out


# --- stacking ---------------------------------------------------------------------------


def _cutouts(win: np.ndarray, lamps: pd.DataFrame, half: int) -> np.ndarray:
    """Background-subtracted, centred, unit-sum ``(n, band, 2h+1, 2h+1)`` cutouts."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    inner = np.hypot(yy, xx) < half - _ANNULUS
    stack = []
    for y, x, r, c in lamps[["y", "x", "row", "col"]].itertuples(index=False):
        cut = win[:, r - half : r + half + 1, c - half : c + half + 1]
        cut = cut - _background(cut, half)[:, None, None]
        shifted = np.stack([ndimage.shift(b, (r - y, c - x), order=3, mode="nearest") for b in cut])
        sums = np.where(inner, shifted, 0.0).sum(axis=(1, 2))
        if (sums <= 0).any():
            continue
        stack.append(shifted / sums[:, None, None])
    return np.asarray(stack).reshape(-1, win.shape[0], 2 * half + 1, 2 * half + 1)


def _symmetrise(kernel: np.ndarray) -> np.ndarray:
    radius, profile = radial_profile(kernel, bin_width=BIN)
    half = kernel.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return np.interp(np.hypot(yy, xx), radius, profile, right=0.0)


def _finish(stacked: np.ndarray, *, n_sources: int, method: str, max_half: int) -> PSFEstimate:
    """Profiles, FWHM, wing slopes and the cropped kernels of a ``(band, 2R+1, 2R+1)`` stack."""
    half_in = stacked.shape[-1] // 2 - _ANNULUS
    c = stacked.shape[-1] // 2
    core = stacked[:, c - half_in : c + half_in + 1, c - half_in : c + half_in + 1]
    profiles: list[np.ndarray] = []
    radius: Any = None
    for band in core:
        radius, prof = radial_profile(band)
        profiles.append(_peak_one(prof))
    profile = np.asarray(profiles)
    hw = [_hwhm(radius, p) for p in profile]
    fwhm = tuple(2.0 * v for v in hw)
    slopes = tuple(_wing_slope(radius, p, v) for p, v in zip(profile, hw, strict=True))
    lum = profile.mean(axis=0)
    floor = np.nonzero((lum < PROFILE_FLOOR) & (radius > 0))[0]
    r1 = radius[floor[0]] if floor.size else radius[-1]
    fw = np.nanmax(fwhm) if np.isfinite(fwhm).any() else np.nan
    if not np.isfinite(fw):
        raise PSFEstimationError(
            f"the stacked profile of {n_sources} sources never falls to half its peak within "
            f"{half_in} px; the sources are not point-like (or the PSF is wider than "
            f"{2 * half_in} px): pass a larger max_size"
        )
    half = int(min(max(math.ceil(r1), math.ceil(2.0 * fw)), max_half, half_in))
    kernels = np.clip(
        core[:, half_in - half : half_in + half + 1, half_in - half : half_in + half + 1], 0, None
    )
    kernels = kernels / kernels.sum(axis=(1, 2), keepdims=True)
    kernel = kernels.mean(axis=0)
    return PSFEstimate(
        kernel=kernel / kernel.sum(),
        band_kernels=kernels,
        fwhm=fwhm,
        radius=radius,
        profile=profile,
        wing_slope=slopes,
        n_sources=int(n_sources),
        method=method,
    )


# --- saturated edges --------------------------------------------------------------------


def _moffat(half: int, alpha: float, beta: float) -> np.ndarray:
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    k = (1.0 + (yy**2 + xx**2) / alpha**2) ** (-beta)
    return k / k.sum()


def _fit_blob(
    lum: np.ndarray, sat: np.ndarray, full: float, sigma: float, others: np.ndarray
) -> tuple[float, float] | None:
    """Fit a clipped (disc * Moffat) to the unsaturated ring around one blob; (alpha, beta).

    Pixels nearer to another saturated blob (``others``) than twice their distance
    to this one are left out, and the fit is robust (soft L1) to fainter lamps.
    """
    from scipy.optimize import least_squares
    from scipy.signal import fftconvolve

    half = lum.shape[0] // 2
    cy, cx = ndimage.center_of_mass(sat)
    yy, xx = np.mgrid[0 : lum.shape[0], 0 : lum.shape[1]]
    r = np.hypot(yy - cy, xx - cx)
    usable = np.isfinite(lum)
    if others.any():
        d_other = ndimage.distance_transform_edt(~others)
        usable &= d_other > 2 * ndimage.distance_transform_edt(~sat) + 3
    ring = ~ndimage.binary_dilation(sat, iterations=1) & (r < half - _ANNULUS) & usable
    outer = (r >= half - _ANNULUS) & usable
    if outer.sum() < 10:
        return None
    bg = float(np.median(lum[outer]))
    obs = lum[ring] - bg
    if ring.sum() < 30 or obs.max() < 20 * sigma:
        return None
    r_eq = math.sqrt(sat.sum() / math.pi)

    def model(p: np.ndarray) -> np.ndarray:
        log_amp, r0, alpha, beta = p
        disc = np.clip(r0 + 0.5 - r, 0, 1)
        if disc.sum() == 0:
            disc = (r == r.min()).astype(float)
        img = fftconvolve(disc, _moffat(half, alpha, beta), mode="same") * math.exp(log_amp)
        return np.minimum(img, full - bg)

    def resid(p: np.ndarray) -> np.ndarray:
        return (model(p)[ring] - obs) / (sigma + 0.02 * np.abs(obs))

    p0 = np.array([math.log(2 * full), max(0.5, 0.7 * r_eq), 3.0, 2.5])
    try:
        fit = least_squares(
            resid,
            p0,
            bounds=([0, 0.0, 0.3, 1.05], [30, r_eq + 1, half / 2, 10]),
            loss="soft_l1",
            max_nfev=200,
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success:
        return None
    return float(fit.x[2]), float(fit.x[3])


def _saturated_edges(
    windows: list[np.ndarray], full_scale: float, sigma: float, min_sources: int, max_half: int
) -> PSFEstimate | None:
    if not np.isfinite(full_scale):
        return None
    fits = []
    half = max(20, min(max_half + _ANNULUS, 30))
    for win in windows:
        sat = (win >= SATURATION_FRACTION * full_scale).any(axis=0)
        lum = _band_mean(win)
        labels, n = ndimage.label(sat)
        if n == 0:
            continue
        h, w = lum.shape
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            cy = (sl[0].start + sl[0].stop - 1) // 2
            cx = (sl[1].start + sl[1].stop - 1) // 2
            extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
            if extent > half // 2 or cy < half or cx < half or cy >= h - half or cx >= w - half:
                continue
            box = (slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1))
            mine = labels[box] == k
            others = (labels[box] > 0) & ~mine
            near = ndimage.binary_dilation(mine, iterations=_BLOB_CLEARANCE)
            if np.isnan(lum[box]).any() or (others & near).any():
                continue  # nodata in the window, or another blob close by
            fit = _fit_blob(lum[box], mine, full_scale, sigma, others)
            if fit is not None:
                fits.append(fit)
            if len(fits) >= 200:
                break
    if len(fits) < max(3, min(min_sources, 3)):
        return None
    alpha, beta = np.median(np.asarray(fits), axis=0)
    bands = windows[0].shape[0]
    model = _moffat(half, float(alpha), float(beta))
    stacked = np.repeat(model[None], bands, axis=0)
    return _finish(stacked, n_sources=len(fits), method="saturated-edges", max_half=max_half)


# --- the estimate -----------------------------------------------------------------------


def estimate_psf(
    image: Any,
    *,
    nodata: float | None = None,
    max_size: int | None = None,
    min_sources: int = 5,
    min_snr: float = DEFAULT_MIN_SNR,
    max_pixels: int = MAX_PIXELS,
) -> PSFEstimate:
    """Estimate the scene's own PSF from isolated lamps (or saturated blob edges).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray, or xarray.DataArray
        The scene (uint8, uint16 or float). A DataArray is read in windows of
        1024 px with the most lamp-like peaks, at most ``max_pixels`` pixels.
    nodata : float, optional
        Nodata value; default the DataArray's (``da.rio.nodata``).
    max_size : int, optional
        Largest kernel side (odd, px); default 101.
    min_sources : int, default 5
        Least number of isolated lamps; with fewer, saturated blob edges are used.
    min_snr : float, default 20
        Least lamp peak above its background, in noise sigmas.
    max_pixels : int, default 8 * 1024 ** 2
        Most pixels read from a DataArray.

    Returns
    -------
    PSFEstimate

    Raises
    ------
    PSFEstimationError
        If the scene is smaller than 48 px, holds no valid pixel, or neither
        enough isolated lamps nor enough isolated saturated blobs are found.
    ParameterError
        If an option is out of range.

    Notes
    -----
    The kernel side is odd, at least 4 FWHM, and grows until the stacked
    radial profile falls below :data:`PROFILE_FLOOR` (1 %) of its peak, up to
    ``max_size``. Each lamp window reaches 4 FWHM + 4 px (3 or 2 FWHM when
    too few lamps are isolated at 4; a first pass on
    21 px windows measures the FWHM), so wings beyond it are cut.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(0)
    >>> img = np.zeros((256, 256))
    >>> img[tuple(rng.integers(20, 236, (2, 30)))] = rng.uniform(500, 2000, 30)
    >>> img = ndimage.gaussian_filter(img, 1.5) + 5 + rng.normal(0, 0.2, img.shape)
    >>> est = estimate_psf(img)
    >>> est.method, round(est.fwhm[0], 1)  # the sampled kernel: 3.57 (2.355 sigma = 3.53)
    ('isolated-lamps', 3.6)
    """
    if isinstance(min_sources, bool) or not isinstance(min_sources, int) or min_sources < 1:
        raise ParameterError(f"min_sources must be a positive integer, got {min_sources!r}")
    if max_size is not None and (
        isinstance(max_size, bool)
        or not isinstance(max_size, int)
        or max_size < 5
        or max_size % 2 == 0
    ):
        raise ParameterError(f"max_size must be an odd number of pixels >= 5, got {max_size!r}")
    max_half = (max_size or DEFAULT_MAX_SIZE) // 2
    shape = tuple(image.shape)
    if min(shape[-2:]) < MIN_SCENE:
        raise PSFEstimationError(
            f"the scene is {shape[-2]} x {shape[-1]} px; measuring a PSF needs at least "
            f"{MIN_SCENE} x {MIN_SCENE} px (several kernel widths): pass a larger scene"
        )
    windows, nodata, full, _ = _prepare(image, nodata, max_pixels)
    sigma = float(np.median([noise_sigma(w) for w in windows]))
    sigma = max(sigma, 1e-9)

    found = [_sources(w, full_scale=full, sigma=sigma, min_snr=min_snr) for w in windows]
    # First pass: a rough FWHM from small windows sets the window of the second.
    first = [
        _candidates(
            w,
            full_scale=full,
            sigma=sigma,
            min_snr=min_snr,
            half=_FIRST_RADIUS,
            iso_radius=_FIRST_RADIUS,
            sources=f,
        )
        for w, f in zip(windows, found, strict=True)
    ]
    widths = np.concatenate(
        [
            lamp_fwhm(w, c.head(200), radius=_FIRST_RADIUS)
            for w, c in zip(windows, first, strict=True)
        ]
    )
    widths = widths[np.isfinite(widths)]
    n_first = int(sum(len(c) for c in first))
    estimate: PSFEstimate | None = None
    n_second = 0
    if widths.size >= min_sources:
        f0 = float(np.median(widths))
        # Windows of 4 FWHM radius hold the wings of most PSFs down to 1 %; in crowded
        # scenes smaller windows keep more lamps isolated (the kernel is then cut there).
        for reach in WINDOW_REACH:
            half = int(
                min(max(math.ceil(reach * f0) + _ANNULUS, _FIRST_RADIUS), max_half + _ANNULUS)
            )
            stacks = []
            for w, f in zip(windows, found, strict=True):
                lamps = _candidates(
                    w,
                    full_scale=full,
                    sigma=sigma,
                    min_snr=min_snr,
                    half=half,
                    iso_radius=min(ISOLATION_REACH * f0, half),
                    sources=f,
                )
                stacks.append(_cutouts(w, lamps, half))
            n_second = int(sum(len(c) for c in stacks))
            if n_second >= min_sources:
                break
        if n_second >= min_sources:
            stacked = np.median(np.concatenate(stacks), axis=0)
            if n_second < SYMMETRISE_BELOW:
                stacked = np.stack([_symmetrise(b) for b in stacked])
            estimate = _finish(
                stacked, n_sources=n_second, method="isolated-lamps", max_half=max_half
            )
    if estimate is None:
        estimate = _saturated_edges(windows, full, sigma, min_sources, max_half)
    if estimate is None:
        n_sat = int(sum(int((w >= SATURATION_FRACTION * full).any(axis=0).sum()) for w in windows))
        raise PSFEstimationError(
            f"found {n_first} isolated unsaturated lamps {min_snr:g} sigma above the noise "
            f"(sigma {sigma:.3g}) in small windows and {n_second} in PSF-sized windows, "
            f"need min_sources={min_sources}; {n_sat} pixels are near saturation but too few "
            "isolated saturated blobs could be fitted. Pass a scene (or crop) with separate "
            "street lamps, lower min_snr / min_sources, or give a PSF (`psf`)",
            options={"`psf`": "psf"},
        )
    return estimate


def write_profile_plot(
    estimate: PSFEstimate,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    title: str | None = None,
    pixel_size: float | None = None,
) -> Path:
    """Write a PNG of the radial profiles (log y), atomically.

    Parameters
    ----------
    estimate : PSFEstimate
        The measurement to plot.
    path : str or os.PathLike
        Output PNG.
    overwrite : bool, default False
        Replace an existing file.
    title : str, optional
        Figure title.
    pixel_size : float, optional
        Ground size of a pixel (m), to label a second x axis.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputExistsError, OutputPathError
        If ``path`` exists (without ``overwrite``) or cannot be written.
    MissingDependencyError
        If matplotlib is not installed.
    """
    from geo_ntl._atomic import atomic_output, check_output_path

    out = check_output_path(path, overwrite=overwrite)
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "matplotlib must be installed to plot PSF profiles: pip install matplotlib"
        ) from exc
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    colours = ("tab:red", "tab:green", "tab:blue", "tab:grey")
    bands = estimate.profile.shape[0]
    for b, prof in enumerate(estimate.profile):
        colour = "black" if bands == 1 else colours[b % len(colours)]
        ok = prof > 0
        ax.semilogy(
            estimate.radius[ok],
            prof[ok],
            color=colour,
            label=f"band {b + 1}: FWHM {estimate.fwhm[b]:.2f} px",
        )
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.axhline(PROFILE_FLOOR, color="0.6", lw=0.8, ls="--")
    ax.axvline(estimate.size // 2, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("radius (px)")
    ax.set_ylabel("normalised intensity")
    ax.set_ylim(max(1e-4, float(np.nanmin(estimate.profile[estimate.profile > 0]))), 1.5)
    if pixel_size:
        sec = ax.secondary_xaxis(
            "top",
            functions=(lambda r: r * pixel_size, lambda m: m / pixel_size),  # type: ignore[operator]
        )
        sec.set_xlabel("radius (m)")
    ax.set_title(title or f"PSF from {estimate.n_sources} sources ({estimate.method})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return out


def read_psf(path: str | os.PathLike[str]) -> PSFEstimate:
    """Read a PSF written by ``geo-ntl psf SCENE --json``.

    Parameters
    ----------
    path : str or os.PathLike
        JSON file.

    Returns
    -------
    PSFEstimate

    Raises
    ------
    InputError
        If the file does not exist, is not JSON or holds no PSF estimate.
    """
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise InputError(
            f"PSF file {p} does not exist; write one with `geo-ntl psf SCENE --json > {p.name}`"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"PSF file {p} is not JSON ({exc}); write one with `geo-ntl psf SCENE --json`"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"PSF file {p} holds no PSF estimate; write one with `geo-ntl psf --json`")
    try:
        return PSFEstimate.from_dict(data)
    except ParameterError as exc:
        raise InputError(f"PSF file {p}: {exc}") from exc
