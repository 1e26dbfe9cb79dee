"""Benchmark geo_ntl.spatial: (a) statistics on 1000 x 1000 cells, (b) aggregating 20000 x 20000 px.

Run from the repository root (takes several minutes; use `nice`):

    nice python benchmarks/bench_spatial.py --md benchmarks/results/spatial.md   # both parts
    nice python benchmarks/bench_spatial.py --part a                             # statistics, printed

(a) 1,000,000 cells, queen weights: global Moran's I + LISA + bivariate LISA, 999 permutations each,
    geo_ntl versus esda called directly on the same arrays and weights.
(b) a synthetic single-band uint8 COG of 20000 x 20000 pixels (1 m) written to /tmp first, with a
    road network and overlapping park polygons, aggregated to 50 m cells; time and peak RSS of a
    fresh process. Two more runs show what the memory follows: the same raster at 100 m cells, and
    a 10000 x 10000 raster at 50 m cells -- the same number of cells from a quarter of the pixels.

With ``--md``, each part's figures are kept beside the report (spatial.json), so `--part b` alone does
not lose part (a); without it the report is only printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PERMS = 999
X0, Y0 = 385_000.0, 6_690_000.0


def lattice_field(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(seed)
    y = uniform_filter(rng.normal(size=(n, n)), size=5).ravel()
    x = y + rng.normal(scale=y.std(), size=n * n)
    return x, y


def lattice_weights(n: int):
    from geo_ntl.spatial import build_weights, make_grid
    from geo_ntl.testing import make_scene

    da = make_scene((1, n, n), dtype="float32", resolution=1.0)
    grid = make_grid(da, cell_size=1.0)
    return build_weights(grid, method="queen").graph


def timed(func, *args, **kwargs):
    t = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - t


def part_a(n_side: int, jobs: int) -> dict:
    import esda

    from geo_ntl.spatial import global_moran, local_moran, local_moran_bv

    warnings.simplefilter("ignore")
    res: dict = {"n": n_side * n_side, "jobs": jobs}
    g, res["weights_s"] = timed(lattice_weights, n_side)
    x, y = lattice_field(n_side)
    local_moran(
        y[:100], lattice_weights(10), permutations=9
    )  # compile the numba kernel (cached on disk)
    gm, res["geo_global_s"] = timed(global_moran, y, g, permutations=PERMS, seed=0)
    lm, res["geo_lisa_s"] = timed(local_moran, y, g, permutations=PERMS, seed=0, n_jobs=jobs)
    bv, res["geo_bv_lisa_s"] = timed(
        local_moran_bv, x, y, g, permutations=PERMS, seed=0, n_jobs=jobs
    )
    res["geo_total_s"] = res["geo_global_s"] + res["geo_lisa_s"] + res["geo_bv_lisa_s"]
    np.random.seed(0)
    ref, res["esda_global_s"] = timed(esda.Moran, y, g, permutations=PERMS)
    res["global_I_equal"] = bool(np.isclose(ref.I, gm.I) and ref.p_sim == gm.p_sim)
    res["I"] = gm.I
    res["lisa_HH"] = int((lm.labels == "HH").sum())
    res["bv_HH"] = int((bv.labels == "HH").sum())
    # esda's own local engine is O(n^2): time it on smaller lattices, beside geo_ntl, same arrays
    res["local_small"] = []
    for side in (50, 100, 150):
        gs = lattice_weights(side)
        xs, ys = lattice_field(side, seed=1)
        for keep in (True, False):  # compile esda's kernels before timing
            esda.Moran_Local(
                ys[:100],
                lattice_weights(10),
                permutations=9,
                seed=0,
                keep_simulations=keep,
                n_jobs=jobs,
            )
        local_moran(ys[:100], lattice_weights(10), permutations=9, engine="esda", n_jobs=jobs)
        _, t_esda = timed(esda.Moran_Local, ys, gs, permutations=PERMS, seed=0, n_jobs=jobs)
        _, t_wrap = timed(
            local_moran, ys, gs, permutations=PERMS, seed=0, engine="esda", n_jobs=jobs
        )
        _, t_geo = timed(local_moran, ys, gs, permutations=PERMS, seed=0, n_jobs=jobs)
        res["local_small"].append(
            {
                "n": side * side,
                "esda_s": t_esda,
                "geo_ntl_engine_esda_s": t_wrap,
                "geo_ntl_s": t_geo,
            }
        )
    return res


def make_inputs(folder: Path, size: int) -> tuple[Path, Path, Path]:
    import dask.array as dsa
    import geopandas as gpd
    import shapely
    import xarray as xr

    from geo_ntl.io import write_cog

    tif = folder / f"ntl_{size}.tif"
    roads, parks = folder / f"roads_{size}.gpkg", folder / f"parks_{size}.gpkg"
    if not tif.exists():
        import rioxarray  # noqa: F401  (registers .rio)

        rng_data = dsa.random.default_rng(0).integers(
            0, 40, size=(1, size, size), chunks=(1, 2048, 2048), dtype=np.uint8
        )
        da = xr.DataArray(
            rng_data,
            dims=("band", "y", "x"),
            coords={"band": [1], "y": Y0 - np.arange(size) - 0.5, "x": X0 + np.arange(size) + 0.5},
        )
        da = da.rio.write_crs("EPSG:3067").rio.write_transform(
            __import__("affine").Affine(1.0, 0, X0, 0, -1.0, Y0)
        )
        write_cog(da, tif)
    rng = np.random.default_rng(1)
    if not roads.exists():
        lines = [
            shapely.LineString([(X0, Y0 - v), (X0 + size, Y0 - v)]) for v in range(50, size, 200)
        ]
        lines += [
            shapely.LineString([(X0 + v, Y0), (X0 + v, Y0 - size)]) for v in range(75, size, 200)
        ]
        starts = rng.uniform(0, size, size=(20000, 2))
        ends = starts + rng.normal(scale=60, size=(20000, 2))
        lines += [
            shapely.LineString([(X0 + a, Y0 - b), (X0 + c, Y0 - d)])
            for (a, b), (c, d) in zip(starts, ends, strict=True)
        ]
        gpd.GeoDataFrame(
            {"highway": "residential"}, index=range(len(lines)), geometry=lines, crs="EPSG:3067"
        ).to_file(roads)
    if not parks.exists():
        centres = rng.uniform(0, size, size=(5000, 2))
        polys = [
            shapely.Point(X0 + a, Y0 - b).buffer(r, 8)
            for (a, b), r in zip(centres, rng.uniform(10, 120, size=5000), strict=True)
        ]
        gpd.GeoDataFrame(geometry=polys, crs="EPSG:3067").to_file(parks)
    return tif, roads, parks


def part_b_child(tif: str, roads: str, parks: str, cell_size: str) -> None:
    from geo_ntl.spatial import aggregate

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    cells, grid, report = aggregate(tif, roads=roads, permeable=parks, cell_size=float(cell_size))
    seconds = time.perf_counter() - t
    # VmHWM belongs to this process's memory map; ru_maxrss would carry over the parent's peak
    # through fork and exec (2.1 GB "measured" here once, after part (a) had run in the parent)
    with open("/proc/self/status") as status:
        rss_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": rss_mb,
                "cells": len(cells),
                "mean_ntl": float(cells["ntl_mean"].mean()),
                "mean_road_density": float(cells["road_density"].mean()),
                "mean_permeable": float(cells["permeable_fraction"].mean()),
            }
        )
    )


def _aggregate_in_child(size: int, cell_size: float) -> dict:
    folder = Path("/tmp/geo_ntl_bench_spatial")
    folder.mkdir(exist_ok=True)
    t = time.perf_counter()
    tif, roads, parks = make_inputs(folder, size)
    prep = time.perf_counter() - t
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(tif), str(roads), str(parks), str(cell_size)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(
        {
            "size": size,
            "cell_size": cell_size,
            "prep_s": prep,
            "cog_mb": tif.stat().st_size / 2**20,
            "gdal_cachemax": os.environ.get("GDAL_CACHEMAX", "geo_ntl default"),
        }
    )
    return res


def part_b(size: int) -> dict:
    runs = [(size, 50.0), (size, 100.0), (size // 2, 50.0)]
    return {"runs": [_aggregate_in_child(s, c) for s, c in runs]}


def report(a: dict | None, b: dict | None) -> str:
    lines = [
        "# geo_ntl.spatial benchmark",
        "",
        f"Machine: {os.cpu_count()} cores (shared), Python {sys.version.split()[0]}. "
        "Command: `nice python benchmarks/bench_spatial.py --md benchmarks/results/spatial.md`.",
        "",
    ]
    if a:
        over = a["geo_global_s"] / a["esda_global_s"] - 1
        lines += [
            "## (a) 1,000,000 cells (1000 x 1000 lattice, queen), 999 permutations each",
            "",
            "| step | seconds |",
            "|---|---|",
            f"| build queen weights (lattice) | {a['weights_s']:.1f} |",
            f"| global Moran's I (esda.Moran via geo_ntl) | {a['geo_global_s']:.1f} |",
            f"| LISA (n_jobs={a['jobs']}) | {a['geo_lisa_s']:.1f} |",
            f"| bivariate LISA (n_jobs={a['jobs']}) | {a['geo_bv_lisa_s']:.1f} |",
            f"| **total statistics** | **{a['geo_total_s']:.1f}** |",
            f"| esda.Moran called directly | {a['esda_global_s']:.1f} |",
            "",
            f"geo_ntl overhead on the global test beside esda directly: {100 * over:+.1f} % "
            f"(same I and p_sim: {a['global_I_equal']}).",
            "",
            "esda's local engine rebuilds the value array without site i for every site (O(n^2)); "
            "geo_ntl's engine reproduces its p-values from the same permutation table in O(n·P·k). "
            "Local Moran on smaller lattices, 999 permutations:",
            "",
            "| cells | esda.Moran_Local directly (s) | geo_ntl engine='esda' (s) | overhead "
            "| geo_ntl default engine (s) |",
            "|---|---|---|---|---|",
        ]
        for row in a["local_small"]:
            ov = row["geo_ntl_engine_esda_s"] / row["esda_s"] - 1
            lines.append(
                f"| {row['n']:,} | {row['esda_s']:.2f} | {row['geo_ntl_engine_esda_s']:.2f} | "
                f"{100 * ov:+.1f} % | {row['geo_ntl_s']:.2f} |"
            )
        lines.append("")
    if b:
        first = b["runs"][0]
        lines += [
            f"## (b) aggregation of a {first['size']} x {first['size']} raster to 50 m cells",
            "",
            "Synthetic single-band uint8 COGs (DEFLATE, 1 m pixels, read in 1024-px chunks), about "
            "20,000 road lines and 5,000 overlapping park polygons; each row a fresh process "
            f"(GDAL_CACHEMAX: {first['gdal_cachemax']}).",
            "",
            "| raster | COG (MB) | cell (m) | cells | seconds | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in b["runs"]:
            lines.append(
                f"| {r['size']} x {r['size']} | {r['cog_mb']:.0f} | {r['cell_size']:.0f} | "
                f"{r['cells']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--side", type=int, default=1000)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--child", nargs=4)
    parser.add_argument(
        "--md",
        type=Path,
        default=None,
        help="write the report here and keep each part's figures beside it (.json)",
    )
    args = parser.parse_args()
    if args.child:
        part_b_child(*args.child)
        return
    a = part_a(args.side, args.jobs) if args.part in ("a", "both") else None
    if a:
        print(json.dumps(a, indent=1), flush=True)
    b = part_b(args.size) if args.part in ("b", "both") else None
    if b:
        print(json.dumps(b, indent=1), flush=True)
    if args.md is None:
        print(report(a, b))
        return
    args.md.parent.mkdir(parents=True, exist_ok=True)
    store = args.md.with_suffix(".json")
    kept = json.loads(store.read_text()) if store.exists() else {}
    kept.update({k: v for k, v in (("a", a), ("b", b)) if v is not None})
    store.write_text(json.dumps(kept, indent=1))
    args.md.write_text(report(kept.get("a"), kept.get("b")))
    print(args.md.read_text())


if __name__ == "__main__":
    main()
