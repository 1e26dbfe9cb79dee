"""Degrade a clean night-time-light scene the way HR-NTL sensors do.

The model follows the training-data simulation of NTL-Db-Net: a grey dilation
(blooming: charge and light spreading around bright sources) and a Moffat
point-spread function (optical and atmospheric blur), then the sensor effects
that real Jilin-1 night scenes show: photon (Poisson) and read (Gaussian) noise,
clipping at the full well (overexposure) and a slight sub-pixel misregistration
between the colour bands.

Blooming here *moves* light, it does not create it: the dilation shares each
source's flux among the pixels it spreads to, so that, away from clipping and up
to the zero-mean noise, the flux of any area much larger than the PSF (for
example a 100 m cell) is the same before and after.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from geo_ntl.exceptions import DimensionError, ParameterError
from geo_ntl.simulate.psf import check_psf, moffat_psf

__all__ = [
    "DEFAULT_DILATION",
    "DEFAULT_EXPOSURE",
    "DEFAULT_FULL_WELL",
    "DEFAULT_READ_NOISE",
    "DEFAULT_NOISE_GRAIN",
    "DEFAULT_MAX_SHIFT",
    "bloom",
    "blur",
    "degrade",
]

#: Side of the square grey-dilation window in pixels (NTL-Db-Net uses 5 x 5).
DEFAULT_DILATION = 5
#: Multiplier applied to the input radiance before anything else (1 = as rendered).
DEFAULT_EXPOSURE = 1.0
#: Photo-electrons collected at radiance 1.0 (full scale); sets the photon noise.
DEFAULT_FULL_WELL = 300.0
#: Standard deviation of the read noise, in radiance units (full scale = 1).
DEFAULT_READ_NOISE = 0.02
#: Gaussian sigma (pixels) that gives the read noise its blotchy, grainy texture.
DEFAULT_NOISE_GRAIN = 0.8
#: Largest per-band shift (pixels, each axis) of the band misregistration.
DEFAULT_MAX_SHIFT = 0.5


def _as_float_bands(clean: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """Return ``(float32 (band, y, x) copy, was_2d, was_uint8)``."""
    array = np.asarray(clean)
    if array.ndim not in (2, 3):
        raise DimensionError(
            f"degrade expects a (band, y, x) or (y, x) array, got {array.ndim} dimensions "
            f"with shape {array.shape}."
        )
    was_2d = array.ndim == 2
    if was_2d:
        array = array[np.newaxis]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, was_2d, True
    if not np.issubdtype(array.dtype, np.floating):
        raise ParameterError(
            f"degrade expects uint8 (0..255) or float radiance (1.0 = full scale), "
            f"got dtype {array.dtype}; convert with array.astype('float32') / array.max()."
        )
    if not np.all(np.isfinite(array)) or array.min() < 0:
        raise ParameterError("degrade expects finite, non-negative radiance values.")
    return array.astype(np.float32, copy=True), was_2d, False


def bloom(image: np.ndarray, *, size: int = DEFAULT_DILATION) -> np.ndarray:
    """Spread bright sources with a flux-conserving grey dilation.

    Parameters
    ----------
    image : (y, x) ndarray of float
        Linear radiance of one band.
    size : int, default 5
        Side of the square dilation window in pixels (odd); 0 or 1 returns a copy.

    Returns
    -------
    (y, x) ndarray of float32
        The dilated image with the total flux of ``image`` kept exactly.

    Notes
    -----
    The image is split into a grey opening (extended areas) and the excess
    above it (sources narrower than the window); only the excess is dilated.
    A grey dilation sets every pixel ``p`` to the maximum ``d(p)`` of its
    window (the ``size x size`` square with its corners cut, so that blobs
    come out round); it has the shape of blooming but adds light. Here
    each source pixel ``q`` instead *shares* its flux equally among the pixels
    whose window maximum it is (``x(q) == d(p)``); a pixel that is the maximum
    of no window keeps its own flux. An isolated lamp becomes a flat
    disc (21 pixels for size 5) with the lamp's flux, a flat area is unchanged, and
    the total (and local) flux is conserved exactly.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise ParameterError(f"dilation must be a non-negative integer, got {size!r}.")
    image = np.asarray(image, dtype=np.float32)
    if size <= 1:
        return image.copy()
    if size % 2 == 0:
        raise ParameterError(f"dilation must be odd so the window is centred, got {size}.")
    height, width = image.shape
    r = size // 2
    # A round window (a 5 x 5 square without its corners): blooming blobs are round.
    offsets = [
        (dy, dx)
        for dy in range(size)
        for dx in range(size)
        if (dy - r) ** 2 + (dx - r) ** 2 <= r**2 + r
    ]

    def view(padded: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return padded[dy : dy + height, dx : dx + width]

    footprint = np.zeros((size, size), dtype=bool)
    for dy, dx in offsets:
        footprint[dy, dx] = True
    # Only what stands out of its surroundings blooms: the grey opening keeps
    # extended areas (lit fields, sky glow) and removes sources narrower than the
    # window, which are spread; smooth areas are left untouched.
    base = ndimage.grey_opening(image, footprint=footprint, mode="reflect")
    excess = image - base
    padded_x = np.pad(excess, r, mode="constant", constant_values=-np.inf)
    window_max = np.full_like(excess, -np.inf)
    for dy, dx in offsets:
        np.maximum(window_max, view(padded_x, dy, dx), out=window_max)
    # count[q]: number of pixels p inside the image whose window maximum is x(q).
    padded_max = np.pad(window_max, r, mode="constant", constant_values=np.inf)
    count = np.zeros(excess.shape, dtype=np.float32)
    for dy, dx in offsets:
        count += view(padded_max, dy, dx) == excess
    share = np.divide(excess, count, out=np.zeros_like(excess), where=count > 0)
    padded_share = np.pad(share, r, mode="constant", constant_values=0.0)
    out = base + np.where(count == 0, excess, np.float32(0.0))
    for dy, dx in offsets:
        out += np.where(view(padded_x, dy, dx) == window_max, view(padded_share, dy, dx), 0.0)
    return out.astype(np.float32)


def blur(image: np.ndarray, *, psf: np.ndarray) -> np.ndarray:
    """Convolve one band with a PSF, reflecting at the edges (flux-conserving).

    Parameters
    ----------
    image : (y, x) ndarray of float
        One band.
    psf : (h, w) ndarray
        Kernel with odd sides; it is normalised to sum 1.

    Returns
    -------
    (y, x) ndarray of float32
    """
    kernel = check_psf(psf)
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(np.asarray(image, dtype=np.float32), ((ph, ph), (pw, pw)), mode="reflect")
    out = signal.fftconvolve(padded, kernel, mode="valid")
    return np.maximum(out, 0.0).astype(np.float32)


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, int], grain: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise smoothed by a Gaussian of ``grain`` px."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if grain > 0:
        noise = ndimage.gaussian_filter(noise, grain, mode="reflect")
        # Unit variance of white noise filtered by a normalised kernel k is sum(k**2);
        # for a 2-D Gaussian that is 1 / (4 pi grain**2) (for grain >~ 0.5 px).
        noise /= np.float32(np.sqrt(1.0 / (4.0 * np.pi * grain**2)))
    return noise


def degrade(
    clean: np.ndarray,
    *,
    seed: int,
    psf: np.ndarray | None = None,
    dilation: int = DEFAULT_DILATION,
    exposure: float = DEFAULT_EXPOSURE,
    full_well: float | None = DEFAULT_FULL_WELL,
    read_noise: float = DEFAULT_READ_NOISE,
    noise_grain: float = DEFAULT_NOISE_GRAIN,
    max_shift: float = DEFAULT_MAX_SHIFT,
    clip: bool = True,
) -> np.ndarray:
    """Simulate blooming, blur, noise, overexposure and band misregistration.

    Parameters
    ----------
    clean : (band, y, x) or (y, x) ndarray
        The sharp scene: uint8 (0..255) or float linear radiance where 1.0 is the
        sensor's full scale. Float values above 1 are allowed (sources brighter
        than the full well: they bloom into large saturated blobs).
    seed : int
        Seed of the noise and of the band shifts; the result is a deterministic
        function of the inputs and the seed.
    psf : (h, w) ndarray, optional
        Blur kernel; default ``moffat_psf()`` (15 x 15).
    dilation : int, default 5
        Side of the flux-conserving grey dilation (blooming); 0 disables it.
    exposure : float, default 1.0
        Gain applied to the radiance first; values > 1 overexpose.
    full_well : float or None, default 300
        Photo-electrons at full scale; photon noise is ``Poisson(x * full_well) /
        full_well``. None disables photon noise.
    read_noise : float, default 0.02
        Standard deviation of the additive read noise (full scale = 1); 0 disables it.
    noise_grain : float, default 0.8
        Gaussian sigma in pixels that correlates the read noise spatially (the
        grainy, blotchy look of real scenes); 0 gives white noise.
    max_shift : float, default 0.5
        Largest sub-pixel shift (pixels, along each axis) drawn per band to
        misregister the bands; 0 disables it.
    clip : bool, default True
        Clip to [0, 1] (overexposure). Without clipping a float result may
        exceed 1 and, with noise, go slightly below 0.

    Returns
    -------
    ndarray
        Same shape as ``clean``; uint8 when ``clean`` is uint8, else float32.

    Raises
    ------
    DimensionError
        If ``clean`` is not 2-D or 3-D.
    ParameterError
        If a parameter is out of range or the dtype is unsupported.

    Notes
    -----
    Order: exposure, blooming (:func:`bloom`), PSF blur (:func:`blur`), band
    shifts (linear interpolation), photon noise, read noise, clipping. Every step
    before the noise keeps the local flux (the noise is zero-mean), so the flux of
    areas much larger than the PSF is kept except where clipping cuts it.

    References
    ----------
    .. [1] NTL-Db-Net, "Making the Earth Clear at Night: A High-resolution
       Nighttime Light Image Deblooming Network" (dilation 5 x 5 + 15-pixel
       Moffat PSF for simulated degradation).

    Examples
    --------
    >>> import numpy as np
    >>> clean = np.zeros((3, 32, 32), dtype=np.float32)
    >>> clean[:, 16, 16] = 20.0
    >>> out = degrade(clean, seed=0, full_well=None, read_noise=0, max_shift=0, clip=False)
    >>> round(float(out.sum() / clean.sum()), 3)
    1.0
    """
    if not exposure > 0:
        raise ParameterError(f"exposure must be > 0, got {exposure!r}.")
    if full_well is not None and not full_well > 0:
        raise ParameterError(f"full_well must be > 0 or None, got {full_well!r}.")
    if not read_noise >= 0 or not noise_grain >= 0 or not max_shift >= 0:
        raise ParameterError(
            "read_noise, noise_grain and max_shift must be >= 0, got "
            f"{read_noise!r}, {noise_grain!r}, {max_shift!r}."
        )
    kernel = moffat_psf() if psf is None else check_psf(psf)
    image, was_2d, was_uint8 = _as_float_bands(clean)
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-max_shift, max_shift, size=(image.shape[0], 2))
    out = np.empty_like(image)
    for band in range(image.shape[0]):
        x = image[band] * np.float32(exposure)
        x = bloom(x, size=dilation)
        x = blur(x, psf=kernel)
        if max_shift > 0:
            x = ndimage.shift(x, shifts[band], order=1, mode="nearest")
        if full_well is not None:
            x = rng.poisson(np.maximum(x, 0.0) * full_well).astype(np.float32) / np.float32(
                full_well
            )
        if read_noise > 0:
            x = x + np.float32(read_noise) * _correlated_noise(rng, x.shape, noise_grain)
        out[band] = x
    if clip or was_uint8:
        np.clip(out, 0.0, 1.0, out=out)
    if was_uint8:
        out = np.round(out * 255.0).astype(np.uint8)
    return out[0] if was_2d else out
