"""Does the clustering of what `geo-ntl deblur` writes agree with the truth's?

Usage: nice python benchmarks/bench_cluster_faithful.py [--cities 2] [--size 1024]
       [--permutations 999] [--json benchmarks/results/cluster_faithful.json]

For the sample AOI (scene, truth, OSM roads and permeable surfaces) and for held-out simulated
cities (geo_ntl.simulate's procedural cities with seeds never used in training, their own road
and permeable layers), runs `geo_ntl.spatial.cluster` (50 m square cells, queen weights, 999
permutations, seed 0) on:

* ``truth`` -- the clean radiance,
* ``degraded`` -- the scene as the sensor saw it,
* ``deblur`` -- the default output of `geo-ntl deblur` (the GAN with flux conservation),
* ``gan_bare`` -- the GAN without flux conservation (the previous default without enhancer),
* ``deblur_enhance`` -- `geo-ntl deblur --enhance` (the enhanced rendition, for viewing),

and reports Moran's I of night light, the bivariate Moran's I with road density and with
permeable fraction, the share of LISA labels equal to the truth's, and any significant
(p <= 0.05) global result whose sign differs from the truth's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AOI = ROOT / "sample_aoi" / "helsinki"
KEYS = ("moran_ntl", "moran_bv_ntl_road_density", "moran_bv_ntl_permeable_fraction")


def _aoi():
    from geo_ntl.io import open_scene

    truth = open_scene(AOI / "truth.tif").load()
    scene = open_scene(AOI / "scene.tif").load()
    return truth, scene, str(AOI / "roads.gpkg"), str(AOI / "permeable.gpkg")


def _city(seed: int, size: int):
    from geo_ntl.simulate.city import city_grid, generate_city
    from geo_ntl.simulate.degrade import degrade
    from geo_ntl.simulate.lighting import light_scene
    from geo_ntl.simulate.render import render_scene, to_uint8
    from geo_ntl.simulate.scenes import to_dataarray

    crs = "EPSG:3067"
    layout, light, noise = np.random.SeedSequence(seed).generate_state(3)
    transform, bounds = city_grid((size, size), resolution=0.92, origin=(385000.0, 6672000.0))
    city = generate_city(bounds, seed=int(layout), crs=crs)
    city = light_scene(city, seed=int(light))
    radiance = render_scene(city, transform=transform, shape=(size, size), seed=int(light))
    degraded = degrade(radiance, seed=int(noise))
    wrap = lambda a: to_dataarray(to_uint8(a), transform=transform, crs=crs)  # noqa: E731
    return wrap(radiance), wrap(degraded), city.roads, city.permeable


def _variants(scene) -> dict:
    from geo_ntl.deblur.inference import deblur_array  # the standalone GAN (gan-direct)
    from geo_ntl.enhance import enhance_array

    x = scene.values
    out = deblur_array(x, device="cpu")
    return {
        "deblur": out,
        "gan_bare": deblur_array(x, device="cpu", conserve=False),
        "deblur_enhance": enhance_array(out, device="cpu"),
    }


def _cluster(da, roads, permeable, permutations: int):
    import warnings

    from geo_ntl.spatial.api import cluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cluster(
            da,
            roads=roads,
            permeable=permeable,
            cell_size=50,
            permutations=permutations,
            seed=0,
            allow_enhanced=True,
        )


def compare(truth, scene, roads, permeable, permutations: int) -> dict:
    arrays = {"truth": truth.values, "degraded": scene.values, **_variants(scene)}
    results = {
        name: _cluster(truth.copy(data=a), roads, permeable, permutations)
        for name, a in arrays.items()
    }
    ref = results["truth"]
    rows = {}
    for name, res in results.items():
        row = {k: {"I": res.global_stats[k].I, "p": res.global_stats[k].p_sim} for k in KEYS}
        row["lisa_equal"] = float(
            np.mean(res.local_stats["ntl"].labels == ref.local_stats["ntl"].labels)
        )
        row["sign_flips"] = [
            k
            for k in KEYS
            if res.global_stats[k].p_sim <= 0.05
            and np.sign(res.global_stats[k].I) != np.sign(ref.global_stats[k].I)
        ]
        rows[name] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cities", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from geo_ntl.deblur.blur_transfer import HELD_OUT_SEED

    torch.set_num_threads(2)
    out = {"sample_aoi": compare(*_aoi(), args.permutations)}
    for i in range(args.cities):
        seed = HELD_OUT_SEED + 200 + i
        out[f"city_{seed}"] = compare(*_city(seed, args.size), args.permutations)
    head = "| scene | input | Moran's I | NTL x roads | NTL x permeable | LISA = truth | flips |"
    print(head)
    print("|---|---|---|---|---|---|---|")
    for scene, rows in out.items():
        for name, row in rows.items():
            cells = " | ".join(f"{row[k]['I']:+.3f} (p {row[k]['p']:.3f})" for k in KEYS)
            flips = ", ".join(row["sign_flips"]) or "none"
            print(f"| {scene} | {name} | {cells} | {100 * row['lisa_equal']:.1f} % | {flips} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
