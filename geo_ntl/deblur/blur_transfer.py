"""Blur transfer: (blurred, sharp) training pairs made from sharp night-light images.

NTL-Db-Net has no sharp/blurred pairs of real scenes, so it makes them: each
blurred image is ``STYLE_MIX x style(sharp) + (1 - STYLE_MIX) x physical(sharp)``,
and a quarter as many all-black pairs are added so darkness stays dark.

Sharp images come from procedural cities (:func:`geo_ntl.simulate.synthetic_city`)
with varied seeds, lamp densities, PSFs and noise; the sample AOI is never used.

Physical blur
    :func:`geo_ntl.simulate.degrade`: 5x5 grey dilation, normalised 15x15
    Moffat PSF, then photon/read noise, band misregistration and clipping.
    Unlike the paper's plain dilation, the simulator's dilation *shares* a
    source's flux instead of copying it, so the network learns to move light
    back into lamps rather than to delete light (flux conservation is one of
    our acceptance criteria). PSF width and wings, dilation, exposure and
    noise are drawn per city (:data:`PHYSICAL_RANGES`).

Style transfer, with VGG-16 weights (``--vgg-weights``)
    Gatys-style optimisation of the image, started from the physical blur,
    minimising a content loss (VGG-16 relu3_3 features of the sharp image) and
    Gram-matrix style losses against real blurred images, computed separately
    inside the bright (lit pixels), blooming (bright dilated by a 9x9 max-pool
    minus bright) and background masks, weighted 1, 0.2 and 0.1.

Style transfer, substitute (no VGG weights)
    A parametric degradation fitted to statistics of *real* blooming measured
    by :mod:`geo_ntl.deblur.real_stats` (shipped: the real Jilin-1 example):
    the sharp image is convolved with a flux-conserving halo kernel whose
    radial profile is the measured halo profile (radius jittered x0.7-1.4),
    the halo light is tinted with the measured halo colour, and noise with
    the measured grain (Gaussian correlation fitted to the measured noise
    autocorrelation) and relative level is added.

Compression
    Scenes reach users as JPEG too (the real Jilin-1 crop is one): half the
    cities' blurred images (:data:`JPEG_FRACTION`) are JPEG-compressed at a
    quality drawn from :data:`JPEG_QUALITY` (Pillow), from a random stream of
    their own, so the other draws of a pool do not move.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, signal

from geo_ntl.exceptions import MissingDependencyError

__all__ = [
    "STYLE_MIX",
    "BLACK_FRACTION",
    "PHYSICAL_RANGES",
    "LAMP_DENSITY_RANGE",
    "SKY_GLOW_RANGE",
    "MASK_WEIGHTS",
    "PairPool",
    "physical_blur",
    "style_substitute",
    "style_vgg",
    "halo_kernel",
    "nightlight_masks",
    "jpeg_roundtrip",
    "make_pool",
    "refresh_pool",
    "sample_batch",
]

#: Weight of the style-transferred image in the blend (the paper's 0.5).
STYLE_MIX = 0.5
#: All-black pairs per regular pair (a quarter as many).
BLACK_FRACTION = 0.25
#: Lamp densities (relative) drawn uniformly per city.
LAMP_DENSITY_RANGE = (0.3, 2.5)
#: Ambient sky-glow radiance (full scale = 1) drawn uniformly per city.
SKY_GLOW_RANGE = (0.01, 0.08)
#: Ranges drawn uniformly per city for the physical degradation.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "exposure": (0.8, 1.6),
    "full_well": (150.0, 1000.0),
    "read_noise": (0.005, 0.035),
    "noise_grain": (0.5, 1.2),
    "max_shift": (0.0, 0.7),
}
#: Share of the cities whose blurred image is JPEG-compressed.
JPEG_FRACTION = 0.5
#: JPEG quality range (inclusive) drawn for a compressed city.
JPEG_QUALITY = (60, 95)
#: Share of the pool's cities that :func:`refresh_pool` replaces.
REFRESH_FRACTION = 0.25
#: First seed of refreshed cities: their city seeds (100_000 per pool seed, as in
#: :func:`make_pool`) lie far from the training pools' and the held-out evaluation cities'.
REFRESH_SEED_BASE = 50_000
#: Dilation sizes drawn per city (the paper's 5 most often; 1: none, blur alone).
DILATIONS = (1, 1, 3, 5, 5, 7)
#: Style-loss weights inside the bright, blooming and background masks.
MASK_WEIGHTS = (1.0, 0.2, 0.1)
#: Intensity (0..1) above which a pixel is "bright" (lit) for the masks.
BRIGHT_LEVEL = 0.35
#: Max-pool window that grows the bright mask into the blooming mask.
BLOOM_POOL = 9
#: Seed offset of held-out evaluation cities (never used in training).
HELD_OUT_SEED = 10_000_000


def physical_blur_options(rng: np.random.Generator) -> dict:
    """Draw one set of :func:`geo_ntl.simulate.degrade` options (PSF included).

    The PSF comes from :func:`geo_ntl.simulate.psf.random_psf` (Moffat, Gaussian + exponential
    halo or elliptical Gaussian, FWHM 1.5-10 px, windows that hold the wings); power-law halos
    are kept out of training (a held-out family of ``benchmarks/bench_deblur_families.py``).
    """
    from geo_ntl.simulate.psf import random_psf

    psf, _ = random_psf(rng)
    r = {k: float(rng.uniform(*v)) for k, v in PHYSICAL_RANGES.items()}
    return {"psf": psf, "dilation": int(rng.choice(DILATIONS)), **r}


def physical_blur(sharp: np.ndarray, *, seed: int, **options: Any) -> np.ndarray:
    """Blur a sharp uint8 (3, y, x) image with :func:`geo_ntl.simulate.degrade`.

    Parameters
    ----------
    sharp : (3, y, x) ndarray of uint8
        Sharp image.
    seed : int
        Noise seed.
    **options
        Passed to ``degrade`` (``psf``, ``dilation``, noise options).

    Returns
    -------
    (3, y, x) ndarray of uint8
    """
    from geo_ntl.simulate.degrade import degrade

    return degrade(sharp, seed=seed, **options)


def halo_kernel(profile: list[float] | np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """Turn a radial halo profile into a normalised 2-D kernel.

    Parameters
    ----------
    profile : sequence of float
        Relative intensity at distances 0, 1, 2, ... native pixels outside a
        bright core (``profile[0] == 1``).
    scale : float, default 1
        Stretch of the radius (> 1: wider halo).

    Returns
    -------
    (k, k) ndarray of float32
        Radially symmetric, non-negative, sums to 1.
    """
    prof = np.clip(np.asarray(profile, dtype=np.float64), 0.0, None)
    # Subtract the far-field level so the kernel falls to zero at its edge.
    prof = np.clip(prof - prof[-1], 0.0, None)
    radius = int(math.ceil((len(prof) - 1) * scale))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    r = np.hypot(yy, xx) / scale
    k = np.interp(r, np.arange(len(prof)), prof, right=0.0)
    return (k / k.sum()).astype(np.float32)


def _grain_sigma(noise_corr: list[float]) -> float:
    """Gaussian grain sigma (px) whose filtered white noise has the measured lag-1 correlation."""
    c1 = float(np.clip(noise_corr[0], 0.05, 0.95))
    return math.sqrt(-1.0 / (4.0 * math.log(c1)))


def style_substitute(sharp: np.ndarray, *, stats: dict, rng: np.random.Generator) -> np.ndarray:
    """Degrade a sharp image so its blooming matches measured real-blooming statistics.

    Parameters
    ----------
    sharp : (3, y, x) ndarray of uint8
        Sharp image.
    stats : dict
        Statistics from :func:`geo_ntl.deblur.real_stats.measure_blooming_stats`.
    rng : numpy.random.Generator
        Random source (halo width, halo strength, noise).

    Returns
    -------
    (3, y, x) ndarray of uint8
        The "style-transferred" image (see the module docstring).
    """
    x = sharp.astype(np.float32) / 255.0
    kernel = halo_kernel(stats["halo_profile"], scale=float(rng.uniform(0.7, 1.4)))
    frac = float(rng.uniform(0.4, 0.85))
    pad = kernel.shape[0] // 2
    halo = np.stack(
        [signal.fftconvolve(np.pad(b, pad, mode="reflect"), kernel, mode="valid") for b in x]
    )
    spread = (1.0 - frac) * x + frac * halo
    delta = spread - x
    tint = np.asarray(stats["colour"]["halo"], dtype=np.float32)
    tint = tint / tint.mean()
    gain = np.where(delta > 0, tint[:, None, None], 1.0).astype(np.float32)
    out = x + delta * gain
    sigma = _grain_sigma(stats["noise_corr"])
    level = float(stats["noise_rel_std"]) * float(rng.uniform(0.5, 2.0))
    noise = rng.standard_normal(out.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, (0, sigma, sigma))
    noise /= max(float(noise.std()), 1e-6)
    # Shot-like: noise grows with the square root of the signal.
    out = out + level * noise * (1.0 + 3.0 * np.sqrt(np.clip(out, 0.0, None)))
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def nightlight_masks(x01: Any, *, bright_level: float = BRIGHT_LEVEL) -> Any:
    """Bright, blooming and background masks of a (N, 3, H, W) torch batch in [0, 1].

    Returns a (N, 3, H, W) float tensor whose channels are the three masks.
    """
    import torch
    import torch.nn.functional as F

    inten = x01.mean(dim=1, keepdim=True)
    bright = (inten >= bright_level).float()
    grown = F.max_pool2d(bright, BLOOM_POOL, stride=1, padding=BLOOM_POOL // 2)
    bloom = grown - bright
    back = 1.0 - grown
    return torch.cat([bright, bloom, back], dim=1)


def _masked_grams(feats: list, masks: Any) -> list:
    import torch.nn.functional as F

    grams = []
    for f in feats:
        m = F.interpolate(masks, size=f.shape[-2:], mode="area")
        per_mask = []
        for j in range(m.shape[1]):
            mj = m[:, j : j + 1]
            fm = (f * mj).flatten(2)
            denom = mj.sum(dim=(1, 2, 3)).clamp_min(1.0)[:, None, None] * f.shape[1]
            per_mask.append(fm @ fm.transpose(1, 2) / denom)
        grams.append(per_mask)
    return grams


def style_vgg(
    sharp: np.ndarray,
    start: np.ndarray,
    *,
    vgg16: Any,
    style_images: list[np.ndarray],
    steps: int = 60,
    lr: float = 0.02,
    content_weight: float = 1.0,
    style_weight: float = 1e4,
) -> np.ndarray:
    """Gram-matrix style transfer toward real blurred images (needs VGG-16 weights).

    Parameters
    ----------
    sharp : (3, y, x) ndarray of uint8
        Content image.
    start : (3, y, x) ndarray of uint8
        Initial image (the physical blur).
    vgg16 : torch.nn.Sequential
        Frozen VGG-16 features (:func:`geo_ntl.deblur.vgg.load_vgg_features`).
    style_images : list of (3, h, w) ndarray of float32 in [0, 1]
        Real blurred images.
    steps : int, default 60
        Adam steps.
    lr : float, default 0.02
        Adam learning rate.
    content_weight, style_weight : float
        Loss weights.

    Returns
    -------
    (3, y, x) ndarray of uint8
    """
    import torch

    from geo_ntl.deblur.vgg import STYLE_LAYERS, imagenet_normalise

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], imagenet_normalise(x)
        for i, layer in enumerate(vgg16):
            h = layer(h)
            if i in STYLE_LAYERS:
                out.append(h)
            if i >= max(STYLE_LAYERS):
                break
        return out

    with torch.no_grad():
        content_t = torch.from_numpy(sharp.astype(np.float32) / 255.0)[None]
        content_f = feats(content_t)[2]
        content_masks = nightlight_masks(content_t)
        targets = []
        for s in style_images:
            st = torch.from_numpy(np.asarray(s, dtype=np.float32))[None]
            targets.append(_masked_grams(feats(st), nightlight_masks(st)))
        target = [
            [sum(t[li][j] for t in targets) / len(targets) for j in range(3)]
            for li in range(len(STYLE_LAYERS))
        ]
    x = torch.from_numpy(start.astype(np.float32) / 255.0)[None].requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        fx = feats(x.clamp(0, 1))
        grams = _masked_grams(fx, content_masks)
        style = sum(
            w * torch.mean((grams[li][j] - target[li][j]) ** 2)
            for li in range(len(fx))
            for j, w in enumerate(MASK_WEIGHTS)
        )
        loss = content_weight * torch.mean((fx[2] - content_f) ** 2) + style_weight * style
        loss.backward()
        opt.step()
    out = x.detach().clamp(0, 1)[0].numpy()
    return np.round(out * 255.0).astype(np.uint8)


@dataclass
class PairPool:
    """A pool of full-size training pairs from which crops are drawn.

    Attributes
    ----------
    blurred, sharp : (N, 3, H, W) ndarray of uint8
        Pairs; the last ``n_black`` are the all-black pairs.
    n_black : int
        Number of all-black pairs.
    meta : list of dict
        Per-pair parameters (seed, lamp density, PSF, noise, style mix).
    """

    blurred: np.ndarray
    sharp: np.ndarray
    n_black: int
    meta: list = field(default_factory=list)
    #: Refreshes applied (:func:`refresh_pool`); 0 for a pool as :func:`make_pool` made it.
    generation: int = 0

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the pool to a compressed ``.npz``, atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez_compressed(
                f,
                blurred=self.blurred,
                sharp=self.sharp,
                n_black=np.int64(self.n_black),
                generation=np.int64(self.generation),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PairPool:
        """Read a pool written by :meth:`save` (one written before refreshes existed is generation 0)."""
        with np.load(path) as z:
            generation = int(z["generation"]) if "generation" in z.files else 0
            return cls(z["blurred"], z["sharp"], int(z["n_black"]), generation=generation)


def _jpeg_quality(city_seed: int) -> int | None:
    """JPEG quality of a city's blurred image, or None (not compressed); its own stream."""
    rng = np.random.default_rng([city_seed, 0x4A504547])  # "JPEG"
    if rng.random() >= JPEG_FRACTION:
        return None
    return int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))


def jpeg_roundtrip(image: np.ndarray, quality: int | None) -> np.ndarray:
    """Compress a uint8 ``(3, y, x)`` image as JPEG at ``quality`` and decode it (None: as is).

    Examples
    --------
    >>> img = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    >>> out = jpeg_roundtrip(img, 75)
    >>> out.shape, out.dtype, bool((out != img).any())
    ((3, 32, 32), dtype('uint8'), True)
    """
    if quality is None:
        return image
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
        buffer, format="JPEG", quality=quality
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1).copy()


def make_pool(
    *,
    n_cities: int,
    size: int,
    seed: int,
    stats: dict,
    vgg16: Any = None,
    style_images: list[np.ndarray] | None = None,
    progress: Callable[[], object] | None = None,
) -> PairPool:
    """Make a pool of blur-transfer pairs from procedural cities.

    Parameters
    ----------
    n_cities : int
        Number of sharp cities.
    size : int
        Side of each city image in pixels.
    seed : int
        Master seed; city ``i`` uses ``seed * 100_000 + i`` (held-out
        evaluation cities use seeds from :data:`HELD_OUT_SEED` up).
    stats : dict
        Real-blooming statistics for the substitute style step.
    vgg16 : torch.nn.Sequential, optional
        VGG-16 features; with ``style_images`` selects the VGG style transfer.
    style_images : list of ndarray, optional
        Real blurred images (float (3, h, w) in [0, 1]).
    progress : callable, optional
        Called with no argument after each city.

    Returns
    -------
    PairPool
    """
    try:
        from geo_ntl.simulate.city import synthetic_city
    except ImportError as exc:  # pragma: no cover - the simulator ships with geo_ntl
        raise MissingDependencyError(f"geo_ntl.simulate is unavailable: {exc}") from exc
    rng = np.random.default_rng(seed)
    blurred, sharp, meta = [], [], []
    for i in range(n_cities):
        city_seed = seed * 100_000 + i
        density = float(rng.uniform(*LAMP_DENSITY_RANGE))
        glow = float(rng.uniform(*SKY_GLOW_RANGE))
        opts = physical_blur_options(rng)
        clean, physical = synthetic_city(
            (size, size), seed=city_seed, lamp_density=density, sky_glow=glow, **opts
        )
        # The sensor's exposure scales the truth too: the target is what an
        # unblurred sensor with the same exposure would record (clipped).
        clean = np.round(np.clip(clean.astype(np.float32) * opts["exposure"], 0, 255)).astype(
            np.uint8
        )
        if vgg16 is not None and style_images:
            styled = style_vgg(clean, physical, vgg16=vgg16, style_images=style_images)
        else:
            styled = style_substitute(clean, stats=stats, rng=rng)
        mix = STYLE_MIX if rng.random() < 0.5 else float(rng.uniform(0.0, 1.0))
        out = mix * styled.astype(np.float32) + (1.0 - mix) * physical.astype(np.float32)
        quality = _jpeg_quality(city_seed)
        blurred.append(jpeg_roundtrip(np.round(out).astype(np.uint8), quality))
        sharp.append(clean)
        meta.append(
            {
                "seed": city_seed,
                "lamp_density": density,
                "sky_glow": glow,
                "style_mix": mix,
                "dilation": opts["dilation"],
                "exposure": opts["exposure"],
                "jpeg_quality": quality,
            }
        )
        if progress is not None:
            progress()
    n_black = max(1, int(round(n_cities * BLACK_FRACTION)))
    for _ in range(n_black):
        level = float(rng.uniform(0.0, 0.02))
        noise = np.abs(rng.normal(0.0, level, (3, size, size))).astype(np.float32)
        blurred.append(np.round(np.clip(noise, 0, 1) * 255.0).astype(np.uint8))
        sharp.append(np.zeros((3, size, size), dtype=np.uint8))
        meta.append({"black": True, "noise": level})
    return PairPool(np.stack(blurred), np.stack(sharp), n_black, meta)


def refresh_pool(
    pool: PairPool,
    generation: int,
    *,
    size: int,
    seed: int,
    stats: dict,
    vgg16: Any = None,
    style_images: list[np.ndarray] | None = None,
) -> PairPool:
    """Return ``pool`` with :data:`REFRESH_FRACTION` of its cities replaced by new ones.

    Refresh number ``generation`` (1, 2, ...) makes its cities with :func:`make_pool` from the
    seed ``REFRESH_SEED_BASE + 1000 * seed + generation`` and puts them in the slots after the
    previous refresh's (round robin over the cities; the all-black pairs stay), so the pool
    after ``g`` refreshes depends only on ``seed`` and ``g``: a resumed run redraws it exactly.

    Parameters
    ----------
    pool : PairPool
        The pool after refresh ``generation - 1``.
    generation : int
        The refresh to apply (>= 1).
    size, seed, stats, vgg16, style_images
        As given to :func:`make_pool` for the first pool.

    Returns
    -------
    PairPool
        A new pool whose ``generation`` is ``generation``.
    """
    n_cities = len(pool.blurred) - pool.n_black
    k = max(1, int(round(n_cities * REFRESH_FRACTION)))
    fresh = make_pool(
        n_cities=k,
        size=size,
        seed=REFRESH_SEED_BASE + 1000 * seed + generation,
        stats=stats,
        vgg16=vgg16,
        style_images=style_images,
    )
    slots = [((generation - 1) * k + j) % n_cities for j in range(k)]
    blurred, sharp = pool.blurred.copy(), pool.sharp.copy()
    blurred[slots], sharp[slots] = fresh.blurred[:k], fresh.sharp[:k]
    return PairPool(blurred, sharp, pool.n_black, generation=generation)


def sample_batch(
    pool: PairPool, *, batch: int, crop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a batch of aligned random crops with random flips and 90-degree rotations.

    Parameters
    ----------
    pool : PairPool
        Source pairs.
    batch : int
        Number of crops.
    crop : int
        Crop side in pixels (<= the pool image side).
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    blurred, sharp : (batch, 3, crop, crop) ndarray of float32 in [-1, 1]
    """
    n, _, h, w = pool.blurred.shape
    xs, ys = [], []
    for _ in range(batch):
        k = int(rng.integers(n))
        y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        a = pool.blurred[k, :, y0 : y0 + crop, x0 : x0 + crop]
        b = pool.sharp[k, :, y0 : y0 + crop, x0 : x0 + crop]
        rot = int(rng.integers(4))
        a, b = np.rot90(a, rot, axes=(1, 2)), np.rot90(b, rot, axes=(1, 2))
        if rng.random() < 0.5:
            a, b = a[:, :, ::-1], b[:, :, ::-1]
        xs.append(a)
        ys.append(b)
    to = lambda v: np.stack(v).astype(np.float32) / 127.5 - 1.0  # noqa: E731
    return to(xs), to(ys)
