"""No-reference metrics: brightness, entropy, average gradient, LOE and CEIQ."""

from __future__ import annotations

import numpy as np

from geo_ntl.metrics._common import as_255, luma, same_shape

__all__ = [
    "brightness",
    "entropy",
    "average_gradient",
    "loe",
    "ceiq",
    "CEIQ_WEIGHTS",
    "CEIQ_RHO",
    "CEIQ_SMOOTHING",
]

#: Linear epsilon-SVR weights of CEIQ (Yan, Li & Fu 2019), from the authors' model.
CEIQ_WEIGHTS = (
    0.9040977940828352,
    0.5918766787732892,
    0.03660021086086118,
    -0.3329773895731023,
    0.02318992223481331,
)
#: Bias rho of the CEIQ model (score = features . W - rho).
CEIQ_RHO = -1.4026102186529432
#: Counts added to every bin of CEIQ's 128-bin histograms before normalising (Laplace
#: smoothing), so cross-entropies stay finite where one histogram has empty bins.
CEIQ_SMOOTHING = 1.0
#: Histogram bins of the CEIQ features.
CEIQ_BINS = 128
#: Short side, in pixels, to which :func:`loe` resizes both images.
LOE_SIZE = 50


def brightness(image: np.ndarray, *, data_range: float | None = None) -> float:
    """Mean luma on a [0, 1] scale (the "Bright" column of the paper's tables)."""
    return float(luma(as_255(image, data_range)).mean() / 255.0)


def _hist(y: np.ndarray, bins: int) -> np.ndarray:
    h, _ = np.histogram(np.clip(y, 0, 255), bins=bins, range=(0.0, 256.0))
    return h / max(h.sum(), 1)


def _entropy_of(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def entropy(image: np.ndarray, *, data_range: float | None = None) -> float:
    """Shannon entropy (bits) of the 256-bin histogram of the rounded 8-bit luma."""
    y = np.rint(luma(as_255(image, data_range)))
    return _entropy_of(_hist(y, 256))


def average_gradient(image: np.ndarray, *, data_range: float | None = None) -> float:
    """Mean of sqrt((dx^2 + dy^2) / 2) of the luma (forward differences, 8-bit DN)."""
    y = luma(as_255(image, data_range))
    if min(y.shape) < 2:
        return 0.0
    dx = np.diff(y, axis=1)[:-1, :]
    dy = np.diff(y, axis=0)[:, :-1]
    return float(np.sqrt((dx * dx + dy * dy) / 2.0).mean())


def _resize_short(x: np.ndarray, short: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = x.shape
    r = short / min(h, w)
    if r >= 1:
        return x
    return resize(x, (max(1, round(h * r)), max(1, round(w * r))), order=1, anti_aliasing=True)


def loe(output: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Lightness-order error (Wang et al., IEEE TIP 2013, "NPE"), pinned variant.

    Lightness L = max(R, G, B) (the band max); both images are resized (bilinear,
    anti-aliased) so the short side is :data:`LOE_SIZE` pixels; for every pair of
    pixels (x, y) the order ``L(x) >= L(y)`` is compared between reference and
    output; LOE is the mean, over x, of the number of y whose order flipped. The
    reference is the low-light input, as in the NPE paper. Lower is better; 0 for
    any monotone-increasing tone curve.
    """
    a, b = as_255(output, data_range), as_255(reference, data_range)
    same_shape(a, b)
    la = _resize_short(a.max(axis=0), LOE_SIZE).ravel()
    lb = _resize_short(b.max(axis=0), LOE_SIZE).ravel()
    flips = 0
    for i in range(0, la.size, 256):
        ua = la[i : i + 256, None] >= la[None, :]
        ub = lb[i : i + 256, None] >= lb[None, :]
        flips += int(np.count_nonzero(ua != ub))
    return flips / la.size


def ceiq(image: np.ndarray, *, data_range: float | None = None) -> float:
    """Contrast-enhancement-based contrast-changed image quality (CEIQ, Yan, Li & Fu 2019).

    Five features of the gray image g and its histogram-equalised version e: SSIM(g, e),
    the entropies (bits) of the :data:`CEIQ_BINS`-bin histograms of g and e, and the
    cross-entropies (bits) ``H(p_g, p_e) = -sum p_g log2 p_e`` and ``H(p_e, p_g)``;
    score = features . :data:`CEIQ_WEIGHTS` - :data:`CEIQ_RHO`. Higher means better
    contrast. Equalisation: :func:`skimage.exposure.equalize_hist` with 256 bins on the
    rounded 8-bit gray image; SSIM with an 11-tap Gaussian window (sigma 1.5), as in
    Wang et al. 2004.

    Notes
    -----
    **Not validated against the authors' code** (their MATLAB release and example
    images are not available offline; their reference scores 1.7129, 3.5505 and
    2.5005 could not be reproduced). The weights only give scores in the paper's range
    (about 2 to 4 for ordinary photographs) when the cross-entropies are of the order
    of the entropies, i.e. finite: the equalised image's histogram has empty bins
    wherever equalisation spread the levels apart, and a cross-entropy taken with a
    tiny epsilon there (the former implementation, epsilon 1e-12) is dominated by
    ``-log2(epsilon)`` = 40 bits, which drove dark photographs to scores of -8.
    Here both histograms are Laplace-smoothed (:data:`CEIQ_SMOOTHING` count added to
    every bin) before normalising. Measured with this definition: scikit-image's
    astronaut 3.35, camera 3.11, coffee 4.10, chelsea 2.66; dark DICM inputs -1.5 to 3.2.
    Use it to rank methods on the same inputs, not to compare with published numbers.
    """
    from skimage.exposure import equalize_hist
    from skimage.metrics import structural_similarity

    g = np.rint(luma(as_255(image, data_range)))
    if min(g.shape) < 7:
        raise ValueError(f"CEIQ needs images of at least 7 x 7 pixels, got {g.shape}")
    e = np.rint(equalize_hist(g.astype(np.uint8), nbins=256) * 255.0)
    s = structural_similarity(
        g, e, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0
    )

    def smoothed_hist(y: np.ndarray) -> np.ndarray:
        h, _ = np.histogram(np.clip(y, 0, 255), bins=CEIQ_BINS, range=(0.0, 256.0))
        h = h + CEIQ_SMOOTHING
        return h / h.sum()

    pg, pe = smoothed_hist(g), smoothed_hist(e)
    cross_ge = float(-(pg * np.log2(pe)).sum())
    cross_eg = float(-(pe * np.log2(pg)).sum())
    feats = np.array([s, _entropy_of(pg), _entropy_of(pe), cross_ge, cross_eg])
    return float(feats @ np.asarray(CEIQ_WEIGHTS) - CEIQ_RHO)
