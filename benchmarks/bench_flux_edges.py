"""Light the flux pass keeps beside nodata and around a float scene's maximum (issue 26).

Runs the shipped GAN once per scene, then projects its output two ways, side by side:

* *nodata*: a uint8 scene that is 95 % nodata (0) with a dim lit square (1-38 DN, nothing
  saturated): the balance spread over every pixel (before) or over the valid pixels only
  (``conserve_flux(..., valid=...)``, now);
* *radiance*: VIIRS-like float radiance (a smooth dim city and one 355 pixel, nothing
  clipped): the scene maximum taken for full scale (before) or no saturation level (now).

Prints the share of the valid input light each keeps (1.0 keeps it all).

    python benchmarks/bench_flux_edges.py [--size 192] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def _kept(out: np.ndarray, scene: np.ndarray, valid: np.ndarray) -> float:
    return float(out[:, valid].sum(dtype=np.float64) / scene[:, valid].sum(dtype=np.float64))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    from geo_ntl.deblur.flux import conserve_flux
    from geo_ntl.deblur.inference import deblur_array  # the standalone GAN (gan-direct)

    rng = np.random.default_rng(7)
    n = args.size
    side = int(round(n * 0.23))  # about 5 % of the scene
    scene = np.zeros((3, n, n), np.uint8)
    lo = (n - side) // 2
    scene[:, lo : lo + side, lo : lo + side] = rng.gamma(2.0, 6.0, (3, side, side)).clip(1, 38)
    valid = (scene != 0).all(axis=0)
    gan = deblur_array(scene, device="cpu", nodata=0, conserve=False).astype(np.float32)
    x, g = scene.astype(np.float32), gan.copy()
    x[:, ~valid], g[:, ~valid] = 0, 0
    rows = {
        "nodata_before": _kept(conserve_flux(x, g, full_scale=255), x, valid),
        "nodata_now": _kept(conserve_flux(x, g, full_scale=255, valid=valid), x, valid),
    }

    radiance = rng.gamma(2.0, 3.0, (3, n, n)).astype(np.float32)
    radiance[:, n // 2, n // 2] = 355.0
    everywhere = np.ones((n, n), bool)
    top = float(radiance.max())
    scale = np.float32(top)
    gan = deblur_array(radiance, device="cpu", conserve=False, scale=top).astype(np.float32)
    near = np.zeros((n, n), bool)
    near[n // 2 - 48 : n // 2 + 49, n // 2 - 48 : n // 2 + 49] = True
    rows["radiance_before"] = _kept(conserve_flux(radiance, gan, full_scale=scale), radiance, near)
    rows["radiance_now"] = _kept(
        conserve_flux(radiance, gan, full_scale=np.inf, valid=everywhere), radiance, near
    )
    for name, value in rows.items():
        print(f"{name:16s} kept {value:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": n, **rows}, f, indent=2)


if __name__ == "__main__":
    main()
