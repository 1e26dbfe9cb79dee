"""Consistency and speed of `geo-ntl deblur --method gan-direct` (no ASM) on CPU.

1. Receptive field of the shipped generator (gradient mass, eval mode).
2. Tiled vs whole: a crop of the sample AOI deblurred in tiles (tile 256) and
   whole, for several halos; max |difference| in DN (target <= 2 at the default halo).
3. Throughput: the pipeline (open_scene -> tiles with halo -> model -> stitching ->
   COG write) against the bare generator forward pass on the same pixels
   (one tensor, inference mode), in one run on the same machine; target ratio >= 0.8.
   Both get the same cores: torch's ``--threads`` and one dask thread (tiles one at a
   time). With ``--size`` above the tile, interior tiles carry halos (2 x 2 tiles of 2048
   at 4096: 1.10 x the pixels); at or below it the scene is one tile without any.

    python benchmarks/bench_deblur_speed.py [--size 2048] [--threads N]
        [--json benchmarks/results/deblur_speed.json]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--size", type=int, default=2048, help="side of the throughput scene")
    ap.add_argument("--tile", type=int, default=None, help="default: geo_ntl.deblur.DEFAULT_TILE")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats (best kept)")
    ap.add_argument("--crop", type=int, default=640, help="side of the tiled-vs-whole crop")
    ap.add_argument("--halos", default="16,32,48,64")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-rf", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    import dask
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from geo_ntl.deblur import DEFAULT_HALO, DEFAULT_TILE, get_model
    from geo_ntl.deblur.inference import deblur, deblur_array  # the standalone GAN
    from geo_ntl.deblur.model import receptive_field
    from geo_ntl.io import open_scene, write_cog
    from geo_ntl.simulate.city import synthetic_city

    res: dict = {
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "default_halo": DEFAULT_HALO,
    }
    model = get_model(args.weights)
    tile = args.tile or DEFAULT_TILE
    if not args.skip_rf:
        rf = {
            f"{m}": receptive_field(model, size=256, n_samples=2, mass=m)["effective_radius"]
            for m in (0.99, 0.999)
        }
        res["receptive_field"] = {"effective_radius_px": rf, "theoretical_radius_px": 192}
        print("rf", rf)

    # 2. tiled vs whole on a crop of the AOI
    with rasterio.open(AOI / "scene.tif") as src:
        crop = src.read(window=((400, 400 + args.crop), (200, 200 + args.crop)))
    whole = deblur_array(crop, weights=args.weights, device="cpu", halo=DEFAULT_HALO)
    from geo_ntl.testing import make_scene

    da = make_scene((3, args.crop, args.crop), seed=0)
    da = da.copy(data=crop)
    diffs = {}
    for halo in [int(h) for h in args.halos.split(",")]:
        tiled = deblur(da, weights=args.weights, device="cpu", tile=256, halo=halo).values
        diffs[str(halo)] = int(np.abs(tiled.astype(int) - whole.astype(int)).max())
        print("halo", halo, "max diff DN", diffs[str(halo)])
    res["tiled_vs_whole_max_dn"] = diffs

    # 3. throughput on a simulated scene
    with tempfile.TemporaryDirectory() as tmp:
        _, degraded = synthetic_city((args.size, args.size), seed=10_000_100, lamp_density=1.0)
        src_path = Path(tmp) / "scene.tif"
        template = make_scene((3, args.size, args.size), seed=0)
        write_cog(template.copy(data=degraded), src_path)
        mp = args.size * args.size / 1e6
        x = torch.from_numpy(degraded.astype(np.float32) / 127.5 - 1.0)[None]
        with torch.inference_mode():
            model(x[..., :256, :256])  # warm-up
        bare, pipe = [], []
        for i in range(args.repeat):  # interleaved, so both see the same machine load
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(x)
                bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            # One tile at a time, so the pipeline has the bare pass's cores and no more
            # (dask would otherwise run a tile per core beside torch's own threads).
            with dask.config.set(scheduler="threads", num_workers=1):
                scene = open_scene(src_path, chunks=tile)
                out = deblur(scene, weights=args.weights, device="cpu", tile=tile)
                write_cog(out, Path(tmp) / f"out{i}.tif", stage="deblur")
            pipe.append(time.perf_counter() - t0)
        t_bare, t_pipe = min(bare), min(pipe)
        del x
    res["throughput"] = {
        "scene_px": f"{args.size}x{args.size}",
        "tile": tile,
        "bare_runs_s": [round(v, 1) for v in bare],
        "pipeline_runs_s": [round(v, 1) for v in pipe],
        "halo": DEFAULT_HALO,
        "bare_forward_s_per_mp": round(t_bare / mp, 2),
        "pipeline_s_per_mp": round(t_pipe / mp, 2),
        "ratio_pipeline_over_bare_throughput": round(t_bare / t_pipe, 3),
    }
    print(json.dumps(res["throughput"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
