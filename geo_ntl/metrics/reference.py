"""Full-reference metrics: PSNR, SSIM, VIF and LRSD (8-bit scale, luma unless stated)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from geo_ntl.metrics._common import as_255, luma, same_shape

__all__ = ["psnr", "ssim", "vif", "lrsd", "LRSD_WINDOW", "LRSD_FLAT_QUANTILE"]

#: Side of the square window of the local standard deviations in :func:`lrsd`.
LRSD_WINDOW = 7
#: Share of the reference's flattest pixels over which :func:`lrsd` averages.
LRSD_FLAT_QUANTILE = 0.3


def psnr(output: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all bands (peak 255 after scaling).

    Parameters
    ----------
    output, reference : (band, y, x) or (y, x) ndarray
        Images of the same shape.
    data_range : float, optional
        Value range of the inputs (default from the dtype).

    Returns
    -------
    float
        ``inf`` for identical images.
    """
    a, b = as_255(output, data_range), as_255(reference, data_range)
    same_shape(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(output: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """SSIM on luma as the literature reports it (Gaussian window sigma 1.5, population covariance).

    Uses :func:`skimage.metrics.structural_similarity` with ``gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255``.
    """
    from skimage.metrics import structural_similarity

    a, b = as_255(output, data_range), as_255(reference, data_range)
    same_shape(a, b)
    ya, yb = luma(a), luma(b)
    if min(ya.shape) < 7:
        raise ValueError(f"SSIM needs images of at least 7 x 7 pixels, got {ya.shape}")
    return float(
        structural_similarity(
            ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0
        )
    )


def _valid_filter(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, win, mode="valid")


def vif(output: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Pixel-domain visual information fidelity (VIFp, Sheikh & Bovik 2006) on luma, 0-255 scale.

    The multi-scale pixel-domain version of the authors' ``vifvec``/``vifp_mscale``:
    four scales with Gaussian windows of side ``2^(5-s) + 1`` (sigma = side / 5),
    'valid' filtering, decimation by 2 between scales and noise variance 2. Written
    in numpy (no torch import); it agrees with ``torchmetrics.functional.image.visual_information_fidelity``
    (checked on a noisy astronaut: same value to 1e-6). Images must be at least 41 x 41.
    """
    a, b = as_255(output, data_range), as_255(reference, data_range)
    same_shape(a, b)
    dist, ref = luma(a), luma(b)
    if min(ref.shape) < 41:
        raise ValueError(f"VIF needs images of at least 41 x 41 pixels, got {ref.shape}")
    sigma_nsq = 2.0
    eps = 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        t = np.arange(n) - (n - 1) / 2.0
        g = np.exp(-(t**2) / (2 * (n / 5.0) ** 2))
        win = np.outer(g, g)
        win /= win.sum()
        if scale > 1:
            ref = _valid_filter(ref, win)[::2, ::2]
            dist = _valid_filter(dist, win)[::2, ::2]
        mu1, mu2 = _valid_filter(ref, win), _valid_filter(dist, win)
        s1 = np.clip(_valid_filter(ref * ref, win) - mu1 * mu1, 0.0, None)
        s2 = np.clip(_valid_filter(dist * dist, win) - mu2 * mu2, 0.0, None)
        s12 = _valid_filter(ref * dist, win) - mu1 * mu2
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        low1 = s1 < eps
        gain[low1] = 0.0
        sv[low1] = s2[low1]
        s1[low1] = 0.0
        low2 = s2 < eps
        gain[low2] = 0.0
        sv[low2] = 0.0
        neg = gain < 0
        sv[neg] = s2[neg]
        gain[neg] = 0.0
        sv[sv <= eps] = eps
        num += float(np.sum(np.log10(1.0 + gain * gain * s1 / (sv + sigma_nsq))))
        den += float(np.sum(np.log10(1.0 + s1 / sigma_nsq)))
    return num / den if den > 0 else 1.0


def _local_std(y: np.ndarray, size: int) -> np.ndarray:
    m = ndimage.uniform_filter(y, size, mode="reflect")
    m2 = ndimage.uniform_filter(y * y, size, mode="reflect")
    return np.sqrt(np.clip(m2 - m * m, 0.0, None))


def lrsd(output: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Locally restricted standard deviation: noise left in regions that are flat in the reference.

    Definition pinned here (after Wang, Liu & Fu, IEEE TIP 2019, who use it to
    measure noise amplification): the local standard deviation of
    ``output - reference`` (luma, 8-bit DN, :data:`LRSD_WINDOW` windows) averaged over
    the :data:`LRSD_FLAT_QUANTILE` share of pixels where the reference's own local
    standard deviation is lowest. Subtracting the reference removes real texture;
    restricting to flat areas keeps edges and brightness offsets out. Lower is better;
    0 for identical images.
    """
    a, b = as_255(output, data_range), as_255(reference, data_range)
    same_shape(a, b)
    ya, yb = luma(a), luma(b)
    ref_std = _local_std(yb, LRSD_WINDOW)
    diff_std = _local_std(ya - yb, LRSD_WINDOW)
    flat = ref_std <= np.quantile(ref_std, LRSD_FLAT_QUANTILE)
    return float(diff_std[flat].mean())
