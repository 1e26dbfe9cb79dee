"""How low DICM's NIQE and PIQE can go within issue 15's other criteria.

Usage: nice python benchmarks/bench_enhance_bounds.py [--dicm-limit 64]
       [--json benchmarks/results/enhance_bounds.json]

The night-light guard renders the enhanced photo from the input, taking from the seed paper's
method only how much to brighten (``geo_ntl.enhance.guard``). Two knobs decide how close its
NIQE and PIQE come to the method's own: the strength ``k`` (how much of the method's smooth
gain a photo gets) and ``detail_gain`` (how much of that gain the fine detail -- and with it
the noise -- gets). This script runs the guard on the method's output of every DICM photo at
the ends of both ranges, including one strength no shipped default could choose: for each
photo of mean >= 100 DN, the largest ``k`` whose output mean changes by <= 9.5 % (bisection
on that photo's own output: criterion 2 of issue 15 used to its limit, an oracle). Photos
below 100 DN get ``k = 1``.

Rows, each with NIQE, PIQE, brightness, the bench's grain ratio (``bench_enhance_nightlight``
``measures``: share of photos whose dim-quarter noise grows at most half as fast as their
brightness) and the mean change / RMS-contrast ratio of the photos >= 100 DN:

* ``input`` and ``method`` (``guard=False``): the two ends;
* ``default``: the shipped guard;
* ``k=1, detail d``: every photo at full strength (criterion 2 given up);
* ``oracle k, detail d``: criterion 2 at its limit.

A combination meeting criteria 2 and 3 and reaching the method's NIQE / PIQE would show up
as a row with mean change <= 10 %, grain share near the default's and NIQE / PIQE at most
the method's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_enhance_nightlight import SHARED, load_rgb, measures, worst_grain

#: Largest relative change of the mean allowed to the oracle strength (criterion 2 says 10 %).
MEAN_CHANGE_CAP = 0.095
#: Scenes from this mean (DN) are "not low-light" (criterion 2).
NOT_LOW_LIGHT_DN = 100.0


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


class Photo:
    """One DICM photo with the method's output and the scene statistics the guard uses."""

    def __init__(self, path: Path) -> None:
        import torch

        from geo_ntl.enhance import ASMParams, enhance_array
        from geo_ntl.enhance.stats import global_stats

        self.name = path.stem
        self.image = load_rgb(path)
        params = ASMParams()
        stats = global_stats(self.image.astype(np.float32), dtype=self.image.dtype, params=params)
        method = enhance_array(self.image, device="cpu", params={"guard": False}, dtype="float32")
        self.x = torch.from_numpy(self.image.astype(np.float32) / stats.scale)
        self.method = torch.from_numpy(method / stats.scale)
        self.method_u8 = _to_u8(self.method.numpy())  # what enhance_array writes as uint8
        self.default_u8 = enhance_array(self.image, device="cpu")
        self.black = stats.black
        self.mean_dn = float(np.tensordot([0.299, 0.587, 0.114], self.image, axes=1).mean())
        self.params = params

    def render(self, strength: float, detail_gain: float) -> np.ndarray:
        """The guard's output at ``strength`` and ``detail_gain`` as uint8."""
        from geo_ntl.enhance.guard import apply_guard

        out = apply_guard(
            self.x,
            self.method,
            strength=strength,
            black=self.black,
            detail_sigma=self.params.detail_sigma,
            detail_gain=detail_gain,
        )
        return _to_u8(out.numpy())

    def oracle(self, detail_gain: float) -> np.ndarray:
        """Full strength below 100 DN; above, the largest strength within ``MEAN_CHANGE_CAP``."""
        if self.mean_dn < NOT_LOW_LIGHT_DN:
            return self.render(1.0, detail_gain)
        low, high = 0.0, 1.0
        best = self.image
        for _ in range(12):
            k = 0.5 * (low + high)
            out = self.render(k, detail_gain)
            if measures(self.image, out)["mean_change"] <= MEAN_CHANGE_CAP:
                low, best = k, out
            else:
                high = k
        return best


def summarise(photos: list[Photo], outputs: list[np.ndarray]) -> dict:
    """NIQE, PIQE, brightness, grain share and bright-photo measures of one row."""
    from geo_ntl import metrics

    niqe, piqe, bright, grain, change, contrast = [], [], [], [], [], []
    for photo, out in zip(photos, outputs, strict=True):
        m = measures(photo.image, out)
        niqe.append(metrics.niqe(out))
        piqe.append(metrics.piqe(out))
        bright.append(metrics.brightness(out))
        if m["dim_mean_gain"] > 1.1:  # as bench_enhance_nightlight: below, the ratio is noise
            grain.append(worst_grain(m["noise_over_brightness"]))
        if m["mean_in"] >= NOT_LOW_LIGHT_DN:
            change.append(m["mean_change"])
            contrast.append(m["contrast_ratio"])
    return {
        "niqe": float(np.mean(niqe)),
        "piqe": float(np.mean(piqe)),
        "brightness": float(np.mean(bright)),
        "grain_at_most_half": float(np.mean(np.array(grain) <= 0.5)) if grain else None,
        "grain_median": float(np.median(grain)) if grain else None,
        "bright_mean_change_mean": float(np.mean(change)) if change else 0.0,
        "bright_mean_change_max": float(np.max(change)) if change else 0.0,
        "bright_contrast_ratio_min": float(np.min(contrast)) if contrast else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dicm-limit", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    files = sorted((SHARED / "data" / "lowlight_dicm").glob("*.jpg"))[: args.dicm_limit]
    photos = [Photo(f) for f in files]
    rows = {
        "input": [p.image for p in photos],
        "method (guard=False)": [p.method_u8 for p in photos],
        "default guard": [p.default_u8 for p in photos],
    }
    for gain in (0.25, 1.0):
        rows[f"k=1, detail_gain {gain}"] = [p.render(1.0, gain) for p in photos]
        rows[f"oracle k, detail_gain {gain}"] = [p.oracle(gain) for p in photos]
    results = {"photos": len(photos), "rows": {}}
    columns = (
        "row",
        "NIQE",
        "PIQE",
        "brightness",
        "grain <= 0.5 (median)",
        "mean change >= 100 DN (max)",
        "contrast ratio min",
    )
    print("| " + " | ".join(columns) + " |")
    print("|---" * 7 + "|")
    for label, outputs in rows.items():
        s = summarise(photos, outputs)
        results["rows"][label] = s
        grain = (
            "-"
            if s["grain_at_most_half"] is None
            else f"{100 * s['grain_at_most_half']:.0f} % ({s['grain_median']:.2f})"
        )
        print(
            f"| {label} | {s['niqe']:.3f} | {s['piqe']:.2f} | {s['brightness']:.3f} | {grain} | "
            f"{100 * s['bright_mean_change_mean']:+.1f} % ({100 * s['bright_mean_change_max']:+.1f} %) | "
            f"{s['bright_contrast_ratio_min']:.2f} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
