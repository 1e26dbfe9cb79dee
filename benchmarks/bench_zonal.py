"""Benchmark geo_ntl.zonal (exactextract) against rasterstats on a city-size raster, side by side.

Run from the repository root (needs the `bench` extra for rasterstats; a few minutes, use `nice`):

    nice python benchmarks/bench_zonal.py                 # 10000 x 10000 px, 500 polygons
    nice python benchmarks/bench_zonal.py --size 2000     # a quick check

A single-band uint8 GeoTIFF (DEFLATE, 512 px tiles, 0.92 m pixels) is written to /tmp first, and 500
Voronoi districts over it. Both tools compute the same table -- sum, mean and valid-pixel count per
district -- from the file, one after the other in this process. geo_ntl weights each pixel by the fraction
of its area inside the district (exactextract); rasterstats counts the pixels whose centre is inside,
so the sums differ at the district edges: the script prints how much.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import make_input_scene  # noqa: E402


def districts(path: Path, n: int, seed: int = 0):
    """``n`` Voronoi polygons over the raster's extent, in its CRS."""
    import geopandas as gpd
    import rasterio
    import shapely

    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    rng = np.random.default_rng(seed)
    points = shapely.multipoints(
        np.column_stack([rng.uniform(left, right, n), rng.uniform(bottom, top, n)])
    )
    extent = shapely.box(left, bottom, right, top)
    cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=extent))
    cells = shapely.intersection(cells, extent)
    return gpd.GeoDataFrame({"district": np.arange(len(cells))}, geometry=cells, crs=crs)


def run_geo_ntl(path: Path, zones):
    from geo_ntl import zonal

    table = zonal(path, zones=zones, id_column="district")
    return table.set_index("zone")[["sum", "mean", "count"]]


def run_rasterstats(path: Path, zones):
    import pandas as pd
    from rasterstats import zonal_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = zonal_stats(zones, str(path), stats=["sum", "mean", "count"])
    return pd.DataFrame(stats, index=zones["district"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="raster edge in pixels")
    parser.add_argument("--zones", type=int, default=500, help="number of districts")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tool (best is kept)")
    args = parser.parse_args()
    folder = Path("/tmp/geo_ntl_bench")
    folder.mkdir(exist_ok=True)
    raster = make_input_scene(folder / f"zonal_{args.size}.tif", args.size, bands=1)
    zones = districts(raster, args.zones)
    times: dict[str, float] = {}
    tables = {}
    for name, run in (
        ("geo_ntl.zonal (exactextract)", run_geo_ntl),
        ("rasterstats", run_rasterstats),
    ):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            tables[name] = run(raster, zones)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    ours, theirs = tables["geo_ntl.zonal (exactextract)"], tables["rasterstats"]
    rel_sum = (ours["sum"] - theirs["sum"]).abs() / theirs["sum"]
    rel_count = (ours["count"] - theirs["count"]).abs() / theirs["count"]
    print(f"raster {args.size} x {args.size} px (uint8, DEFLATE), {len(zones)} districts")
    for name, seconds in times.items():
        print(f"{name:<30} {seconds:8.2f} s (best of {args.repeat})")
    ratio = times["rasterstats"] / times["geo_ntl.zonal (exactextract)"]
    print(f"rasterstats / geo_ntl.zonal: {ratio:.2f}x")
    print(
        f"sum: median |difference| {rel_sum.median():.2e}, max {rel_sum.max():.2e} of rasterstats' "
        f"(edge pixels: coverage-weighted vs centre-in); count max {rel_count.max():.2e}"
    )


if __name__ == "__main__":
    main()
