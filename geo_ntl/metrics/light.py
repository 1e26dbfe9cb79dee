"""No-reference light measures: is a night scene's light kept, gathered, invented or lost.

These measures judge a deblooming (restoration) method on scenes without a truth,
by comparing its output with the scene *before* restoration, and work as well
with a truth in the place of ``before``. All take ``(band, y, x)`` or ``(y, x)``
arrays and work in the image's own digital numbers (DN): uint8 and uint16 values
are used as they are, and float arrays are taken to be DN too (a linear truth may
exceed 255). Light is measured on the band *sum* (flux) or the band *mean*
(intensity, for lamps and maxima).

- :func:`black_level`: the scene's black level per band.
- :func:`cell_flux`: light above the black level summed per grid cell (108 px =
  100 m at Jilin-1's 0.92 m).
- :func:`flux_ratio_stats`: per-cell ratio after / before over lit cells.
- :func:`lamp_widths`: median FWHM of isolated, unsaturated lamps.
- :func:`new_maxima`: lamps the output invented in the dark.
- :func:`dark_rings`: undershoot around bright lamps.
- :func:`highlights_kept`: saturated highlights that stay saturated.
- :func:`compare_light`: all of them for one (before, after) pair.

Design notes
------------
The lamp detector here is deliberately small and self-contained (one private
function, :func:`_isolated_lamps`); ``geo_ntl.psf.isolated_lamps`` /
``lamp_fwhm`` are being written separately and the two will be reconciled.
Noise is estimated from horizontal pixel differences in the darkest quarter of
the scene (robust MAD), floored at 0.3 DN (8-bit quantisation noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from geo_ntl.exceptions import DimensionError, ParameterError

__all__ = [
    "DEFAULT_CELL",
    "SATURATED",
    "black_level",
    "cell_flux",
    "compare_light",
    "cores_kept",
    "dark_rings",
    "flux_ratio_stats",
    "highlights_kept",
    "lamp_widths",
    "lights_kept",
    "new_maxima",
]

#: Cell side in pixels: 108 px is 100 m at Jilin-1's 0.92 m.
DEFAULT_CELL = 108
#: A pixel whose every band is at least this is saturated (8-bit DN).
SATURATED = 250
#: Lowest noise sigma (DN) the measures assume: 8-bit quantisation noise.
_NOISE_FLOOR = 0.3


def _bands(image: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind not in "uifb":
        raise ParameterError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] > 4 or min(arr.shape[1:]) == 0:
        raise DimensionError(
            f"{name} must be a (band, y, x) or (y, x) array with 1-4 bands, got shape "
            f"{np.shape(image)}"
        )
    return np.nan_to_num(arr.astype(np.float64))


def _pair(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b, a = _bands(before, "before"), _bands(after, "after")
    if b.shape != a.shape:
        raise DimensionError(f"before and after shapes differ: {b.shape} vs {a.shape}")
    return b, a


def _noise_sigma(inten: np.ndarray) -> float:
    """Robust noise sigma (DN) of a (y, x) intensity from its darkest quarter."""
    if inten.shape[1] < 2:
        return _NOISE_FLOOR
    d = np.diff(inten, axis=1)
    smooth = ndimage.uniform_filter(inten, 5)[:, :-1]
    dark = smooth <= np.quantile(smooth, 0.25)
    d = d[dark] if dark.sum() >= 16 else d.ravel()
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2.0), _NOISE_FLOOR)


def black_level(image: np.ndarray, *, percentile: float = 0.5, smooth: float = 2.0) -> np.ndarray:
    """Estimate the scene's black level per band: a low percentile of the smoothed band.

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        The scene (DN).
    percentile : float, default 0.5
        Percentile (0-100) of the smoothed band taken as black. Smoothing first
        removes the noise, so a low percentile is the darkest *area*, not the
        most negative noise sample; 0.5 % ignores a few dead pixels.
    smooth : float, default 2.0
        Sigma (px) of the Gaussian smoothing.

    Returns
    -------
    (band,) ndarray of float64
        Black level of each band, in DN. A dim sky background that covers the
        whole scene *is* the black level by this definition.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((3, 32, 32), 4, np.uint8)
    >>> img[:, 10, 10] = 200
    >>> black_level(img).round(2).tolist()
    [4.0, 4.0, 4.0]
    """
    x = _bands(image)
    if not 0 <= percentile <= 100:
        raise ParameterError(f"percentile must be in [0, 100], got {percentile!r}")
    out = []
    for band in x:
        s = ndimage.gaussian_filter(band, smooth) if smooth > 0 else band
        out.append(float(np.percentile(s, percentile)))
    return np.asarray(out)


def _black(x: np.ndarray, black: float | Sequence[float] | np.ndarray | None) -> np.ndarray:
    if black is None:
        return black_level(x)
    b = np.broadcast_to(np.asarray(black, dtype=np.float64).ravel(), (x.shape[0],))
    return np.asarray(b, dtype=np.float64)


def cell_flux(
    image: np.ndarray,
    *,
    cell: int = DEFAULT_CELL,
    black: float | Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Light above the black level summed per grid cell (all bands together).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        The scene (DN).
    cell : int, default 108
        Cell side in pixels (108 px = 100 m at 0.92 m).
    black : float or sequence of float, optional
        Black level (one value or one per band); default :func:`black_level`.

    Returns
    -------
    (y // cell, x // cell) ndarray of float64
        Sum over the cell's pixels and bands of ``image - black``. The grid starts
        at the scene's upper-left pixel; partial cells at the right and bottom
        edges are dropped. The difference is not clipped at 0, so noise averages
        out and a flux-conserving blur keeps every cell's sum away from the
        edges; a cell that the output darkens below black counts negative.

    Examples
    --------
    >>> import numpy as np
    >>> cell_flux(np.ones((3, 20, 30)), cell=10, black=0).tolist()
    [[300.0, 300.0, 300.0], [300.0, 300.0, 300.0]]
    """
    if isinstance(cell, bool) or not isinstance(cell, int | np.integer) or cell < 1:
        raise ParameterError(f"cell must be a positive integer number of pixels, got {cell!r}")
    x = _bands(image)
    x = x - _black(x, black)[:, None, None]
    ny, nx = x.shape[1] // cell, x.shape[2] // cell
    x = x[:, : ny * cell, : nx * cell].sum(axis=0)
    return x.reshape(ny, cell, nx, cell).sum(axis=(1, 3))


def flux_ratio_stats(
    before: np.ndarray,
    after: np.ndarray,
    *,
    cell: int = DEFAULT_CELL,
    lit: Literal["median", "all"] | float = "median",
    black: float | Sequence[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """Per-cell flux ratio ``after / before`` above the black level, over lit cells.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration, or the truth.
    after : ndarray
        The restored scene, same shape.
    cell : int, default 108
        Cell side in pixels.
    lit : {"median", "all"} or float, default "median"
        Which cells count: those whose ``before`` flux is above the median cell's
        ("median"), every cell with positive flux ("all"), or those whose mean
        light above black is at least this many DN per pixel and band (float).
    black : float or sequence of float, optional
        Black level subtracted from *both* images; default ``black_level(before)``.
        Pass 0 to compare with a linear truth that has a true zero.

    Returns
    -------
    dict
        ``n`` (lit cells), ``median_ratio``, ``median_abs_dev`` (median of
        ``|ratio - 1|``), ``within_10pct`` (fraction of lit cells with
        ``|ratio - 1| <= 0.1``), ``min``, ``max``. With no lit cell, ``n`` is 0
        and the rest NaN.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).integers(0, 200, (3, 216, 216)).astype(np.uint8)
    >>> flux_ratio_stats(img, img)["within_10pct"]
    1.0
    """
    b, a = _pair(before, after)
    blk = _black(b, black)
    fb = cell_flux(b, cell=cell, black=blk).ravel()
    fa = cell_flux(a, cell=cell, black=blk).ravel()
    if isinstance(lit, str):
        if lit == "median":
            sel = fb > np.median(fb) if fb.size else fb > 0
        elif lit == "all":
            sel = np.ones(fb.shape, bool)
        else:
            raise ParameterError(f"lit must be 'median', 'all' or a number, got {lit!r}")
    else:
        sel = fb >= float(lit) * cell * cell * b.shape[0]
    sel &= fb > 0
    nan = float("nan")
    if not sel.any():
        return {
            "n": 0,
            "median_ratio": nan,
            "median_abs_dev": nan,
            "within_10pct": nan,
            "min": nan,
            "max": nan,
        }
    r = fa[sel] / fb[sel]
    dev = np.abs(r - 1.0)
    return {
        "n": int(r.size),
        "median_ratio": float(np.median(r)),
        "median_abs_dev": float(np.median(dev)),
        "within_10pct": float(np.mean(dev <= 0.10 + 1e-12)),
        "min": float(r.min()),
        "max": float(r.max()),
    }


def _fwhm_at(inten: np.ndarray, y: int, x: int, radius: int) -> float:
    """FWHM (px) of the blob near (y, x): half-max crossing of its radial profile.

    The peak is re-found within 2 px, the background is the 10th percentile of the
    window, the sub-pixel centre and the peak height come from an isotropic
    Gaussian fit (log-quadratic) of the 5 x 5 core, and the half-maximum radius is
    interpolated linearly in a profile of 0.5 px radial bins around that centre.
    """
    h, w = inten.shape
    y0, y1, x0, x1 = max(y - 2, 0), min(y + 3, h), max(x - 2, 0), min(x + 3, w)
    sub = inten[y0:y1, x0:x1]
    dy, dx = np.unravel_index(int(np.argmax(sub)), sub.shape)
    y, x = y0 + int(dy), x0 + int(dx)
    if y < radius or x < radius or y >= h - radius or x >= w - radius:
        return float("nan")
    win = inten[y - radius : y + radius + 1, x - radius : x + radius + 1]
    bg = float(np.percentile(win, 10))
    v = win - bg
    top = float(v[radius, radius])
    if top <= 0:
        return float("nan")
    gy, gx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    cy = cx = 0.0
    peak = top
    inner = (np.abs(gy) <= 2) & (np.abs(gx) <= 2) & (v > 0.2 * top)
    if inner.sum() >= 5:  # isotropic Gaussian fit: ln v = a + b y + c x + d (y^2 + x^2)
        yi, xi = gy[inner].astype(np.float64), gx[inner].astype(np.float64)
        design = np.stack([np.ones_like(yi), yi, xi, yi**2 + xi**2], axis=1)
        coef, *_ = np.linalg.lstsq(design, np.log(v[inner]), rcond=None)
        if coef[3] < 0:
            fy, fx = -coef[1] / (2 * coef[3]), -coef[2] / (2 * coef[3])
            if abs(fy) <= 1 and abs(fx) <= 1:
                cy, cx = float(fy), float(fx)
                fit = math.exp(coef[0] - (coef[1] ** 2 + coef[2] ** 2) / (4 * coef[3]))
                peak = float(np.clip(fit, top, 1.5 * top))
    r = np.hypot(gy - cy, gx - cx)
    half = 0.5 * peak
    edges = np.arange(0.0, radius + 0.5, 0.5)
    idx = np.digitize(r.ravel(), edges) - 1
    ok = idx < edges.size - 1
    sums = np.bincount(idx[ok], weights=v.ravel()[ok], minlength=edges.size - 1)
    cnt = np.bincount(idx[ok], minlength=edges.size - 1)
    rsum = np.bincount(idx[ok], weights=r.ravel()[ok], minlength=edges.size - 1)
    good = cnt > 0
    prof, rad = sums[good] / cnt[good], rsum[good] / cnt[good]
    prof = np.concatenate([[peak], prof])
    rad = np.concatenate([[0.0], rad])
    below = np.nonzero(prof < half)[0]
    if below.size == 0 or below[0] == 0:
        return float("nan")
    k = int(below[0])
    p0, p1, r0, r1 = prof[k - 1], prof[k], rad[k - 1], rad[k]
    rh = r0 + (p0 - half) / (p0 - p1) * (r1 - r0) if p0 != p1 else r0
    return float(2.0 * rh)


def _isolated_lamps(
    x: np.ndarray,
    *,
    sep: int = 16,
    min_contrast: float = 10.0,
    saturation: float = SATURATED,
    max_lamps: int = 300,
) -> list[tuple[int, int]]:
    """Isolated, unsaturated lamps of a (band, y, x) DN array, brightest first.

    A lamp is a local maximum of the band-mean intensity (Gaussian-smoothed,
    sigma 1 px) at least ``max(min_contrast, 8 sigma_noise)`` above its local
    background (the minimum of the 5 px box mean within ``sep`` px); its region
    above half its contrast fits inside the ``sep`` window; no other maximum
    within ``sep`` px reaches 30 % of its contrast outside that region, or inside
    it with a saddle deeper than 20 % of the contrast between them (two lamps); no
    brighter lamp already kept lies within ``sep`` px; no band reaches ``saturation`` within 2 px;
    and it lies at least ``sep`` px from the edges.
    """
    from scipy.spatial import cKDTree
    from skimage.feature import peak_local_max

    inten = x.mean(axis=0)
    sigma = _noise_sigma(inten)
    sm = ndimage.gaussian_filter(inten, 1.0)
    bg = ndimage.minimum_filter(ndimage.uniform_filter(sm, 5), size=2 * sep + 1)
    low = peak_local_max(
        sm, min_distance=2, threshold_abs=float(sm.min()) + 3 * sigma, exclude_border=False
    )
    if low.size == 0:
        return []
    contrast_all = sm[low[:, 0], low[:, 1]] - bg[low[:, 0], low[:, 1]]
    thr = max(min_contrast, 8 * sigma)
    tree = cKDTree(low)
    satmax = ndimage.maximum_filter(x.min(axis=0), size=5)
    h, w = inten.shape
    keep: list[tuple[int, int]] = []
    for i in np.argsort(-contrast_all):
        c = contrast_all[i]
        if c < thr:
            break
        py, px = int(low[i, 0]), int(low[i, 1])
        if not (sep <= py < h - sep and sep <= px < w - sep) or satmax[py, px] >= saturation:
            continue
        if any((py - ky) ** 2 + (px - kx) ** 2 <= sep * sep for ky, kx in keep):
            continue
        win = sm[py - sep : py + sep + 1, px - sep : px + sep + 1] - bg[py, px]
        lab, _ = ndimage.label(win > 0.5 * c)
        own = lab == lab[sep, sep]
        if own[0].any() or own[-1].any() or own[:, 0].any() or own[:, -1].any():
            continue
        rivals = False
        for j in tree.query_ball_point(low[i], sep):
            if j == i or contrast_all[j] <= 0.3 * c:
                continue
            jy, jx = int(low[j, 0]) - py + sep, int(low[j, 1]) - px + sep
            if not (0 <= jy < 2 * sep + 1 and 0 <= jx < 2 * sep + 1) or not own[jy, jx]:
                rivals = True
                break
            # inside the lamp's own region: a second lamp if a saddle separates them
            n = 2 * int(math.hypot(jy - sep, jx - sep)) + 3
            line = ndimage.map_coordinates(
                sm, [np.linspace(py, low[j, 0], n), np.linspace(px, low[j, 1], n)], order=1
            )
            if min(sm[py, px], sm[low[j, 0], low[j, 1]]) - line.min() > 0.2 * c:
                rivals = True
                break
        if rivals:
            continue
        keep.append((py, px))
        if len(keep) >= max_lamps:
            break
    return keep


def lamp_widths(
    image: np.ndarray,
    *,
    positions: Sequence[tuple[int, int]] | np.ndarray | None = None,
    sep: int = 16,
    radius: int | None = None,
    min_contrast: float = 10.0,
    saturation: float = SATURATED,
    max_lamps: int = 300,
) -> dict[str, Any]:
    """Median FWHM (px) of isolated, unsaturated lamps.

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        The scene (DN), measured on its band mean.
    positions : sequence of (y, x), optional
        Where to measure (each re-centred on the brightest pixel within 2 px);
        default the lamps this function detects in ``image``. Pass the positions
        found in the input to measure the same lamps in an output or a truth.
    sep : int, default 16
        Isolation distance (px): no comparable maximum within it, the lamp fits
        inside it.
    radius : int, optional
        Half side of the measurement window; default ``sep``.
    min_contrast : float, default 10.0
        Lowest lamp contrast above the local background (DN), raised to 8 noise
        sigmas in noisy scenes.
    saturation : float, default 250
        Lamps with a band at or above this within 2 px are skipped (their width
        is the clipping's, not the optics').
    max_lamps : int, default 300
        At most this many lamps, brightest first.

    Returns
    -------
    dict
        ``fwhm`` (median FWHM in px, NaN if none measured), ``n`` (lamps measured),
        ``positions`` (list of (y, x) used) and ``widths`` (each lamp's FWHM, NaN
        where it could not be measured).

    Notes
    -----
    The FWHM is twice the radius where the lamp's azimuthally averaged profile
    (0.5 px bins around its sub-pixel centre) falls to half its peak above the
    local background (10th percentile of the window); centre and peak come from
    an isotropic Gaussian fit of the 5 x 5 core. A Gaussian lamp of
    FWHM 3-8 px is measured within a few per cent.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> lamp = 200 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 2.0**2))
    >>> round(lamp_widths(lamp)["fwhm"], 1)
    4.7
    """
    x = _bands(image)
    if positions is None:
        positions = _isolated_lamps(
            x, sep=sep, min_contrast=min_contrast, saturation=saturation, max_lamps=max_lamps
        )
    pos = [(int(p[0]), int(p[1])) for p in positions]
    inten = x.mean(axis=0)
    r = int(radius or sep)
    widths = [_fwhm_at(inten, py, px, r) for py, px in pos]
    finite = [v for v in widths if math.isfinite(v)]
    return {
        "fwhm": float(np.median(finite)) if finite else float("nan"),
        "n": len(finite),
        "positions": pos,
        "widths": widths,
    }


def _light_mask(x: np.ndarray, k: float, min_dn: float) -> tuple[np.ndarray, np.ndarray, float]:
    inten = x.mean(axis=0)
    sigma = _noise_sigma(inten)
    sm = ndimage.gaussian_filter(inten, 1.0)
    black = float(black_level(inten).mean())
    return sm, sm > black + max(k * sigma, min_dn), sigma


def _light_peaks(x: np.ndarray, k: float, min_dn: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Smoothed intensity, its local maxima (2 px apart) above the light floor, black level."""
    from skimage.feature import peak_local_max

    sm, _, sigma = _light_mask(x, k, min_dn)
    black = float(black_level(x.mean(axis=0)).mean())
    floor = black + max(k * sigma, min_dn)
    peaks = peak_local_max(sm, min_distance=2, threshold_abs=floor, exclude_border=False)
    return sm, peaks, black


def new_maxima(
    before: np.ndarray,
    after: np.ndarray,
    *,
    r: float = 4.0,
    k: float = 5.0,
    min_dn: float = 3.0,
) -> int:
    """Count lamps the output invented: maxima far from any light of the input.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration.
    after : ndarray
        The restored scene, same shape.
    r : float, default 4.0
        A maximum closer than this (px) to the input's light is not new.
    k : float, default 5.0
        Noise floor in noise sigmas (each image's own sigma).
    min_dn : float, default 3.0
        The noise floor is at least this many DN above the black level.

    Returns
    -------
    int
        Local maxima (2 px apart) of the output's smoothed intensity (Gaussian,
        sigma 1 px) above its black level plus ``max(k sigma, min_dn)`` that lie
        farther than ``r`` px from every input pixel whose smoothed intensity is
        above the input's own floor.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((3, 64, 64), 5, np.uint8)
    >>> new_maxima(img, img)
    0
    """
    b, a = _pair(before, after)
    _, lit_b, _ = _light_mask(b, k, min_dn)
    _, peaks, _ = _light_peaks(a, k, min_dn)
    if peaks.size == 0:
        return 0
    if not lit_b.any():
        return int(len(peaks))
    dist = ndimage.distance_transform_edt(~lit_b)
    return int(np.sum(dist[peaks[:, 0], peaks[:, 1]] > r))


def lights_kept(
    before: np.ndarray,
    after: np.ndarray,
    *,
    keep: float = 0.5,
    reach: int = 2,
    k: float = 5.0,
    min_dn: float = 3.0,
    saturation: float = SATURATED,
) -> float:
    """Share of the input's unsaturated lights that the output still shows.

    The mirror of :func:`new_maxima`: a restoration may sharpen, move and brighten a
    light, but one that deletes dim street lights and hands their light to brighter
    neighbours keeps every cell's light (:func:`flux_ratio_stats`) while the lights
    themselves are gone.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration.
    after : ndarray
        The restored scene, same shape.
    keep : float, default 0.5
        A light is kept when the output's peak above its black level, within ``reach``
        px of the input's peak, is at least this share of the input's.
    reach : int, default 2
        Search radius (px) in the output around each input peak.
    k, min_dn : float, default 5.0 and 3.0
        The input's lights stand ``max(k sigma, min_dn)`` above its black level (as in
        :func:`new_maxima`).
    saturation : float, default 250
        Peaks at or above this in any band are skipped (:func:`cores_kept` judges them).

    Returns
    -------
    float
        Kept share of the input's local maxima (2 px apart) of the intensity smoothed by
        a 1-px Gaussian; NaN when the input has none.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((3, 32, 32), 5.0)
    >>> img[:, 10, 10] = img[:, 20, 22] = 60.0
    >>> out = img.copy()
    >>> out[:, 20, 22] = 5.0  # one of the two lights deleted
    >>> lights_kept(img, out)
    0.5
    """
    b, a = _pair(before, after)
    sm_b, peaks, black_b = _light_peaks(b, k, min_dn)
    sm_a = ndimage.gaussian_filter(a.mean(axis=0), 1.0)
    black_a = float(black_level(a.mean(axis=0)).mean())
    if peaks.size:
        hot = ndimage.maximum_filter(b.max(axis=0), size=5) >= saturation
        peaks = peaks[~hot[peaks[:, 0], peaks[:, 1]]]
    if peaks.size == 0:
        return float("nan")
    near = ndimage.maximum_filter(sm_a, size=2 * reach + 1)
    height_b = sm_b[peaks[:, 0], peaks[:, 1]] - black_b
    height_a = near[peaks[:, 0], peaks[:, 1]] - black_a
    return float(np.mean(height_a >= keep * height_b))


def dark_rings(
    before: np.ndarray,
    after: np.ndarray,
    *,
    fwhm: float | None = None,
    k: float = 3.0,
    min_contrast: float = 40.0,
    max_lamps: int = 200,
) -> float:
    """Fraction of the annulus around bright lamps where the output undershoots.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration.
    after : ndarray
        The restored scene, same shape.
    fwhm : float, optional
        Lamp width (px) that sets the annulus; default the input's median
        :func:`lamp_widths` (5 px if none can be measured).
    k : float, default 3.0
        Undershoot threshold in input noise sigmas.
    min_contrast : float, default 40.0
        Bright lamps are maxima of the input at least ``max(min_contrast,
        10 sigma)`` DN above its black level.
    max_lamps : int, default 200
        The brightest lamps considered.

    Returns
    -------
    float
        Share of annulus pixels where the output's smoothed intensity (Gaussian,
        sigma 1 px) is below the input's local background minus ``k`` noise sigmas.
        The annulus is 2-4 FWHM across: pixels 1-2 FWHM from the nearest bright
        lamp's centre (so no nearer to another); the local background is the
        minimum of the input's smoothed intensity within 2 FWHM. 0 for the
        identity; NaN without bright lamps.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((3, 64, 64), 5, np.uint8)
    >>> img[:, 30:33, 30:33] = 200
    >>> dark_rings(img, img)
    0.0
    """
    from skimage.feature import peak_local_max

    b, a = _pair(before, after)
    inten_b = b.mean(axis=0)
    sigma = _noise_sigma(inten_b)
    sm_b = ndimage.gaussian_filter(inten_b, 1.0)
    sm_a = ndimage.gaussian_filter(a.mean(axis=0), 1.0)
    black = float(black_level(inten_b).mean())
    peaks = peak_local_max(
        sm_b,
        min_distance=5,
        threshold_abs=black + max(min_contrast, 10 * sigma),
        num_peaks=max_lamps,
        exclude_border=False,
    )
    if peaks.size == 0:
        return float("nan")
    if fwhm is None:
        fwhm = lamp_widths(b)["fwhm"]
        if not math.isfinite(fwhm):
            fwhm = 5.0
    pts = np.ones(sm_b.shape, bool)
    pts[peaks[:, 0], peaks[:, 1]] = False
    dist = ndimage.distance_transform_edt(pts)
    annulus = (dist >= fwhm) & (dist <= 2 * fwhm)
    if not annulus.any():
        return float("nan")
    size = 2 * int(math.ceil(2 * fwhm)) + 1
    local_bg = ndimage.minimum_filter(sm_b, size=size)
    ring = annulus & (sm_a < local_bg - k * sigma)
    return float(ring.sum() / annulus.sum())


def highlights_kept(
    before: np.ndarray, after: np.ndarray, *, saturated: float = SATURATED, kept: float = 240
) -> float:
    """Fraction of the input's saturated pixels that stay bright in the output.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration.
    after : ndarray
        The restored scene, same shape.
    saturated : float, default 250
        An input pixel is saturated when every band is at least this.
    kept : float, default 240
        It is kept when every output band is at least this.

    Returns
    -------
    float
        Kept / saturated; NaN when the input has no saturated pixel.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((3, 8, 8), np.uint8)
    >>> img[:, :2] = 255
    >>> highlights_kept(img, img), highlights_kept(img, img // 2)
    (1.0, 0.0)
    """
    b, a = _pair(before, after)
    sat = (b >= saturated).all(axis=0)
    n = int(sat.sum())
    if n == 0:
        return float("nan")
    return float(((a >= kept).all(axis=0) & sat).sum() / n)


def cores_kept(
    before: np.ndarray, after: np.ndarray, *, fwhm: float, saturated: float = SATURATED
) -> float:
    """Fraction of the pixels of saturated blob *cores* that stay saturated after restoration.

    A blob's core is its saturated pixels eroded by the PSF's half width at half maximum
    (at least 1 px; :func:`geo_ntl.deblur.cores.core_mask`), per band: where a lamp's own
    light clipped the sensor, not its bloom. A restoration that turns them grey loses the
    highlight.

    Parameters
    ----------
    before, after : (band, y, x) ndarray
        The scene and its restoration (8-bit DN scale).
    fwhm : float
        The PSF's FWHM (px).
    saturated : float, default 250
        A band at least this is saturated (before and after).

    Returns
    -------
    float
        Kept / core pixels over all bands; NaN when there is no core.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((3, 9, 9), np.uint8)
    >>> img[:, 2:7, 2:7] = 255
    >>> cores_kept(img, img, fwhm=2.0), cores_kept(img, img // 2, fwhm=2.0)
    (1.0, 0.0)
    """
    from geo_ntl.deblur.cores import core_mask

    b, a = _pair(before, after)
    core = core_mask(b >= saturated, fwhm)
    n = int(core.sum())
    if n == 0:
        return float("nan")
    return float((a[core] >= saturated).sum() / n)


def compare_light(
    before: np.ndarray, after: np.ndarray, *, cell: int = DEFAULT_CELL
) -> dict[str, Any]:
    """All light measures of ``after`` against the scene ``before`` restoration.

    Parameters
    ----------
    before : (band, y, x) or (y, x) ndarray
        The scene before restoration.
    after : ndarray
        The restored scene, same shape.
    cell : int, default 108
        Cell side in pixels for the flux statistics.

    Returns
    -------
    dict
        ``black_before`` and ``black_after`` (per band), ``flux`` (the
        :func:`flux_ratio_stats` dict, the input's black level subtracted from
        both), ``lamps`` (isolated lamps found in the input), ``fwhm_before`` and
        ``fwhm_after`` (median FWHM of those lamps in each image), ``new_maxima``,
        ``lights_kept``, ``dark_rings`` and ``highlights_kept``.
    """
    b, a = _pair(before, after)
    lw_b = lamp_widths(b)
    lw_a = lamp_widths(a, positions=lw_b["positions"])
    return {
        "black_before": [round(v, 3) for v in black_level(b).tolist()],
        "black_after": [round(v, 3) for v in black_level(a).tolist()],
        "flux": flux_ratio_stats(b, a, cell=cell),
        "lamps": lw_b["n"],
        "fwhm_before": lw_b["fwhm"],
        "fwhm_after": lw_a["fwhm"],
        "new_maxima": new_maxima(b, a),
        "lights_kept": lights_kept(b, a),
        "dark_rings": dark_rings(b, a, fwhm=lw_b["fwhm"] if lw_b["n"] else None),
        "highlights_kept": highlights_kept(b, a),
    }
