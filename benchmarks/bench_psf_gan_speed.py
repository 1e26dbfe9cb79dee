"""Speed of the default method (psf-gan) against the standalone GAN's pipeline, side by side.

1. Throughput: ``open_scene -> deblur -> write_cog`` of a simulated city scene for
   ``--method psf-gan`` (the PSF measured on the scene included) and ``--method
   gan-direct``, interleaved ``--repeat`` times in one run on the same machine, one dask
   worker and ``--threads`` torch threads each; the ratio of their throughputs (goal of
   issue 25: psf-gan >= 1.5 x the GAN's at 4096^2).
2. Tiled vs whole: a crop of the sample AOI through psf-gan in 256 px tiles and whole, at
   the default halo; max |difference| in DN (goal <= 1).

    python benchmarks/bench_psf_gan_speed.py [--size 4096] [--threads 1] [--repeat 2]
        [--weights FILE] [--json benchmarks/results/psf_gan_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
AOI = ROOT / "sample_aoi" / "helsinki"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--crop", type=int, default=640)
    ap.add_argument("--weights", default=None, help="psf-gan weights (default: shipped)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import dask
    import torch

    torch.set_num_threads(args.threads)
    from geo_ntl.deblur import DEFAULT_TILE, deblur
    from geo_ntl.deblur.psf_gan import solve, solve_array
    from geo_ntl.io import open_scene, write_cog
    from geo_ntl.simulate.city import synthetic_city
    from geo_ntl.testing import make_scene

    res: dict = {
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, {args.threads} threads",
    }
    with rasterio.open(AOI / "scene.tif") as src:
        crop = src.read(window=((400, 400 + args.crop), (200, 200 + args.crop)))
    whole = solve_array(crop, weights=args.weights, device="cpu")
    tiled = solve(make_scene(crop.shape).copy(data=crop), weights=args.weights, device="cpu",
                  tile=256).values  # fmt: skip
    res["tiled_vs_whole_max_dn"] = int(np.abs(tiled.astype(int) - whole.astype(int)).max())
    print("tiled vs whole, max DN:", res["tiled_vs_whole_max_dn"], flush=True)

    _, degraded = synthetic_city((args.size, args.size), seed=10_000_100, lamp_density=1.0)
    runs: dict[str, list[float]] = {"psf-gan": [], "gan-direct": []}
    with tempfile.TemporaryDirectory() as tmp:
        src_path = Path(tmp) / "scene.tif"
        write_cog(make_scene((3, args.size, args.size), seed=0).copy(data=degraded), src_path)
        for i in range(args.repeat):  # interleaved, so both see the same machine load
            for method in runs:
                options = {"weights": args.weights} if method == "psf-gan" else {}
                t0 = time.perf_counter()
                with dask.config.set(scheduler="threads", num_workers=1):
                    scene = open_scene(src_path, chunks=DEFAULT_TILE)
                    out = deblur(scene, method=method, device="cpu", **options)
                    write_cog(out, Path(tmp) / f"{method}_{i}.tif", stage="deblur")
                runs[method].append(time.perf_counter() - t0)
                print(f"run {i} {method}: {runs[method][-1]:.1f} s", flush=True)
    mp = args.size * args.size / 1e6
    best = {m: min(v) for m, v in runs.items()}
    res["throughput"] = {
        "scene_px": f"{args.size}x{args.size}",
        "runs_s": {m: [round(v, 1) for v in r] for m, r in runs.items()},
        "s_per_mp": {m: round(v / mp, 2) for m, v in best.items()},
        "ratio_psf_gan_over_gan_throughput": round(best["gan-direct"] / best["psf-gan"], 3),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
