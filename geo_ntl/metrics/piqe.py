"""PIQE, the Perception-based Image Quality Evaluator (no-reference, lower is better).

Venkatanath N, Praneeth D, Maruthi Chandrasekhar Bh, Channappayya & Medasani,
"Blind image quality evaluation using perception based features", NCC 2015.
Written from the paper and the behaviour of MATLAB's ``piqe``: the gray image is
cut into 16 x 16 blocks of its MSCN coefficients; blocks whose variance exceeds a
threshold are "spatially active"; an active block is distorted by a noticeable
artifact when some 6-pixel segment of one of its four edges is nearly flat, and
noisy when its standard deviation exceeds twice the "center-surround" ratio
criterion beta. The score pools these block distortions over the active blocks.
Lower is better (0 best, 100 worst).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geo_ntl.metrics._common import as_255, luma

__all__ = [
    "piqe",
    "PIQE_BLOCK",
    "PIQE_ACTIVITY_THRESHOLD",
    "PIQE_IMPAIRED_THRESHOLD",
    "PIQE_SEGMENT",
]

#: Side of the non-overlapping blocks, in pixels.
PIQE_BLOCK = 16
#: MSCN variance above which a block is spatially active (salient).
PIQE_ACTIVITY_THRESHOLD = 0.1
#: Standard deviation below which an edge segment counts as a noticeable artifact.
PIQE_IMPAIRED_THRESHOLD = 0.1
#: Length of the edge segments, in pixels.
PIQE_SEGMENT = 6
#: Side and sigma of the Gaussian window of the MSCN coefficients (3 sigma each side).
PIQE_WINDOW = 7
PIQE_SIGMA = 7.0 / 6.0
#: Stabilising constant C of the pooled score.
PIQE_C = 1.0


def _gaussian_window() -> np.ndarray:
    r = np.arange(PIQE_WINDOW) - (PIQE_WINDOW - 1) / 2.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * PIQE_SIGMA**2))
    return w / w.sum()


def _mscn(gray: np.ndarray) -> np.ndarray:
    w = _gaussian_window()
    mu = ndimage.correlate(gray, w, mode="nearest")
    var = ndimage.correlate(gray * gray, w, mode="nearest") - mu * mu
    return (gray - mu) / (np.sqrt(np.abs(var)) + 1.0)


def piqe(image: np.ndarray, *, data_range: float | None = None) -> float:
    """Perception-based Image Quality Evaluator (PIQE), a no-reference score in [0, 100].

    Parameters
    ----------
    image : (band, y, x) or (y, x) ndarray
        The image to score; colour images are reduced to BT.601 luma.
    data_range : float, optional
        Value range of the input (default from the dtype: 255 for uint8, 65535 for
        uint16, 1 for float).

    Returns
    -------
    float
        PIQE score; lower is better (0 excellent, 100 bad). A uniform image scores 100.

    Raises
    ------
    ValueError
        If the image is smaller than one :data:`PIQE_BLOCK` x :data:`PIQE_BLOCK` block
        (:func:`geo_ntl.metrics.evaluate` reports None then).

    Notes
    -----
    Steps (as in MATLAB's ``piqe``): gray image rounded to 8-bit levels, padded
    (symmetric, bottom/right) to whole 16 x 16 blocks and rescaled to
    ``round(255 * g / max(g))``; MSCN coefficients ``(g - mu) / (sigma + 1)`` with a
    7 x 7 Gaussian window (sigma 7/6, edges replicated). Per block, with sample
    variance ``v`` (ddof 1) of its MSCN values: active if ``v >``
    :data:`PIQE_ACTIVITY_THRESHOLD`; artifact if any of the 11 six-pixel segments of
    any of its four edges has standard deviation below :data:`PIQE_IMPAIRED_THRESHOLD`;
    noisy if ``sqrt(v) > 2 * beta`` with ``beta = |sqrt(v) - r| / max(sqrt(v), r)``
    and ``r`` the ratio of the standard deviations of the two centre columns (0-based
    7 and 8) and of the "surround". The surround follows MATLAB's ``piqe``
    bug-for-bug: it deletes column 7 and then column 8 *of the shortened block*, so
    the surround is every column except 7 and 9 (not 7 and 8 as the paper implies);
    the paper's reading changes scores by about 0.1-0.3 points. Score =
    ``100 * (C + sum(artifact * (1 - v) + noisy * v)) / (C + n_active)`` with C = 1.
    Checked against pypiqe 1.2 (a port of MATLAB's ``piqe``): identical (to 1e-9) on
    the same gray image; on colour images the gray conversion differs (rounded
    BT.601 luma here, OpenCV's fixed-point ``BGR2GRAY`` there), which moved scores
    by at most 0.2 point on the photographs tried (astronaut +0.10, coffee -0.18).
    Like NIQE, PIQE can rate a noisy or blurred night image better than the
    original: use it to rank methods on the same inputs.
    """
    g = np.rint(luma(as_255(image, data_range)))
    h, w = g.shape
    if h < PIQE_BLOCK or w < PIQE_BLOCK:
        raise ValueError(
            f"PIQE needs images of at least {PIQE_BLOCK} x {PIQE_BLOCK} pixels, got {g.shape}"
        )
    peak = g.max()
    if peak <= 0:
        return 100.0
    g = np.pad(g, ((0, -h % PIQE_BLOCK), (0, -w % PIQE_BLOCK)), mode="symmetric")
    g = np.rint(255.0 * g / peak)
    z = _mscn(g)

    ny, nx = z.shape[0] // PIQE_BLOCK, z.shape[1] // PIQE_BLOCK
    blocks: np.ndarray = z.reshape(ny, PIQE_BLOCK, nx, PIQE_BLOCK).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, PIQE_BLOCK, PIQE_BLOCK)
    var = blocks.reshape(len(blocks), -1).var(axis=1, ddof=1)
    active = var > PIQE_ACTIVITY_THRESHOLD
    if not active.any():
        return 100.0
    b, v = blocks[active], var[active]

    edges = np.stack([b[:, 0, :], b[:, :, -1], b[:, -1, :], b[:, :, 0]], axis=1)
    segments = np.lib.stride_tricks.sliding_window_view(edges, PIQE_SEGMENT, axis=-1)
    artifact = (segments.std(axis=-1, ddof=1) < PIQE_IMPAIRED_THRESHOLD).any(axis=(1, 2))

    c0 = (PIQE_BLOCK - 1) // 2  # the two centre columns c0, c0 + 1 (7 and 8 for 16)
    center = b[:, :, c0 : c0 + 2].reshape(len(b), -1)
    # MATLAB's piqe removes column c0 and then column c0 + 1 of the already shortened
    # block, i.e. original column c0 + 2: the "surround" keeps c0 + 1 and drops c0 + 2.
    keep = np.ones(PIQE_BLOCK, bool)
    keep[[c0, c0 + 2]] = False
    surround = b[:, :, keep].reshape(len(b), -1)
    sigma = np.sqrt(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = center.std(axis=1, ddof=1) / surround.std(axis=1, ddof=1)
        ratio = np.where(np.isnan(ratio), 0.0, ratio)  # flat centre and surround, as MATLAB
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
        noisy = sigma > 2.0 * beta  # NaN beta (flat surround only) -> not noisy

    distortion = float(np.sum(artifact * (1.0 - v) + noisy * v))
    return float(100.0 * (distortion + PIQE_C) / (PIQE_C + active.sum()))
