"""Cost of measuring a scene's PSF against the GAN pass it serves (issue 14: at most 10 %).

On a simulated 4096² scene written as a COG, interleaved, on the same cores:

* ``geo_ntl.psf.estimate_psf(open_scene(path))``: reads the windows with the most lamp-like
  peaks (at most ``MAX_PIXELS``), detects, stacks and measures the lamps;
* ``geo-ntl deblur``'s pipeline with the GAN (read, tiles, network, flux pass, COG write).

Prints the best time of each and their ratio.

    python benchmarks/bench_psf_speed.py [--size 4096] [--threads 1] [--repeat 2]
        [--json benchmarks/results/psf_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import dask
    import torch

    torch.set_num_threads(args.threads)
    from geo_ntl.deblur import DEFAULT_TILE, deblur
    from geo_ntl.io import open_scene, write_cog
    from geo_ntl.psf import estimate_psf
    from geo_ntl.simulate.city import synthetic_city
    from geo_ntl.testing import make_scene

    _, degraded = synthetic_city((args.size, args.size), seed=10_000_100, lamp_density=1.0)
    psf_runs, gan_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "scene.tif"
        write_cog(make_scene((3, args.size, args.size), seed=0).copy(data=degraded), src)
        estimate = None
        for i in range(args.repeat):  # interleaved, so both see the same machine load
            with dask.config.set(scheduler="threads", num_workers=args.threads):
                t0 = time.perf_counter()
                estimate = estimate_psf(open_scene(src, chunks=DEFAULT_TILE))
                psf_runs.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                out = deblur(open_scene(src, chunks=DEFAULT_TILE), device="cpu")
                write_cog(out, Path(tmp) / f"out{i}.tif", stage="deblur")
                gan_runs.append(time.perf_counter() - t0)
            print(
                f"run {i}: psf {psf_runs[-1]:.1f} s, GAN pipeline {gan_runs[-1]:.1f} s", flush=True
            )
    assert estimate is not None
    res = {
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, {args.threads} threads",
        "scene_px": f"{args.size}x{args.size}",
        "psf_method": estimate.method,
        "psf_sources": estimate.n_sources,
        "psf_fwhm_px": [round(v, 2) for v in estimate.fwhm],
        "psf_runs_s": [round(v, 2) for v in psf_runs],
        "gan_pipeline_runs_s": [round(v, 1) for v in gan_runs],
        "ratio_psf_over_gan": round(min(psf_runs) / min(gan_runs), 4),
    }
    print(json.dumps(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
