"""Point-spread functions (PSF) for simulating blooming in night-time-light imagery.

NTL-Db-Net simulates the blur of high-resolution night-time-light (HR-NTL) images
with a 15-pixel Moffat kernel: a bright core with heavy wings, the shape that
atmospheric scattering and optical blur give to a street lamp seen from orbit.
A Gaussian and a disc kernel are provided for comparison and for varying the
degradation when building training data.
"""

from __future__ import annotations

import numpy as np

from geo_ntl.exceptions import ParameterError

__all__ = [
    "DEFAULT_PSF_SIZE",
    "DEFAULT_MOFFAT_ALPHA",
    "DEFAULT_MOFFAT_BETA",
    "moffat_psf",
    "gaussian_psf",
    "disk_psf",
    "check_psf",
    "halo_psf",
    "elliptical_psf",
    "random_psf",
    "TRAINING_PSF_FAMILIES",
    "TRAINING_FWHM_RANGE",
]

#: Side of the square kernel in pixels (NTL-Db-Net uses 15).
DEFAULT_PSF_SIZE = 15
#: Moffat core width in pixels (half width at half maximum is
#: ``alpha * sqrt(2 ** (1 / beta) - 1)``, about 1.9 px with the defaults).
DEFAULT_MOFFAT_ALPHA = 3.0
#: Moffat wing exponent; smaller values give heavier wings (more halo).
DEFAULT_MOFFAT_BETA = 2.5


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ParameterError(f"PSF size must be an odd positive integer, got {size!r}.")
    if size < 1 or size % 2 == 0:
        raise ParameterError(
            f"PSF size must be an odd positive integer so the kernel has a centre pixel, "
            f"got {size}; use e.g. {DEFAULT_PSF_SIZE}."
        )
    return int(size)


def _radius_squared(size: int) -> np.ndarray:
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return (yy**2 + xx**2).astype(np.float64)


def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def moffat_psf(
    size: int = DEFAULT_PSF_SIZE,
    *,
    alpha: float = DEFAULT_MOFFAT_ALPHA,
    beta: float = DEFAULT_MOFFAT_BETA,
) -> np.ndarray:
    """Build a square, radially symmetric Moffat kernel normalised to sum 1.

    Parameters
    ----------
    size : int, default 15
        Side of the kernel in pixels; odd.
    alpha : float, default 3.0
        Core width in pixels (> 0).
    beta : float, default 2.5
        Wing exponent (> 1 for a finite integral; larger is closer to a Gaussian).

    Returns
    -------
    (size, size) ndarray of float32
        The kernel; ``kernel.sum() == 1`` to float precision.

    Raises
    ------
    ParameterError
        If ``size`` is not an odd positive integer or ``alpha``/``beta`` are out of range.

    Notes
    -----
    The Moffat profile is ``(1 + r**2 / alpha**2) ** -beta``. It is evaluated at
    pixel centres and normalised over the truncated support, so convolving with
    it conserves flux.

    References
    ----------
    .. [1] Moffat, A. F. J. (1969). A theoretical investigation of focal stellar
       images in the photographic emulsion. Astronomy and Astrophysics 3, 455.

    Examples
    --------
    >>> k = moffat_psf()
    >>> k.shape, round(float(k.sum()), 6)
    ((15, 15), 1.0)
    """
    size = _check_size(size)
    if not alpha > 0:
        raise ParameterError(f"Moffat alpha must be > 0 pixels, got {alpha!r}.")
    if not beta > 1:
        raise ParameterError(f"Moffat beta must be > 1, got {beta!r}; try {DEFAULT_MOFFAT_BETA}.")
    kernel = (1.0 + _radius_squared(size) / alpha**2) ** (-beta)
    return _normalise(kernel)


def gaussian_psf(size: int = DEFAULT_PSF_SIZE, *, sigma: float = 2.0) -> np.ndarray:
    """Build a square isotropic Gaussian kernel normalised to sum 1.

    Parameters
    ----------
    size : int, default 15
        Side of the kernel in pixels; odd.
    sigma : float, default 2.0
        Standard deviation in pixels (> 0).

    Returns
    -------
    (size, size) ndarray of float32

    Raises
    ------
    ParameterError
        If ``size`` is not an odd positive integer or ``sigma <= 0``.

    Examples
    --------
    >>> int(gaussian_psf(5, sigma=1.0).argmax())
    12
    """
    size = _check_size(size)
    if not sigma > 0:
        raise ParameterError(f"Gaussian sigma must be > 0 pixels, got {sigma!r}.")
    return _normalise(np.exp(-_radius_squared(size) / (2.0 * sigma**2)))


def disk_psf(size: int = DEFAULT_PSF_SIZE, *, radius: float = 3.0) -> np.ndarray:
    """Build a flat disc (defocus) kernel normalised to sum 1.

    Parameters
    ----------
    size : int, default 15
        Side of the kernel in pixels; odd.
    radius : float, default 3.0
        Disc radius in pixels (>= 0.5 so the centre pixel is inside).

    Returns
    -------
    (size, size) ndarray of float32

    Raises
    ------
    ParameterError
        If ``size`` is not an odd positive integer or ``radius < 0.5``.

    Examples
    --------
    >>> int((disk_psf(7, radius=1.0) > 0).sum())
    5
    """
    size = _check_size(size)
    if not radius >= 0.5:
        raise ParameterError(f"Disc radius must be >= 0.5 pixels, got {radius!r}.")
    return _normalise((_radius_squared(size) <= radius**2).astype(np.float64))


def check_psf(psf: np.ndarray) -> np.ndarray:
    """Validate a user PSF and return it as float32 normalised to sum 1.

    Parameters
    ----------
    psf : (h, w) array_like
        Non-negative kernel with odd sides and a positive sum.

    Returns
    -------
    (h, w) ndarray of float32

    Raises
    ------
    ParameterError
        If the kernel is not 2-D, has an even side, negative or non-finite
        values, or sums to zero.
    """
    kernel = np.asarray(psf, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ParameterError(
            f"PSF must be a 2-D kernel with odd sides, got shape {kernel.shape}; "
            "build one with geo_ntl.simulate.moffat_psf()."
        )
    if not np.all(np.isfinite(kernel)) or kernel.min() < 0 or kernel.sum() <= 0:
        raise ParameterError("PSF values must be finite, non-negative and sum to a positive value.")
    return _normalise(kernel)


def halo_psf(
    size: int, *, core_sigma: float, halo_fraction: float, halo_scale: float
) -> np.ndarray:
    """Build a Gaussian core plus an exponential halo holding ``halo_fraction`` of the light.

    Parameters
    ----------
    size : int
        Side of the kernel in pixels; odd.
    core_sigma : float
        Gaussian sigma of the core (px, > 0).
    halo_fraction : float
        Share of the light in the halo, in [0, 1).
    halo_scale : float
        E-folding radius of the halo (px, > 0).

    Returns
    -------
    (size, size) ndarray of float32
        Sums to 1.

    Raises
    ------
    ParameterError
        For a bad size or parameter.

    Examples
    --------
    >>> k = halo_psf(31, core_sigma=1.5, halo_fraction=0.3, halo_scale=6.0)
    >>> k.shape, round(float(k.sum()), 5)
    ((31, 31), 1.0)
    """
    size = _check_size(size)
    if not (core_sigma > 0 and halo_scale > 0 and 0 <= halo_fraction < 1):
        raise ParameterError(
            f"halo_psf needs core_sigma > 0, halo_scale > 0 and 0 <= halo_fraction < 1, got "
            f"{core_sigma!r}, {halo_scale!r}, {halo_fraction!r}."
        )
    r2 = _radius_squared(size)
    core = np.exp(-r2 / (2.0 * core_sigma**2))
    halo = np.exp(-np.sqrt(r2) / halo_scale)
    return _normalise((1 - halo_fraction) * core / core.sum() + halo_fraction * halo / halo.sum())


def elliptical_psf(size: int, *, sigma_y: float, sigma_x: float, angle: float) -> np.ndarray:
    """Build an elliptical Gaussian kernel, its axes rotated by ``angle`` radians.

    Parameters
    ----------
    size : int
        Side of the kernel in pixels; odd.
    sigma_y, sigma_x : float
        Sigmas (px, > 0) along the rotated axes.
    angle : float
        Rotation in radians.

    Returns
    -------
    (size, size) ndarray of float32
        Sums to 1.

    Raises
    ------
    ParameterError
        For a bad size or sigma.

    Examples
    --------
    >>> k = elliptical_psf(15, sigma_y=2.5, sigma_x=1.2, angle=0.5)
    >>> bool(k[7, 7] == k.max())
    True
    """
    size = _check_size(size)
    if not (sigma_y > 0 and sigma_x > 0):
        raise ParameterError(f"sigmas must be > 0 pixels, got {sigma_y!r}, {sigma_x!r}.")
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * yy + s * xx, -s * yy + c * xx
    return _normalise(np.exp(-0.5 * ((u / sigma_y) ** 2 + (v / sigma_x) ** 2)))


#: PSF families :func:`random_psf` draws from (training data).
TRAINING_PSF_FAMILIES = ("moffat", "gauss_exp", "elliptical")
#: Range of FWHM (px) :func:`random_psf` draws from.
TRAINING_FWHM_RANGE = (1.5, 10.0)
#: Largest kernel side :func:`random_psf` builds.
MAX_TRAINING_PSF_SIZE = 61


def _odd_at_least(value: float) -> int:
    n = int(np.ceil(value))
    return min(MAX_TRAINING_PSF_SIZE, n + 1 - n % 2)


def random_psf(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Draw a blooming PSF for training data: a family, a width and a window that holds it.

    The families are long-winged Moffat kernels (beta 1.5-3.5), a Gaussian core with an
    exponential halo holding 10-40 % of the light, and elliptical Gaussians; the FWHM is drawn
    log-uniformly from :data:`TRAINING_FWHM_RANGE` and the window is at least four FWHM (and
    five halo scales) wide, so that the wings are not cut.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    kernel : (size, size) ndarray of float32
        Sums to 1.
    info : dict
        ``family``, ``fwhm`` (px) and ``size``.

    Examples
    --------
    >>> kernel, info = random_psf(np.random.default_rng(0))
    >>> kernel.shape[0] >= 4 * info["fwhm"] or kernel.shape[0] == MAX_TRAINING_PSF_SIZE
    True
    """
    family = str(rng.choice(TRAINING_PSF_FAMILIES))
    low, high = np.log(TRAINING_FWHM_RANGE[0]), np.log(TRAINING_FWHM_RANGE[1])
    fwhm = float(np.exp(rng.uniform(low, high)))
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    if family == "moffat":
        beta = float(rng.uniform(1.5, 3.5))
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        size = _odd_at_least(max(15, 6 * fwhm))
        kernel = moffat_psf(size, alpha=alpha, beta=beta)
    elif family == "gauss_exp":
        scale = float(rng.uniform(1.0, 2.0)) * fwhm
        size = _odd_at_least(max(15, 4 * fwhm, 5 * scale))
        kernel = halo_psf(
            size, core_sigma=sigma, halo_fraction=float(rng.uniform(0.1, 0.4)), halo_scale=scale
        )
    else:
        ratio = float(rng.uniform(0.4, 1.0))
        size = _odd_at_least(max(15, 4 * fwhm))
        kernel = elliptical_psf(
            size, sigma_y=sigma, sigma_x=sigma * ratio, angle=float(rng.uniform(0, np.pi))
        )
    return kernel, {"family": family, "fwhm": fwhm, "size": int(kernel.shape[0])}
