"""Measure the statistics of real blooming on real blurred night-light images.

These statistics drive the weight-free substitute of the blur-transfer style
step (:mod:`geo_ntl.deblur.blur_transfer`). They describe *shape*, not
radiometry, so they can be measured on display images (8-bit, JPEG, resized):

``halo_profile``
    Mean normalised intensity ``(I(d) - bg) / (I_core - bg)`` at distance ``d``
    (native pixels, 0..``PROFILE_LENGTH``) outside saturated bright blobs:
    how fast blooming falls off around lamps.
``noise_corr``
    Autocorrelation of the high-pass residual of dark areas at lags 1..8
    (native pixels): the grain of the noise (its spectrum's shape).
``noise_rel_std``
    Standard deviation of that residual divided by the image's dynamic range.
``colour``
    Chromaticity ``(r, g, b) / (r + g + b)`` of bright cores, halo rings and
    background.
``upscale``
    Estimated resampling factor of the image, from the noise correlation
    length (distances above are converted to native pixels with it).

The shipped measurement, made on the real Jilin-1 example (panel (a) of the
NTL-Db-Net README figure, ``../shared/data/ntl_real/jilin1_blooming_example.png``)
lives in ``geo_ntl/data/jilin1_blooming_stats.json`` so training works without
the shared folder. ``geo-ntl train --real-blurred DIR`` measures a user's own
images instead and averages them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from geo_ntl.exceptions import InputError

__all__ = [
    "PROFILE_LENGTH",
    "SATURATION_LEVEL",
    "SHIPPED_STATS",
    "measure_blooming_stats",
    "measure_images",
    "load_shipped_stats",
    "load_image_rgb",
]

#: Length of the radial halo profile in native pixels.
PROFILE_LENGTH = 12
#: Intensity (0..1) above which a pixel counts as a saturated bright core.
SATURATION_LEVEL = 0.97
#: Noise lags (native pixels) of the stored autocorrelation.
NOISE_LAGS = 8
#: Autocorrelation at which the correlation length is read; a nearly white
#: native sensor noise reaches it at about one pixel, which calibrates ``upscale``.
CORR_LEVEL = 0.5
#: File name of the shipped statistics (in ``geo_ntl/data``).
SHIPPED_STATS = "jilin1_blooming_stats.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def load_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1], shape (3, y, x).

    GeoTIFFs are read with rasterio and scaled by their dtype's (or data's)
    maximum; other formats with Pillow. One-band images are replicated.
    """
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(p) as src:
            arr = src.read().astype(np.float32)
            dt = src.dtypes[0]
        top = 255.0 if dt == "uint8" else float(np.nanmax(arr)) or 1.0
        arr = np.nan_to_num(arr) / top
    else:
        from PIL import Image

        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    if arr.shape[0] != 3:
        raise InputError(f"{p}: expected 1 or 3 bands for a real blurred image, got {arr.shape[0]}")
    return np.clip(arr, 0.0, 1.0)


def _noise_corr(intensity: np.ndarray, max_lag: int) -> tuple[np.ndarray, float]:
    smooth = ndimage.gaussian_filter(intensity, 8)
    res = intensity - smooth
    dark = smooth < np.percentile(smooth, 40)
    corr = []
    for lag in range(1, max_lag + 1):
        m = dark[:, :-lag] & dark[:, lag:]
        x, y = res[:, :-lag][m], res[:, lag:][m]
        corr.append(float(np.corrcoef(x, y)[0, 1]) if x.size > 10 else 0.0)
    return np.asarray(corr), float(res[dark].std())


def measure_blooming_stats(image: np.ndarray) -> dict:
    """Measure halo profile, noise grain, noise level and colours of one image.

    Parameters
    ----------
    image : (3, y, x) ndarray
        RGB in [0, 1].

    Returns
    -------
    dict
        JSON-serialisable statistics (see the module docstring); ``n_blobs``
        says how many bright blobs the profile averages.

    Raises
    ------
    InputError
        If the image has no saturated bright blob or is too small.
    """
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 64:
        raise InputError(f"expected a (3, y, x) RGB image of at least 64x64, got {image.shape}")
    intensity = image.mean(axis=0)
    corr_full, noise_std = _noise_corr(intensity, 4 * NOISE_LAGS * 4)
    below = np.nonzero(corr_full < CORR_LEVEL)[0]
    corr_len = float(below[0] + 1) if below.size else float(corr_full.size)
    upscale = max(1.0, corr_len)
    lags_native = np.arange(1, NOISE_LAGS + 1) * upscale
    corr_native = np.interp(lags_native, np.arange(1, corr_full.size + 1), corr_full, right=0.0)

    bright = intensity >= SATURATION_LEVEL
    bg = float(np.percentile(intensity, 20))
    labels, n = ndimage.label(bright)
    if n == 0:
        raise InputError("no saturated bright blob found; a real blooming image needs lit lamps")
    dist = ndimage.distance_transform_edt(~bright)
    nearest = ndimage.distance_transform_edt(~bright, return_distances=False, return_indices=True)
    owner = labels[nearest[0], nearest[1]]
    sizes = ndimage.sum(bright, labels, np.arange(1, n + 1))
    profile_len_img = int(np.ceil(PROFILE_LENGTH * upscale))
    d_img = np.arange(profile_len_img + 1)
    profiles = []
    boxes = ndimage.find_objects(labels)
    reach = profile_len_img + 1
    for k in np.nonzero(sizes >= 4)[0] + 1:
        box = boxes[k - 1]
        win = tuple(
            slice(max(sl.start - reach, 0), min(sl.stop + reach, n_px))
            for sl, n_px in zip(box, intensity.shape, strict=True)
        )
        sel, dk, ik, lk = owner[win] == k, np.rint(dist[win]), intensity[win], labels[win]
        means: list[float] = []
        for d in d_img:
            m = sel & (dk == d) if d > 0 else lk == k
            means.append(float(ik[m].mean()) if m.any() else np.nan)
        vals = np.asarray(means)
        core = vals[0]
        if not np.isfinite(core) or core - bg < 0.2:
            continue
        profiles.append((vals - bg) / (core - bg))
    if not profiles:
        raise InputError("no bright blob with a measurable halo found")
    prof_img = np.nanmedian(np.asarray(profiles), axis=0)
    d_native = np.arange(PROFILE_LENGTH + 1) * upscale
    prof_native = np.clip(np.interp(d_native, d_img, prof_img), 0.0, 1.0)

    ring = (dist > 0) & (dist <= 4 * upscale)
    back = (dist > 2 * profile_len_img) & (intensity < np.percentile(intensity, 50))

    def chroma(mask: np.ndarray) -> list[float]:
        rgb = image[:, mask].mean(axis=1) if mask.any() else np.full(3, 1 / 3)
        return [float(v) for v in rgb / max(rgb.sum(), 1e-6)]

    return {
        "halo_profile": [float(v) for v in prof_native],
        "noise_corr": [float(v) for v in corr_native],
        "noise_rel_std": float(noise_std),
        "colour": {"core": chroma(bright), "halo": chroma(ring), "background": chroma(back)},
        "upscale": float(upscale),
        "n_blobs": len(profiles),
        "bright_fraction": float(bright.mean()),
    }


def measure_images(paths: Sequence[str | os.PathLike[str]]) -> dict:
    """Measure several real blurred images (files or folders) and average the statistics.

    Parameters
    ----------
    paths : list of path
        Image files, or folders whose ``.png/.jpg/.tif`` files are all used.

    Returns
    -------
    dict
        Averaged statistics, with ``"sources"`` listing the file names.

    Raises
    ------
    InputError
        If no usable image is found.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"real blurred image path {str(p)!r} does not exist")
    stats = []
    for f in files:
        try:
            stats.append(measure_blooming_stats(load_image_rgb(f)))
        except InputError:
            continue
    if not stats:
        raise InputError(
            f"no usable real blurred image in {[str(p) for p in paths]}: each needs saturated "
            "lamps with halos (RGB png/jpg/tif)"
        )
    out: dict = {
        "halo_profile": np.mean([s["halo_profile"] for s in stats], axis=0).tolist(),
        "noise_corr": np.mean([s["noise_corr"] for s in stats], axis=0).tolist(),
        "noise_rel_std": float(np.mean([s["noise_rel_std"] for s in stats])),
        "colour": {
            k: np.mean([s["colour"][k] for s in stats], axis=0).tolist()
            for k in ("core", "halo", "background")
        },
        "upscale": float(np.mean([s["upscale"] for s in stats])),
        "n_blobs": int(sum(s["n_blobs"] for s in stats)),
        "bright_fraction": float(np.mean([s["bright_fraction"] for s in stats])),
        "sources": [f.name for f in files],
    }
    return out


def load_shipped_stats() -> dict:
    """Load the statistics measured on the real Jilin-1 example (shipped JSON)."""
    text = resources.files("geo_ntl").joinpath("data", SHIPPED_STATS).read_text()
    return json.loads(text)


def main() -> None:  # pragma: no cover - maintenance script
    """Re-measure the shipped statistics: ``python -m geo_ntl.deblur.real_stats IMAGE...``."""
    import sys

    stats = measure_images(sys.argv[1:])
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
