"""Quality of the deblooming GAN against the degraded input and Richardson-Lucy.

Inputs: sample_aoi/helsinki (scene.tif vs its clean truth.tif) and held-out
simulated cities (geo_ntl.simulate.synthetic_city with seeds >= 10_000_000, never
used in training). For each: PSNR (RGB, 0-255) and SSIM (luma, Gaussian sigma 1.5)
of the degraded input, the GAN output (no ASM enhancement: the truth is linear
radiance) and Richardson-Lucy (skimage, 30 iterations) with the true PSF; the
FWHM of isolated lamps against the truth's; and flux conservation per 100 m cell.

    python benchmarks/bench_deblur_quality.py [--weights PATH] [--cities 3] [--size 512]
        [--json benchmarks/results/deblur_quality.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
AOI = ROOT / "sample_aoi" / "helsinki"
PIXEL_M = 0.92
CELL_M = 100.0
RL_ITER = 30


def rl_deconvolve(img: np.ndarray, psf: np.ndarray, n_iter: int = RL_ITER) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    x = img.astype(np.float64) / 255.0
    out = np.stack(
        [richardson_lucy(b, psf.astype(np.float64), num_iter=n_iter, clip=True) for b in x]
    )
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def isolated_lamps(
    truth: np.ndarray, *, min_peak: float = 150.0, sep: int = 12, max_n: int = 300
) -> list[tuple[int, int]]:
    """Bright local maxima of the truth's intensity with no other lit pixel within ``sep`` px."""
    inten = truth.astype(np.float32).mean(axis=0)
    peaks = (inten == ndimage.maximum_filter(inten, size=2 * sep + 1)) & (inten >= min_peak)
    lit = inten >= 0.25 * min_peak
    counts = ndimage.uniform_filter(lit.astype(np.float32), size=2 * sep + 1) * (2 * sep + 1) ** 2
    ys, xs = np.nonzero(peaks)
    keep = []
    h, w = inten.shape
    for y, x in zip(ys, xs, strict=True):
        if sep <= y < h - sep and sep <= x < w - sep and counts[y, x] <= 12:
            keep.append((int(y), int(x)))
    return keep[:max_n]


def fwhm(img: np.ndarray, y: int, x: int, r: int = 10) -> float:
    """Equivalent-disc FWHM (px) of the blob at (y, x): 2 sqrt(A / pi), A = area above half max."""
    win = img.astype(np.float32).mean(axis=0)[y - r : y + r + 1, x - r : x + r + 1]
    bg = float(np.percentile(win, 10))
    peak = float(win[r - 2 : r + 3, r - 2 : r + 3].max())
    if peak - bg < 10:
        return float("nan")
    above = win >= bg + 0.5 * (peak - bg)
    lab, _ = ndimage.label(above)
    centre = lab[r - 2 : r + 3, r - 2 : r + 3]
    k = np.bincount(centre[centre > 0]).argmax() if (centre > 0).any() else 0
    area = float((lab == k).sum()) if k else 0.0
    return 2.0 * np.sqrt(area / np.pi)


def cell_flux_ratio(out: np.ndarray, truth: np.ndarray, *, min_mean: float = 2.0) -> dict:
    """Per-100 m-cell total radiance ratio out/truth (cells with truth mean >= min_mean DN)."""
    c = int(round(CELL_M / PIXEL_M))
    h, w = truth.shape[1:]
    ratios = []
    for y in range(0, h - c + 1, c):
        for x in range(0, w - c + 1, c):
            t = float(truth[:, y : y + c, x : x + c].astype(np.float64).sum())
            if t / (3 * c * c) < min_mean:
                continue
            ratios.append(float(out[:, y : y + c, x : x + c].astype(np.float64).sum()) / t)
    r = np.asarray(ratios)
    if r.size == 0:
        return {"cells": 0}
    return {
        "cells": int(r.size),
        "median_ratio": round(float(np.median(r)), 3),
        "within_10pct": round(float(np.mean(np.abs(r - 1) <= 0.10)), 3),
        "min": round(float(r.min()), 3),
        "max": round(float(r.max()), 3),
    }


def evaluate(degraded: np.ndarray, truth: np.ndarray, psf: np.ndarray, weights: str | None) -> dict:
    from geo_ntl.deblur.inference import deblur_array  # the standalone GAN (gan-direct)
    from geo_ntl.metrics.reference import psnr, ssim

    t0 = time.perf_counter()
    gan = deblur_array(degraded, weights=weights, device="cpu", tile=1024)
    t_gan = time.perf_counter() - t0
    t0 = time.perf_counter()
    rl = rl_deconvolve(degraded, psf)
    t_rl = time.perf_counter() - t0
    lamps = isolated_lamps(truth)
    res: dict = {
        "pixels": int(truth.shape[1] * truth.shape[2]),
        "isolated_lamps": len(lamps),
        "seconds": {"gan": round(t_gan, 1), "rl": round(t_rl, 1)},
    }
    for name, img in (("degraded", degraded), ("gan", gan), ("rl", rl), ("truth", truth)):
        entry: dict = {}
        if name != "truth":
            entry["psnr"] = round(psnr(img, truth), 2)
            entry["ssim"] = round(ssim(img, truth), 4)
            entry["flux_100m"] = cell_flux_ratio(img, truth)
        f = np.asarray([fwhm(img, y, x) for y, x in lamps])
        entry["fwhm_median_px"] = round(float(np.nanmedian(f)), 2) if np.isfinite(f).any() else None
        res[name] = entry
    return res, gan, rl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--cities", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--save-arrays", default=None, help="folder for .npy outputs (for PNGs)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from geo_ntl.deblur.blur_transfer import HELD_OUT_SEED
    from geo_ntl.simulate.city import synthetic_city
    from geo_ntl.simulate.psf import moffat_psf

    results: dict = {"weights": args.weights or "default (shipped)", "rl_iterations": RL_ITER}
    psf_true = moffat_psf(15, alpha=3.0, beta=2.5)  # the AOI's README: alpha 3, beta 2.5
    with rasterio.open(AOI / "scene.tif") as s, rasterio.open(AOI / "truth.tif") as t:
        scene, truth = s.read(), t.read()
    res, gan, rl = evaluate(scene, truth, psf_true, args.weights)
    results["sample_aoi_helsinki"] = res
    print("helsinki", json.dumps(res))
    if args.save_arrays:
        out = Path(args.save_arrays)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "aoi_gan.npy", gan)
        np.save(out / "aoi_rl.npy", rl)
    cities = []
    densities = np.linspace(0.5, 2.0, max(args.cities, 1))
    for i in range(args.cities):
        seed = HELD_OUT_SEED + i
        clean, degraded = synthetic_city(
            (args.size, args.size), seed=seed, lamp_density=float(densities[i]), sky_glow=0.04
        )
        r, _, _ = evaluate(degraded, clean, psf_true, args.weights)
        r["seed"], r["lamp_density"] = seed, round(float(densities[i]), 2)
        print("city", seed, json.dumps(r))
        cities.append(r)
    results["held_out_cities"] = cities
    keys = ("degraded", "gan", "rl")
    results["held_out_mean"] = (
        {
            k: {m: round(float(np.mean([c[k][m] for c in cities])), 3) for m in ("psnr", "ssim")}
            for k in keys
        }
        if cities
        else {}
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(json.dumps(results["held_out_mean"]))


if __name__ == "__main__":
    main()
