"""The enhancer on night-light scenes and low-light photos: highlights, wash-out, grain, NIQE.

Usage: nice python benchmarks/bench_enhance_nightlight.py [--dicm-limit 64] [--png-dir DIR]
       [--json benchmarks/results/enhance_nightlight.json]

Runs ``enhance_array`` with the night-light guard (the default) and without it
(``guard=False``: the seed paper's method alone) on the same images, side by side:

* the real Jilin-1 crop (../shared/data/ntl_real, 2140^2, downsampled 2x for speed),
* the sample AOI's degraded scene (sample_aoi/helsinki/scene.tif),
* the DICM low-light photographs (../shared/data/lowlight_dicm).

Measures (issue 15):

1. highlights: fraction of the input's saturated pixels (>= 250 in every band) that stay
   >= 240 in every band; the largest darkening (DN) of a lit pixel (input luminance >= 128);
2. wash-out: for scenes with mean >= 100 DN, the relative change of the mean and the ratio of
   RMS contrast (std of luminance) out / in;
3. grain: in the dim areas (smoothed input luminance below its 25th percentile), the growth
   of the noise -- luminance and chroma (Cb, Cr), robust high-pass estimate (1.4826 x MAD of
   the difference of a pixel and the mean of its 4 neighbours) -- against the growth of the
   mean brightness there: ``(noise_out / noise_in - 1) / (mean_out / mean_in - 1)``, which must
   stay <= 0.5 (noise grows at most half as fast as the brightness), with both noise levels
   taken as at least ``VISIBLE_NOISE_DN`` (0.5 DN; the ratio without that floor is kept as
   ``noise_over_brightness_raw``); and, since a term that
   leaves the dim quarter alone can still sharpen the noise of a smooth sky, the same noise
   gain in the flattest quarter (smallest gradient at 3 px) of the brighter three quarters
   (``flat_noise_gain``, beside that area's ``flat_mean_gain``);
4. DICM: mean NIQE and PIQE of the output, brightness gain.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LUMA = np.array([0.299, 0.587, 0.114])
#: Noise below this (DN, the high-pass estimate) is not visible in an 8-bit image: rounding
#: each band to an integer alone gives 0.20-0.22 DN in luma, Cb and Cr. JPEG leaves the chroma
#: of dark areas flat (0.00-0.06 DN), so any change of those pixels "grows" it 5-300-fold
#: at a level nobody can see; the grain ratio compares max(noise, this floor).
VISIBLE_NOISE_DN = 0.5


def load_rgb(path: Path, step: int = 1) -> np.ndarray:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if step > 1:
        img = img.resize((img.width // step, img.height // step), Image.Resampling.BOX)
    return np.asarray(img).transpose(2, 0, 1).copy()


def luma(img: np.ndarray) -> np.ndarray:
    return np.tensordot(LUMA, img.astype(np.float64), axes=1)


def chroma(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = img.astype(np.float64)
    y = luma(img)
    return 0.564 * (x[2] - y), 0.713 * (x[0] - y)


def highpass_noise(channel: np.ndarray, mask: np.ndarray) -> float:
    neighbours = ndi.convolve(channel, np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]) / 4.0)
    residual = (channel - neighbours)[mask]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def measures(before: np.ndarray, after: np.ndarray) -> dict:
    lb, la = luma(before), luma(after)
    saturated = (before >= 250).all(axis=0)
    lit = lb >= 128
    kept = (after[:, saturated] >= 240).all(axis=0).mean() if saturated.any() else float("nan")
    darkening = float((before.astype(int) - after.astype(int))[:, lit].max()) if lit.any() else 0
    dim = ndi.gaussian_filter(lb, 4) <= np.percentile(ndi.gaussian_filter(lb, 4), 25)
    mean_gain = la[dim].mean() / max(lb[dim].mean(), 1e-6)
    growth: dict = {}
    raw: dict = {}
    pairs = [("luma", lb, la), *zip(("cb", "cr"), chroma(before), chroma(after), strict=True)]
    for name, cb, ca in pairs:
        n_in, n_out = highpass_noise(cb, dim), highpass_noise(ca, dim)
        for into, floor in ((growth, VISIBLE_NOISE_DN), (raw, 1e-6)):
            noise_gain = max(n_out, floor) / max(n_in, floor)
            into[name] = (noise_gain - 1) / (mean_gain - 1) if mean_gain > 1.02 else None
            into[f"{name}_noise_gain"] = noise_gain
        growth[f"{name}_noise_dn"] = (n_in, n_out)
    gradient = ndi.gaussian_gradient_magnitude(lb, 3)
    flat = (gradient <= np.percentile(gradient, 25)) & (lb > np.percentile(lb, 25))
    if flat.sum() >= 1000:
        flat_noise_gain = highpass_noise(la, flat) / max(highpass_noise(lb, flat), 1e-6)
        flat_mean_gain = float(la[flat].mean() / max(lb[flat].mean(), 1e-6))
    else:
        flat_noise_gain = flat_mean_gain = float("nan")
    return {
        "flat_noise_gain": float(flat_noise_gain),
        "flat_mean_gain": flat_mean_gain,
        "mean_in": float(lb.mean()),
        "mean_out": float(la.mean()),
        "mean_change": float(la.mean() / lb.mean() - 1),
        "contrast_ratio": float(la.std() / max(lb.std(), 1e-6)),
        "saturated": int(saturated.sum()),
        "highlights_kept": float(kept),
        "lit_darkening_dn": darkening,
        "dim_mean_gain": float(mean_gain),
        "noise_over_brightness": growth,
        "noise_over_brightness_raw": raw,
    }


def worst_grain(growth: dict) -> float:
    """The largest of the luma, Cb and Cr grain ratios of ``measures`` (NaN when none applies)."""
    values = [growth[k] for k in ("luma", "cb", "cr") if growth[k] is not None]
    return max(values, default=float("nan"))


def save_pair(path: Path, before: np.ndarray, *afters: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    row = np.concatenate([before, *afters], axis=2).transpose(1, 2, 0)
    Image.fromarray(row).save(path)


def run_scene(name: str, img: np.ndarray, png_dir: Path | None) -> dict:
    from geo_ntl.enhance import enhance_array

    rows = {}
    outs = []
    for label, params in (("guard", None), ("bare", {"guard": False})):
        t0 = time.perf_counter()
        out = enhance_array(img, device="cpu", params=params)
        rows[label] = {**measures(img, out), "seconds": time.perf_counter() - t0}
        outs.append(out)
    if png_dir is not None:
        save_pair(png_dir / f"{name}.png", img, *outs)
    return rows


def dicm(limit: int, png_dir: Path | None) -> dict:
    from geo_ntl import metrics

    files = sorted((SHARED / "data" / "lowlight_dicm").glob("*.jpg"))[:limit]
    acc: dict[str, list] = {}
    from geo_ntl.enhance import enhance_array

    for f in files:
        img = load_rgb(f)
        for label, params in (("input", None), ("guard", None), ("bare", {"guard": False})):
            out = img if label == "input" else enhance_array(img, device="cpu", params=params)
            acc.setdefault(f"niqe_{label}", []).append(metrics.niqe(out))
            acc.setdefault(f"piqe_{label}", []).append(metrics.piqe(out))
            acc.setdefault(f"brightness_{label}", []).append(metrics.brightness(out))
            if label != "input":
                m = measures(img, out)
                acc.setdefault(f"kept_{label}", []).append(m["highlights_kept"])
                acc.setdefault(f"dark_{label}", []).append(m["lit_darkening_dn"])
                acc.setdefault(f"flat_noise_gain_{label}", []).append(m["flat_noise_gain"])
                acc.setdefault(f"flat_mean_gain_{label}", []).append(m["flat_mean_gain"])
                acc.setdefault(f"grain_{label}", []).append(worst_grain(m["noise_over_brightness"]))
                acc.setdefault(f"grain_raw_{label}", []).append(
                    worst_grain(m["noise_over_brightness_raw"])
                )
                if m["mean_in"] >= 100:
                    acc.setdefault(f"bright_change_{label}", []).append(m["mean_change"])
        if png_dir is not None and f.stem in ("01", "22", "47"):
            save_pair(
                png_dir / f"dicm_{f.stem}.png",
                img,
                enhance_array(img, device="cpu"),
                enhance_array(img, device="cpu", params={"guard": False}),
            )
    summary = {}
    for k, v in acc.items():
        arr = np.array(v, dtype=float)
        summary[k] = {
            "mean": float(np.nanmean(arr)),
            "min": float(np.nanmin(arr)),
            "max": float(np.nanmax(arr)),
            "n": int(np.isfinite(arr).sum()),
        }
    return summary


def dicm_summary(params: dict, limit: int) -> dict:
    """NIQE, PIQE, brightness, grain and bright-photo measures of one parameter set on DICM."""
    from geo_ntl import metrics
    from geo_ntl.enhance import enhance_array

    acc: dict[str, list] = {
        k: []
        for k in (
            "niqe",
            "piqe",
            "bright",
            "grain",
            "grain_raw",
            "bchange",
            "contrast",
            "flat_noise",
            "flat_mean",
        )
    }
    for f in sorted((SHARED / "data" / "lowlight_dicm").glob("*.jpg"))[:limit]:
        img = load_rgb(f)
        out = enhance_array(img, device="cpu", params=params)
        m = measures(img, out)
        acc["niqe"].append(metrics.niqe(out))
        acc["piqe"].append(metrics.piqe(out))
        acc["bright"].append(metrics.brightness(out))
        if np.isfinite(m["flat_noise_gain"]):
            acc["flat_noise"].append(m["flat_noise_gain"])
            acc["flat_mean"].append(m["flat_mean_gain"])
        if m["dim_mean_gain"] > 1.1:  # below, the ratio's denominator is noise
            acc["grain"].append(worst_grain(m["noise_over_brightness"]))
            acc["grain_raw"].append(worst_grain(m["noise_over_brightness_raw"]))
        if m["mean_in"] >= 100:
            acc["bchange"].append(m["mean_change"])
            acc["contrast"].append(m["contrast_ratio"])
    out = {
        k: {
            "mean": float(np.mean(v)),
            "max": float(np.max(v)),
            "median": float(np.median(v)),
            "n": len(v),
        }
        for k, v in acc.items()
        if v
    }
    out["grain_at_most_half"] = float(np.mean(np.array(acc["grain"]) <= 0.5))
    out["grain_raw_at_most_half"] = float(np.mean(np.array(acc["grain_raw"]) <= 0.5))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dicm-limit", type=int, default=64)
    parser.add_argument("--png-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--dicm-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="only summarise DICM with these enhancer parameters (repeatable)",
    )
    args = parser.parse_args()
    if args.dicm_param:
        params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.dicm_param)}
        print(json.dumps({"params": params, **dicm_summary(params, args.dicm_limit)}, indent=1))
        return
    import rasterio
    import torch

    torch.set_num_threads(2)
    results: dict = {"scenes": {}}
    jilin = SHARED / "data" / "ntl_real" / "jilin1_blooming_example.png"
    if jilin.exists():
        results["scenes"]["jilin1_real"] = run_scene("jilin1", load_rgb(jilin, 2), args.png_dir)
    with rasterio.open(ROOT / "sample_aoi" / "helsinki" / "scene.tif") as src:
        results["scenes"]["sample_aoi"] = run_scene("sample_aoi", src.read(), args.png_dir)
    if (SHARED / "data" / "lowlight_dicm").exists():
        results["dicm"] = dicm(args.dicm_limit, args.png_dir)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
