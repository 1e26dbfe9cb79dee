"""Read -> identity through the tiled engine -> COG, beside GDAL's COG driver alone.

Both paths read the same compressed GeoTIFF and write a DEFLATE COG with
512-pixel tiles, a predictor and internal overviews, in the same run. Prints
throughput (MP/s) of each and their ratio (goal >= 0.9), then the peak RSS of
the geo_ntl path on a larger scene in a child process (goal <= 1.5 GB for
16384 x 16384 x 3).

Usage::

    python benchmarks/bench_io.py --size 8192 --rss-size 16384 --workdir /tmp/geo_ntl_bench
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import rasterio
import rasterio.shutil
from _common import dump, make_input_scene, peak_rss_of, timed

from geo_ntl.io import COG_PROFILE, open_scene, write_cog
from geo_ntl.tiling import apply_tiled

HALO = 32


def geo_ntl_path(src: Path, dst: Path) -> None:
    scene = open_scene(src)
    write_cog(apply_tiled(scene, lambda block: block, halo=HALO), dst, overwrite=True)


def gdal_path(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        rasterio.shutil.copy(src, dst, driver="COG", **COG_PROFILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--rss-size", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geo_ntl_bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    src = make_input_scene(args.workdir / f"in_{args.size}.tif", args.size)
    megapixels = args.size * args.size / 1e6
    results = {"size": args.size, "halo": HALO}
    # Alternate the two paths so that machine noise hits both alike; keep each one's best.
    runs_gdal, runs_ours = [], []
    for _ in range(args.repeat):
        runs_gdal.append(timed(gdal_path, src, args.workdir / "gdal.tif"))
        runs_ours.append(timed(geo_ntl_path, src, args.workdir / "ours.tif"))
    t_gdal, t_ours = min(runs_gdal), min(runs_ours)
    results.update(
        gdal_runs_s=[round(t, 2) for t in runs_gdal],
        geo_ntl_runs_s=[round(t, 2) for t in runs_ours],
    )
    results.update(
        gdal_cog_s=round(t_gdal, 2),
        geo_ntl_s=round(t_ours, 2),
        gdal_cog_mp_s=round(megapixels / t_gdal, 1),
        geo_ntl_mp_s=round(megapixels / t_ours, 1),
        throughput_ratio=round(t_gdal / t_ours, 3),
    )
    if args.rss_size:
        big = make_input_scene(args.workdir / f"in_{args.rss_size}.tif", args.rss_size)
        code = textwrap.dedent(f"""
            import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
            from pathlib import Path
            from bench_io import geo_ntl_path
            geo_ntl_path(Path({str(big)!r}), Path({str(args.workdir / "ours_big.tif")!r}))
        """)
        rss, _ = peak_rss_of(code)
        results.update(rss_size=args.rss_size, peak_rss_mib=round(rss, 1))
    dump(results, args.json)


if __name__ == "__main__":
    main()
