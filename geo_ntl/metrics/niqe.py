"""NIQE (Mittal, Soundararajan & Bovik, "Making a completely blind image quality analyzer", IEEE SPL 2013).

Written from the paper and the behaviour of the MATLAB release: the image is the
rounded Y channel of YCbCr (ITU-R BT.601, 16-235) for colour input; it is cut
to whole 96 x 96 blocks; at two scales (full, and half by MATLAB-style bicubic
``imresize`` with anti-aliasing) the MSCN coefficients ``(I - mu) / (sigma + 1)``
are formed with the 7 x 7 Gaussian window of the pristine model (edges
replicated); each block gives 18 features per scale (an asymmetric generalised
Gaussian fit of the MSCN coefficients and of their products with the four
neighbours right, down, down-right and down-left); the score is the Mahalanobis-like
distance ``sqrt((mu_p - mu_d)^T pinv((S_p + S_d) / 2) (mu_p - mu_d))`` between
the pristine model (shipped in ``geo_ntl/data/niqe_pris_params.npz``, see its
README) and the image's block features. Lower is better.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import ndimage
from scipy.special import gamma

from geo_ntl.exceptions import InputError
from geo_ntl.metrics._common import as_255

__all__ = ["niqe", "NIQE_BLOCK", "imresize_half"]

#: Block side of the NIQE features at full scale.
NIQE_BLOCK = 96
_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma(2.0 / _GAM) ** 2 / (gamma(1.0 / _GAM) * gamma(3.0 / _GAM))


@lru_cache(maxsize=1)
def _pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = resources.files("geo_ntl") / "data" / "niqe_pris_params.npz"
    with resources.as_file(ref) as path, np.load(path) as data:
        return data["mu_pris_param"].ravel(), data["cov_pris_param"], data["gaussian_window"]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _resize_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """MATLAB ``imresize(..., 0.5, 'bicubic')`` with anti-aliasing along one axis."""
    scale = 0.5
    n_in = x.shape[axis]
    n_out = int(np.ceil(n_in * scale))
    width = 4.0 / scale
    u = np.arange(1, n_out + 1, dtype=np.float64)
    centre = u / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(centre - width / 2.0)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = scale * _cubic(scale * (centre[:, None] - idx))
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(int) - 1, 2 * n_in)]
    keep = np.any(w != 0, axis=0)
    w, src = w[:, keep], src[:, keep]
    moved = np.moveaxis(x, axis, 0)
    out = np.einsum("ot,ot...->o...", w, moved[src])
    return np.moveaxis(out, 0, axis)


def imresize_half(x: np.ndarray) -> np.ndarray:
    """Halve a 2-D array like MATLAB's ``imresize(x, 0.5)`` (bicubic, anti-aliased)."""
    return _resize_axis(_resize_axis(x, 0), 1)


def _aggd(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric GGD fit (alpha, beta_left, beta_right) of each row of ``blocks`` (n, m)."""
    neg = blocks < 0
    pos = blocks > 0
    sq = blocks * blocks
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        gh = left / right
        rhat = np.abs(blocks).mean(1) ** 2 / sq.mean(1)
        rnorm = rhat * (gh**3 + 1) * (gh + 1) / (gh**2 + 1) ** 2
    # r(gamma) increases monotonically, so the grid argmin of (r - rnorm)^2 is a nearest neighbour.
    finite = np.isfinite(rnorm)
    r = np.where(finite, rnorm, 0.0)
    hi = np.clip(np.searchsorted(_R_GAM, r), 1, _R_GAM.size - 1)
    lo = hi - 1
    pick = np.where((_R_GAM[hi] - r) ** 2 < (_R_GAM[lo] - r) ** 2, hi, lo)
    alpha = np.where(finite, _GAM[pick], np.nan)
    factor = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left * factor, right * factor


def _features(mscn: np.ndarray, block: int) -> np.ndarray:
    """18 features for every ``block x block`` tile of ``mscn`` (tiles in column-major order)."""
    h, w = mscn.shape
    nby, nbx = h // block, w // block
    feats = []
    shifted = [np.roll(mscn, s, axis=(0, 1)) for s in ((0, 1), (1, 0), (1, 1), (1, -1))]

    def tiles(a: np.ndarray) -> np.ndarray:
        t = a[: nby * block, : nbx * block].reshape(nby, block, nbx, block)
        return t.transpose(2, 0, 1, 3).reshape(nbx * nby, block * block)

    base = tiles(mscn)
    alpha, bl, br = _aggd(base)
    feats += [alpha, (bl + br) / 2.0]
    for sh in shifted:
        prod = base * tiles(sh)
        alpha, bl, br = _aggd(prod)
        mean = (br - bl) * gamma(2.0 / alpha) / gamma(1.0 / alpha)
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def niqe(image: np.ndarray, *, data_range: float | None = None) -> float:
    """NIQE score of an image (lower is more natural).

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        RGB or gray image; at least 192 x 96 pixels (two 96 x 96 blocks).
    data_range : float, optional
        Value range (default from the dtype).

    Returns
    -------
    float

    Raises
    ------
    InputError
        If the image holds fewer than two 96 x 96 blocks.
    """
    x = as_255(image, data_range)
    if x.shape[0] == 3:
        y = 16.0 + (65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]) / 255.0
    else:
        y = x.mean(axis=0)
    y = np.rint(y)
    h, w = y.shape
    nby, nbx = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nby * nbx < 2:
        raise InputError(
            f"NIQE needs at least two {NIQE_BLOCK} x {NIQE_BLOCK} blocks, got an image of {h} x {w}"
        )
    mu_p, cov_p, window = _pristine()
    img = y[: nby * NIQE_BLOCK, : nbx * NIQE_BLOCK]
    parts = []
    for scale in (1, 2):
        mu = ndimage.convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.convolve(img * img, window, mode="nearest") - mu * mu))
        mscn = (img - mu) / (sigma + 1.0)
        parts.append(_features(mscn, NIQE_BLOCK // scale))
        if scale == 1:
            img = imresize_half(img / 255.0) * 255.0
    dist = np.concatenate(parts, axis=1)
    mu_d = np.nanmean(dist, axis=0)
    good = dist[~np.isnan(dist).any(axis=1)]
    if good.shape[0] < 2:
        return float("nan")
    cov_d = np.cov(good, rowvar=False)
    diff = mu_p - mu_d
    inv = np.linalg.pinv((cov_p + cov_d) / 2.0)
    return float(np.sqrt(diff @ inv @ diff))
