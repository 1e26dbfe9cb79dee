"""Training scenes for the PSF-explicit solver: two simulators, many PSFs, the PSF *measured*.

Each :class:`SolverScene` is a sharp truth, what a sensor recorded of it, and what
the solver will be told at inference: the PSF measured on the recorded scene by
:func:`geo_ntl.psf.estimate_psf` (or the documented fallback where it finds too
few lamps), its black level and noise. Training on the *measured* PSF, not the
true one, teaches the prior the estimator's errors too.

Scenes (:func:`make_scene`), half each:

- geo_ntl's procedural cities (:func:`geo_ntl.simulate.synthetic_city`): lamps,
  lit buildings, parks, a river; truth clipped to 8 bits as the city renders it;
- point-source streets (:func:`geo_ntl.simulate.street_lamps.street_lamp_scene`),
  a different simulator, whose linear truth holds lamps up to ten times full scale.

Degradation (:func:`geo_ntl.simulate.degrade`): a PSF from :func:`draw_psf`
(Moffat, Gaussian + exponential halo, elliptical Gaussian and asymmetric two-lobe
kernels; FWHM 1.5-12 px log-uniform; windows of at least four FWHM), in a third of
the scenes a flux-sharing dilation (blooming), photon and read noise, band
misregistration, clipping at full scale, and half the scenes JPEG-compressed.
Power-law halos are never drawn: they are a family the benchmark keeps unseen.

With ``photo_share`` > 0 (and a folder of photographs) that share of the scenes is
instead a real low-light photograph (``../shared/data/lowlight_dicm``) taken as linear
radiance (gamma 2.2 undone, lit parts up to four times full scale), degraded alike:
dense, dim light beside bright lamps, which neither simulator draws and real cities
hold. The photos the benchmark judges (:data:`HELD_OUT_PHOTOS`) are never drawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geo_ntl.exceptions import PSFEstimationError

__all__ = [
    "FWHM_RANGE",
    "HELD_OUT_PHOTOS",
    "SolverScene",
    "draw_psf",
    "fallback_kernel",
    "make_scene",
    "make_scenes",
    "sample_crops",
]

#: FWHM range (px) of the training PSFs, drawn log-uniformly.
FWHM_RANGE = (1.5, 12.0)
#: Largest PSF side the estimate may take in training (px).
MAX_KERNEL = 61
#: The fallback PSF when a scene has too few lamps to measure one: Moffat, FWHM and beta.
FALLBACK_FWHM = 4.0
FALLBACK_BETA = 2.5
#: Photographs the deblurring benchmark judges as real scenes: never training truths.
HELD_OUT_PHOTOS = frozenset({"01.jpg", "10.jpg"})
#: A photo's 99.9th percentile of linear radiance is drawn between these (full scale 1).
PHOTO_GAIN = (1.0, 4.0)
#: Night-like photographs only: median luminance at most this (8-bit DN).
NIGHT_MEDIAN = 60


@dataclass
class SolverScene:
    """One training scene.

    Attributes
    ----------
    degraded, truth : (3, S, S) ndarray of uint8
        What the sensor recorded; the sharp truth clipped to 8 bits.
    kernels : (3, k, k) ndarray of float32
        The PSF the solver is told (measured, or the fallback).
    fwhm : float
        Its FWHM (px).
    black, noise : (3,) ndarray of float64, float
        Black level per band (DN) and noise sigma (DN) as :mod:`geo_ntl.deblur.physics`
        measures them.
    meta : dict
        What was drawn (simulator, PSF family and FWHM, PSF source).
    """

    degraded: np.ndarray
    truth: np.ndarray
    kernels: np.ndarray
    fwhm: float
    black: np.ndarray
    noise: float
    meta: dict


def fallback_kernel(fwhm: float = FALLBACK_FWHM, beta: float = FALLBACK_BETA) -> np.ndarray:
    """Return the documented fallback PSF: a Moffat kernel of ``fwhm`` px, 6 FWHM wide (odd)."""
    from geo_ntl.simulate.psf import moffat_psf

    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    size = int(np.ceil(6 * fwhm)) | 1
    return moffat_psf(max(size, 9), alpha=alpha, beta=beta).astype(np.float32)


def _asymmetric_psf(rng: np.random.Generator, fwhm: float) -> np.ndarray:
    """Draw a core plus a displaced, wider lobe (coma-like, or a double image)."""
    from geo_ntl.simulate.psf import elliptical_psf

    size = int(min(MAX_KERNEL, max(15, np.ceil(5 * fwhm)))) | 1
    sigma = fwhm / 2.3548
    core = elliptical_psf(size, sigma_y=sigma, sigma_x=sigma * rng.uniform(0.6, 1.0),
                          angle=float(rng.uniform(0, 180)))  # fmt: skip
    lobe = elliptical_psf(size, sigma_y=sigma * 1.8, sigma_x=sigma * 1.2,
                          angle=float(rng.uniform(0, 180)))  # fmt: skip
    shift = rng.uniform(0.3, 0.8) * fwhm
    angle = rng.uniform(0, 2 * np.pi)
    from scipy import ndimage

    lobe = ndimage.shift(lobe, (shift * np.sin(angle), shift * np.cos(angle)), order=1)
    k = (1 - (share := rng.uniform(0.15, 0.4))) * core / core.sum() + share * lobe / lobe.sum()
    return (k / k.sum()).astype(np.float32)


def draw_psf(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Draw a training PSF (see the module docstring); returns ``(kernel, info)``."""
    from geo_ntl.simulate.psf import moffat_psf, random_psf

    fwhm = float(np.exp(rng.uniform(*np.log(FWHM_RANGE))))
    family = str(rng.choice(["random", "random", "random", "asymmetric"]))
    if family == "asymmetric":
        return _asymmetric_psf(rng, fwhm), {"family": "asymmetric", "fwhm": fwhm}
    if fwhm > 10.0:  # beyond random_psf's range: a Moffat kernel of that width
        beta = float(rng.uniform(1.5, 3.5))
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        size = int(min(MAX_KERNEL, np.ceil(5 * fwhm))) | 1
        return moffat_psf(size, alpha=alpha, beta=beta).astype(np.float32), {
            "family": "moffat",
            "fwhm": fwhm,
        }
    kernel, info = random_psf(rng)
    return kernel.astype(np.float32), info


def _measured_psf(degraded: np.ndarray) -> tuple[np.ndarray, float, str]:
    from geo_ntl.psf import estimate_psf, profile_fwhm

    try:
        est = estimate_psf(degraded, max_size=MAX_KERNEL)
    except PSFEstimationError:
        k = fallback_kernel()
        return np.repeat(k[None], 3, axis=0), profile_fwhm(k), "fallback"
    kernels = est.band_kernels.astype(np.float32)
    if kernels.shape[0] != 3:
        kernels = np.repeat(est.kernel[None].astype(np.float32), 3, axis=0)
    return kernels, float(np.mean(est.fwhm)), est.method


def training_photos(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the night-like photographs of ``folder`` that training may draw.

    JPEG files whose median luminance is at most :data:`NIGHT_MEDIAN` DN (a dark scene with
    lights, as night-light imagery is, not an under-exposed daylight one), the ones the
    benchmark judges (:data:`HELD_OUT_PHOTOS`) left out.
    """
    from PIL import Image

    photos = []
    for path in sorted(Path(folder).glob("*.jpg")):
        if path.name in HELD_OUT_PHOTOS:
            continue
        with Image.open(path) as im:
            if np.median(np.asarray(im.convert("L"))) <= NIGHT_MEDIAN:
                photos.append(path)
    if not photos:
        raise FileNotFoundError(f"no night-like photographs (*.jpg) in {folder}")
    return photos


def _photo_radiance(path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    """Linear radiance ``(3, size, size)`` of a random square crop of a photograph."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        side = int(min(rgb.size) * rng.uniform(0.5, 1.0))
        x0 = int(rng.integers(0, rgb.size[0] - side + 1))
        y0 = int(rng.integers(0, rgb.size[1] - side + 1))
        crop = rgb.crop((x0, y0, x0 + side, y0 + side)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
    linear = (np.asarray(crop, dtype=np.float32) / 255.0) ** 2.2
    top = max(float(np.percentile(linear, 99.9)), 1e-3)
    gain = rng.uniform(*PHOTO_GAIN) / top
    return np.ascontiguousarray(linear.transpose(2, 0, 1)) * np.float32(gain)


def make_scene(
    seed: int,
    size: int,
    *,
    photos: list[Path] | None = None,
    photo_share: float = 0.0,
) -> SolverScene:
    """Make one training scene from ``seed`` (see the module docstring).

    ``photos`` (from :func:`training_photos`) are drawn in ``photo_share`` of the seeds,
    decided on a stream of their own, so that every other seed gives the scene it gave
    before photos existed.

    Examples
    --------
    >>> s = make_scene(3, 160)
    >>> s.degraded.shape, s.truth.dtype, s.kernels.shape[0], float(s.kernels[0].sum()) > 0.99
    ((3, 160, 160), dtype('uint8'), 3, True)
    """
    from geo_ntl.deblur.blur_transfer import PHYSICAL_RANGES, jpeg_roundtrip
    from geo_ntl.deblur.physics import _levels
    from geo_ntl.simulate.city import synthetic_city
    from geo_ntl.simulate.degrade import degrade
    from geo_ntl.simulate.street_lamps import street_lamp_scene

    rng = np.random.default_rng([seed, 0x50534F4C])  # "PSOL"
    psf, info = draw_psf(rng)
    opts: dict[str, Any] = {k: float(rng.uniform(*v)) for k, v in PHYSICAL_RANGES.items()}
    opts["dilation"] = int(rng.choice([0, 0, 3, 5])) if rng.random() < 0.33 else 0
    simulator = "city" if rng.random() < 0.5 else "street_lamps"
    pick = np.random.default_rng([seed, 0x50484F54])  # "PHOT"
    photo = None
    if photos and pick.random() < photo_share:
        simulator = "photo"
        photo = photos[int(pick.integers(len(photos)))]
    if photo is not None:
        linear = _photo_radiance(photo, size, pick)
        sensed = degrade(linear, seed=int(rng.integers(2**31)), psf=psf, **opts)
        degraded = np.round(np.clip(sensed, 0.0, 1.0) * 255.0)
        truth = np.clip(np.round(linear * opts["exposure"] * 255.0), 0, 255)
    elif simulator == "city":
        clean, degraded = synthetic_city(
            (size, size),
            seed=int(rng.integers(2**31)),
            lamp_density=float(rng.uniform(0.3, 2.5)),
            sky_glow=float(rng.uniform(0.01, 0.08)),
            psf=psf,
            **opts,
        )
        truth = np.clip(np.round(clean.astype(np.float32) * opts["exposure"]), 0, 255)
    else:
        linear = street_lamp_scene(size, seed=int(rng.integers(2**31)))
        sensed = degrade(linear, seed=int(rng.integers(2**31)), psf=psf, **opts)
        degraded = np.round(np.clip(sensed, 0.0, 1.0) * 255.0)
        truth = np.clip(np.round(linear * opts["exposure"] * 255.0), 0, 255)
    quality = int(rng.integers(60, 96)) if rng.random() < 0.5 else None
    degraded = jpeg_roundtrip(np.asarray(degraded, dtype=np.uint8), quality)
    kernels, fwhm, source = _measured_psf(degraded)
    black, sigma = _levels(degraded, None)
    meta = {"seed": seed, "simulator": simulator, "psf": info, "psf_source": source,
            "photo": None if photo is None else photo.name,
            "dilation": opts["dilation"], "jpeg_quality": quality}  # fmt: skip
    return SolverScene(
        degraded=degraded,
        truth=truth.astype(np.uint8),
        kernels=kernels,
        fwhm=fwhm,
        black=black,
        noise=float(np.mean(sigma)),
        meta=meta,
    )


def make_scenes(seeds: list[int], size: int, **options: Any) -> list[SolverScene]:
    """:func:`make_scene` for each seed (``options`` passed on)."""
    return [make_scene(s, size, **options) for s in seeds]


def _common_kernels(kernels: list[np.ndarray]) -> np.ndarray:
    """Zero-pad ``(3, k, k)`` kernels to the largest side, centred."""
    k = max(x.shape[-1] for x in kernels)
    out = np.zeros((len(kernels), 3, k, k), dtype=np.float32)
    for i, x in enumerate(kernels):
        o = (k - x.shape[-1]) // 2
        out[i, :, o : o + x.shape[-1], o : o + x.shape[-1]] = x
    return out


def sample_crops(
    scenes: list[SolverScene], *, batch: int, crop: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw aligned random crops with random flips and quarter turns (the PSF turned alike).

    Returns
    -------
    dict
        ``degraded``, ``truth`` ``(batch, 3, crop, crop)`` float32 DN; ``kernels``
        ``(batch, 3, k, k)``; ``black`` ``(batch, 3)``; ``noise``, ``fwhm`` ``(batch,)``.
    """
    deg, tru, ker, blk, noi, fw = [], [], [], [], [], []
    for _ in range(batch):
        s = scenes[int(rng.integers(len(scenes)))]
        size = s.degraded.shape[-1]
        y0, x0 = (int(v) for v in rng.integers(0, size - crop + 1, 2))
        a = s.degraded[:, y0 : y0 + crop, x0 : x0 + crop]
        b = s.truth[:, y0 : y0 + crop, x0 : x0 + crop]
        k = s.kernels
        turns = int(rng.integers(4))
        a, b, k = (np.rot90(v, turns, axes=(1, 2)) for v in (a, b, k))
        if rng.random() < 0.5:
            a, b, k = a[:, :, ::-1], b[:, :, ::-1], k[:, :, ::-1]
        deg.append(a)
        tru.append(b)
        ker.append(np.ascontiguousarray(k))
        blk.append(s.black)
        noi.append(s.noise)
        fw.append(s.fwhm)
    return {
        "degraded": np.stack(deg).astype(np.float32),
        "truth": np.stack(tru).astype(np.float32),
        "kernels": _common_kernels(ker),
        "black": np.stack(blk).astype(np.float32),
        "noise": np.array(noi, dtype=np.float32),
        "fwhm": np.array(fw, dtype=np.float32),
    }
