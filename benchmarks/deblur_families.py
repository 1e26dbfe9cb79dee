"""Scene families for judging deblooming methods on scenes they were not tuned on.

Each family loader returns ``(truth, degraded, meta)``:

- ``truth``: (3, y, x) float64 *linear* DN (may exceed 255: lamps brighter than
  full scale), or None where no truth exists. Compare PSNR/SSIM and flux with
  ``clip_truth(truth)`` (rounded, clipped to 0-255, uint8: what a perfect 8-bit
  restoration would hold); lamp widths are measured on the linear truth. The
  sample AOI's truth is only stored clipped, so there the two are the same.
- ``degraded``: (3, y, x) uint8, what the sensor delivers.
- ``meta``: dict with ``family``, ``psf`` (the true kernel, where known),
  ``psf_fwhm_px``, ``linear_display`` (apply display gamma 0.5 in quicklooks) and
  a short ``note``.

Families (``FAMILIES``):

- ``aoi``: the sample AOI (sample_aoi/helsinki), centre crop.
- ``city_heldout``: geo_ntl's own simulator, seed ``HELD_OUT_SEED`` (training used
  city seeds 0-47).
- ``points_moffat31``, ``points_gauss_exp``, ``points_powerlaw_elliptical``: a
  different simulator written here (:func:`points_scene`): streets of point
  lamps along random lines, rows of lit windows, one floodlit block, a dim
  uniform background that belongs to the truth; an energy-conserving PSF;
  photon (Poisson) + read noise; rounded and clipped to uint8.
- ``prague_bubenec``: another real city's streets and buildings (Prague-Bubenec, the
  street network momepy ships; OpenStreetMap-derived), lit and rendered by geo_ntl's
  lighting model at 0.92 m (truth: linear radiance x 255, not clipped) and degraded by the
  point families' sensor (the Moffat PSF of ``points_moffat31``, photon + read noise), not
  by the training simulator; needs ``pip install momepy`` (the ``bench`` extra).
- ``jilin1_real``: the real Jilin-1 frame in ../shared/data/ntl_real, a crop around
  its street of isolated lamps (no truth; ``meta['lamp_sep']`` = 40 px: its lamps
  are about 30 px wide at the file's upscaled sampling).
- ``iss:CITY``: the six astronaut night photos of Japanese cities in
  ../shared/data/ntl_real/iss_japan (640 x 426 JPEG, each its own camera, exposure and
  blur; no truth): real night light from cameras nobody trained on, never used in training.
- ``dicm``: low-light photos from ../shared/data/lowlight_dicm (no truth; sanity
  only); ``dicm:NN`` picks photo NN.jpg (default 01).

Everything is deterministic given ``size`` and ``seed``. Families that need
../shared raise :class:`FamilyUnavailable` when it is absent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

ROOT = Path(__file__).resolve().parents[1]
AOI = ROOT / "sample_aoi" / "helsinki"
SHARED = ROOT.parent / "shared"
JILIN1 = SHARED / "data" / "ntl_real" / "jilin1_blooming_example.png"
DICM = SHARED / "data" / "lowlight_dicm"
ISS = SHARED / "data" / "ntl_real" / "iss_japan"
#: The ISS photos (file name prefixes): ``iss:fukuoka`` ... ``iss:tokyo_problem``.
ISS_PHOTOS = {
    "fukuoka": "Fukuoka_ISS035-E-14262.JPG",
    "nagoya": "Nagoya_ISS038-E-11205.JPG",
    "osaka": "Osaka_ISS030-E-184140.JPG",
    "sapporo": "Sapporo_ISS030-E-188140.JPG",
    "tokyo": "Tokyo_ISS030-E-82770.JPG",
    "tokyo_problem": "Problem_Tokyo_ISS038-E-36641.JPG",
}
#: The real scenes without truth that the deblooming criteria for real images apply to.
REAL_FAMILIES = ("jilin1_real", *(f"iss:{k}" for k in ISS_PHOTOS))

FAMILIES = (
    "aoi",
    "city_heldout",
    "points_moffat31",
    "points_gauss_exp",
    "points_powerlaw_elliptical",
    "prague_bubenec",
    "jilin1_real",
    *(f"iss:{k}" for k in ISS_PHOTOS),
    "dicm:01",
    "dicm:10",
)

#: Full-frame (y, x) of the Jilin-1 crops' centre: the street of isolated lamps in the
#: upper centre of the frame (the frame's centre holds only merged blooms).
JILIN1_CENTRE = (480, 1040)

SODIUM = np.array([1.0, 0.62, 0.28])
LED = np.array([1.0, 0.95, 0.85])


class FamilyUnavailable(RuntimeError):
    """The data a family needs is not on this machine (../shared is absent)."""


# ----------------------------------------------------------------------------- PSFs
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    h = size // 2
    return np.mgrid[-h : h + 1, -h : h + 1].astype(np.float64)


def psf_moffat(size: int = 31, *, fwhm: float = 5.0, beta: float = 1.6) -> np.ndarray:
    """Moffat with long wings (beta 1.6), normalised to sum 1 over the window."""
    alpha = fwhm / (2.0 * math.sqrt(2 ** (1 / beta) - 1))
    yy, xx = _grid(size)
    k = (1 + (yy**2 + xx**2) / alpha**2) ** (-beta)
    return k / k.sum()


def psf_gauss_exp(
    size: int = 41, *, fwhm: float = 4.0, halo_scale: float = 6.0, halo_share: float = 1 / 3
) -> np.ndarray:
    """Gaussian core (2/3 of the light) + exponential halo exp(-r / scale) (1/3)."""
    yy, xx = _grid(size)
    r = np.hypot(yy, xx)
    s = fwhm / 2.3548
    core = np.exp(-(r**2) / (2 * s**2))
    halo = np.exp(-r / halo_scale)
    k = (1 - halo_share) * core / core.sum() + halo_share * halo / halo.sum()
    return k / k.sum()


def psf_powerlaw_elliptical(
    size: int = 41,
    *,
    sigma_major: float = 3.2,
    sigma_minor: float = 1.8,
    angle_deg: float = 30.0,
    r0: float = 4.0,
    power: float = 3.0,
    halo_share: float = 0.3,
) -> np.ndarray:
    """Rotated elliptical Gaussian core + power-law halo ``(1 + r / r0) ** -power`` (30 %)."""
    yy, xx = _grid(size)
    t = math.radians(angle_deg)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    core = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
    halo = (1 + np.hypot(yy, xx) / r0) ** (-power)
    k = (1 - halo_share) * core / core.sum() + halo_share * halo / halo.sum()
    return k / k.sum()


def psf_fwhm(psf: np.ndarray) -> float:
    """Equivalent-disc FWHM (px) of a kernel: 2 sqrt(area above half max / pi), 8x upsampled."""
    up = ndimage.zoom(psf, 8, order=3)
    area = float((up >= 0.5 * up.max()).sum()) / 64.0
    return 2.0 * math.sqrt(area / math.pi)


def convolve_same(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Energy-conserving convolution of each band (reflect-padded, FFT)."""
    p = psf.shape[0] // 2
    out = []
    for band in image if image.ndim == 3 else image[None]:
        padded = np.pad(band, p, mode="reflect")
        out.append(fftconvolve(padded, psf, mode="same")[p:-p, p:-p])
    return np.stack(out)


# ------------------------------------------------------------------- points scenes
def points_scene(size: int, *, seed: int) -> np.ndarray:
    """Linear truth (3, size, size) DN of a night scene unlike geo_ntl's simulator.

    A dim uniform background (2-4 DN, part of the truth); 6-12 straight streets
    at random angles with a lamp every 14-30 px (small Gaussian light pools of
    FWHM 1.5-2.5 px, log-uniform flux 150-12000 DN px, sodium or LED colour);
    rows of lit windows (2-4 x 2-6 px rectangles, 30-120 DN) beside some streets;
    one floodlit block (60-140 px, 200-420 DN).
    """
    rng = np.random.default_rng(seed)
    h = w = size
    truth = np.empty((3, h, w))
    bg = rng.uniform(2.0, 4.0)
    truth[:] = bg * np.array([1.0, 0.95, 1.1])[:, None, None]
    # floodlit block
    bs = int(rng.integers(60, 141) * size / 1024) + 20
    by, bx = rng.integers(0, h - bs), rng.integers(0, w - bs)
    truth[:, by : by + bs, bx : bx + bs] += rng.uniform(200, 420) * LED[:, None, None]
    # lit windows along facades
    n_rows = int(rng.integers(8, 16) * (size / 1024) ** 2) + 4
    for _ in range(n_rows):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        horiz = rng.random() < 0.5
        n = int(rng.integers(4, 12))
        step = int(rng.integers(6, 11))
        for i in range(n):
            wy, wx = int(rng.integers(2, 5)), int(rng.integers(2, 7))
            yy, xx = (y0, x0 + i * step) if horiz else (y0 + i * step, x0)
            if rng.random() < 0.3:
                continue
            truth[:, yy : yy + wy, xx : xx + wx] += (
                rng.uniform(30, 120) * np.array([1.0, 0.85, 0.6])[:, None, None]
            )
    # streets of point lamps
    lam = np.zeros((3, h, w))
    n_streets = int(rng.integers(6, 13) * size / 1024) + 3
    for _ in range(n_streets):
        ang = rng.uniform(0, math.pi)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        spacing = rng.uniform(14, 30)
        colour = SODIUM if rng.random() < 0.6 else LED
        dy, dx = math.sin(ang), math.cos(ang)
        for t in np.arange(-1.5 * size, 1.5 * size, spacing):
            y = cy + t * dy + rng.normal(0, 0.7)
            x = cx + t * dx + rng.normal(0, 0.7)
            if not (2 <= y < h - 2 and 2 <= x < w - 2):
                continue
            flux = math.exp(rng.uniform(math.log(150), math.log(12000)))
            iy, ix = int(y), int(x)
            fy, fx = y - iy, x - ix  # bilinear splat of the lamp's flux
            for oy, ox, wgt in (
                (0, 0, (1 - fy) * (1 - fx)),
                (1, 0, fy * (1 - fx)),
                (0, 1, (1 - fy) * fx),
                (1, 1, fy * fx),
            ):
                lam[:, iy + oy, ix + ox] += flux * wgt * colour
    pool = rng.uniform(1.5, 2.5) / 2.3548
    lam = np.stack([ndimage.gaussian_filter(b, pool) for b in lam])
    return truth + lam


def degrade_points(
    truth: np.ndarray, psf: np.ndarray, *, seed: int, gain: float = 4.0, read_noise: float = 1.2
) -> np.ndarray:
    """Blur with ``psf`` (energy conserving), photon + read noise, round, clip to uint8.

    ``gain`` is electrons per DN (Poisson on ``truth * gain``); ``read_noise`` in DN.
    """
    rng = np.random.default_rng(seed)
    blurred = np.clip(convolve_same(truth, psf), 0, None)
    noisy = rng.poisson(blurred * gain) / gain + rng.normal(0, read_noise, blurred.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def clip_truth(truth: np.ndarray) -> np.ndarray:
    """The truth as a perfect 8-bit restoration would hold it: rounded, clipped, uint8."""
    return np.clip(np.round(truth), 0, 255).astype(np.uint8)


def _centre_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[-2:]
    sy, sx = min(size, h), min(size, w)
    y0, x0 = (h - sy) // 2, (w - sx) // 2
    return arr[..., y0 : y0 + sy, x0 : x0 + sx]


_POINT_PSFS = {
    "points_moffat31": (psf_moffat, "Moffat beta 1.6, FWHM 5 px, 31 px window"),
    "points_gauss_exp": (
        psf_gauss_exp,
        "Gaussian core FWHM 4 px + exponential halo (scale 6 px, 1/3 of the light), 41 px window",
    ),
    "points_powerlaw_elliptical": (
        psf_powerlaw_elliptical,
        "elliptical Gaussian core "
        "(sigma 3.2 x 1.8 px, 30 deg) + power-law halo "
        "(1 + r/4)^-3 (30 %), 41 px window",
    ),
}


def load_family(name: str, size: int = 512, *, seed: int = 0) -> tuple[Any, np.ndarray, dict]:
    """Return ``(truth_linear_or_None, degraded_uint8, meta)`` of one family.

    Parameters
    ----------
    name : str
        One of :data:`FAMILIES` (``dicm:NN`` for photo NN).
    size : int, default 512
        Scene side in pixels (real data are centre-cropped to at most this).
    seed : int, default 0
        Seed of the simulated families (added to the family's own offset).

    Raises
    ------
    FamilyUnavailable
        If the family's data are not on this machine.
    ValueError
        For an unknown family name.
    """
    if name == "aoi":
        import rasterio

        from geo_ntl.simulate.psf import moffat_psf

        with rasterio.open(AOI / "scene.tif") as s, rasterio.open(AOI / "truth.tif") as t:
            scene, truth = s.read(), t.read()
        psf = moffat_psf(15, alpha=3.0, beta=2.5).astype(np.float64)
        meta = {
            "psf": psf / psf.sum(),
            "linear_display": True,
            "note": "sample AOI centre crop; truth stored clipped (linear = clipped); "
            "also 5x5 dilation bloom, misregistration",
        }
        return (
            _centre_crop(truth, size).astype(np.float64),
            _centre_crop(scene, size),
            _meta(name, meta),
        )
    if name == "city_heldout":
        from geo_ntl.deblur.blur_transfer import HELD_OUT_SEED
        from geo_ntl.simulate.city import synthetic_city
        from geo_ntl.simulate.psf import moffat_psf

        clean, degraded = synthetic_city(
            (size, size), seed=HELD_OUT_SEED + seed, lamp_density=1.0, sky_glow=0.04
        )
        psf = moffat_psf(15, alpha=3.0, beta=2.5).astype(np.float64)
        meta = {
            "psf": psf / psf.sum(),
            "linear_display": True,
            "seed": HELD_OUT_SEED + seed,
            "note": "geo_ntl simulator, held-out seed; truth stored clipped",
        }
        return clean.astype(np.float64), degraded, _meta(name, meta)
    if name in _POINT_PSFS:
        fn, note = _POINT_PSFS[name]
        psf = fn()
        sseed = 1000 + 10 * list(_POINT_PSFS).index(name) + seed
        truth = points_scene(size, seed=sseed)
        degraded = degrade_points(truth, psf, seed=sseed + 1)
        meta = {"psf": psf, "linear_display": True, "seed": sseed, "note": note}
        return truth, degraded, _meta(name, meta)
    if name == "prague_bubenec":
        truth = prague_radiance(seed=seed)
        psf = psf_moffat()
        degraded = degrade_points(truth, psf, seed=2000 + seed)
        meta = {
            "psf": psf,
            "linear_display": True,
            "note": "Prague-Bubenec streets and buildings (momepy's bundled data) lit by "
            "geo_ntl's lighting model; Moffat beta 1.6 blur, photon + read noise",
        }
        return _centre_crop(truth, size), _centre_crop(degraded, size), _meta(name, meta)
    if name == "jilin1_real":
        if not JILIN1.exists():
            raise FamilyUnavailable(f"{JILIN1} is absent (../shared is only beside a checkout)")
        from PIL import Image

        img = np.asarray(Image.open(JILIN1).convert("RGB")).transpose(2, 0, 1)
        h, w = img.shape[1:]
        s = min(size, h, w)
        y0 = int(np.clip(JILIN1_CENTRE[0] - s // 2, 0, h - s))
        x0 = int(np.clip(JILIN1_CENTRE[1] - s // 2, 0, w - s))
        meta = {
            "psf": None,
            "linear_display": False,
            "lamp_sep": 40,
            "origin": [y0, x0],
            "note": "real Jilin-1 (2140^2 PNG, upscaled; lamps ~30 px wide at this "
            "sampling), crop centred on its street of isolated lamps; no truth",
        }
        return None, np.ascontiguousarray(img[:, y0 : y0 + s, x0 : x0 + s]), _meta(name, meta)
    if name.startswith("iss:"):
        photo = ISS_PHOTOS.get(name.split(":", 1)[1])
        if photo is None:
            raise ValueError(f"unknown ISS photo {name!r}; choose from {', '.join(ISS_PHOTOS)}")
        note = f"real ISS astronaut photo {photo} (640 x 426 JPEG, own camera and blur); no truth"
        return _photo(name, ISS / photo, size, note=note + "; never trained on", lamp_sep=8)
    if name == "dicm" or name.startswith("dicm:"):
        photo = name.split(":", 1)[1] if ":" in name else "01"
        note = f"DICM low-light photo {photo}.jpg (gamma-encoded); sanity only"
        return _photo(name, DICM / f"{photo}.jpg", size, note=note)
    raise ValueError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")


def _photo(
    name: str, path: Path, size: int, *, note: str, lamp_sep: int | None = None
) -> tuple[None, np.ndarray, dict]:
    """A real photo without truth, centre-cropped to ``size``."""
    if not path.exists():
        raise FamilyUnavailable(f"{path} is absent (../shared is only beside a checkout)")
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    meta: dict[str, Any] = {"psf": None, "linear_display": False, "note": note}
    if lamp_sep is not None:
        meta["lamp_sep"] = lamp_sep
    return None, np.ascontiguousarray(_centre_crop(img, size)), _meta(name, meta)


def prague_radiance(*, seed: int = 0) -> np.ndarray:
    """Render Prague-Bubenec's streets and buildings as a clean night scene (linear DN).

    The streets (35 lines, no OSM tags: each taken as ``residential``) and 144 buildings of
    momepy's ``bubenec`` dataset, reprojected to UTM 33N, lit by
    :func:`geo_ntl.simulate.lighting.light_scene` and rendered at 0.92 m; radiance x 255,
    lamps above full scale kept.
    """
    try:
        import geopandas as gpd
        import momepy
    except ImportError as exc:
        raise FamilyUnavailable(f"momepy is not installed (pip install momepy): {exc}") from exc
    from geo_ntl.simulate.aoi import aoi_grid
    from geo_ntl.simulate.layers import VectorScene, empty_layer
    from geo_ntl.simulate.lighting import light_scene
    from geo_ntl.simulate.render import render_scene

    path = momepy.datasets.get_path("bubenec")
    crs = "EPSG:32633"
    streets = gpd.read_file(path, layer="streets").to_crs(crs)
    streets["highway"] = "residential"
    buildings = gpd.read_file(path, layer="buildings").to_crs(crs)
    scene = VectorScene(
        roads=streets[["highway", "geometry"]],
        buildings=buildings[["geometry"]],
        floodlit=empty_layer(crs),
        permeable=empty_layer(crs),
        water=empty_layer(crs),
    )
    lit = light_scene(scene, seed=3000 + seed)
    transform, shape = aoi_grid(lit.roads.total_bounds)
    radiance = render_scene(lit, transform=transform, shape=shape, seed=3000 + seed)
    return np.asarray(radiance, dtype=np.float64) * 255.0


def _meta(name: str, meta: dict) -> dict:
    meta["family"] = name
    meta["psf_fwhm_px"] = round(psf_fwhm(meta["psf"]), 2) if meta.get("psf") is not None else None
    return meta
