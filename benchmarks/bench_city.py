"""A synthetic city end to end: simulate overlapping scenes, deblur them all, mosaic.

Makes ``--scenes`` overlapping degraded scenes of one procedurally generated
city with :func:`geo_ntl.simulate.synthetic_scenes`, runs the real command
``geo-ntl deblur DIR --out-dir OUT --mosaic MOSAIC`` on them (the GAN, then the
ASM enhancer, one COG per scene, then a feathered mosaic), and reports the wall
time, the peak RSS (``VmHWM``) of the command and of each of its dask worker processes, the mosaic
size and PSNR of the mosaic's overlap against the simulated truth mosaic.
Saves a quick-look PNG of the degraded and the clean mosaic side by side.

Usage::

    python benchmarks/bench_city.py --scenes 16 --size 1024 --workers 2 --png benchmarks/results/city_quicklook.png
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import dump


def _vm_hwm_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _run_watching_memory(command: list[str], every: float = 0.2) -> dict[int, float]:
    """Run ``command``; return the peak resident set (``VmHWM``, MiB) of it and every process
    it starts (dask workers), read every ``every`` seconds while they run. (``ru_maxrss`` of
    children would start from this process's own peak: Linux carries it across fork + exec.)"""
    import psutil

    proc = subprocess.Popen(command)
    root = psutil.Process(proc.pid)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for member in family:
            hwm = _vm_hwm_mib(member.pid)
            if hwm is not None:
                peaks[member.pid] = max(peaks.get(member.pid, 0.0), hwm)
        time.sleep(every)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, command)
    return peaks


def _quicklook(paths: list[Path], png: Path, gammas: list[float], width: int = 1400) -> None:
    import rasterio
    from PIL import Image

    panels = []
    for path, gamma in zip(paths, gammas, strict=True):
        with rasterio.open(path) as src:
            scale = max(src.width, src.height) / (width // len(paths))
            shape = (src.count, int(src.height / scale), int(src.width / scale))
            array = src.read(out_shape=shape, resampling=rasterio.enums.Resampling.average).astype(
                float
            )
        array = 255 * np.clip(array / 255.0, 0, 1) ** gamma  # display gamma (0.5 for linear light)
        panels.append(np.transpose(array.astype("uint8"), (1, 2, 0)))
    height = max(p.shape[0] for p in panels)
    canvas = np.zeros((height, sum(p.shape[1] for p in panels) + 8 * (len(panels) - 1), 3), "uint8")
    x = 0
    for panel in panels:
        canvas[: panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + 8
    Image.fromarray(canvas).save(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geo_ntl_city"))
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument(
        "--no-enhance", action="store_true", help="GAN only (PSNR vs the linear truth)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from geo_ntl.io import open_scene
    from geo_ntl.metrics import psnr
    from geo_ntl.mosaic import write_mosaic
    from geo_ntl.simulate import synthetic_scenes

    scenes_dir, clean_dir = args.workdir / "scenes", args.workdir / "clean"
    for folder in (scenes_dir, clean_dir):
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pairs = synthetic_scenes(
        args.scenes,
        out_dir=scenes_dir,
        size=args.size,
        overlap=args.overlap,
        seed=args.seed,
        overwrite=True,
    )
    simulate_s = time.perf_counter() - start
    degraded = [p.degraded for p in pairs]
    truths = [p.clean for p in pairs]
    mosaic_path = args.workdir / "city_clean.tif"
    for stale in [mosaic_path, *clean_dir.glob("*.tif")]:
        stale.unlink(missing_ok=True)

    command = [
        sys.executable,
        "-m",
        "geo_ntl",
        "deblur",
        *map(str, degraded),
        "--out-dir",
        str(clean_dir),
        "--mosaic",
        str(mosaic_path),
        "--workers",
        str(args.workers),
        "--device",
        "cpu",
    ] + (["--no-enhance"] if args.no_enhance else [])
    start = time.perf_counter()
    peaks = _run_watching_memory(command)
    deblur_s = time.perf_counter() - start
    peak = max(peaks.values())

    truth_mosaic = write_mosaic(truths, args.workdir / "city_truth.tif", overwrite=True)
    degraded_mosaic = write_mosaic(degraded, args.workdir / "city_degraded.tif", overwrite=True)
    clean = open_scene(mosaic_path).values
    truth = open_scene(truth_mosaic).values
    blurred = open_scene(degraded_mosaic).values
    megapixels = args.scenes * args.size**2 / 1e6
    results = {
        "scenes": args.scenes,
        "scene_size": args.size,
        "overlap": args.overlap,
        "workers": args.workers,
        "enhance": not args.no_enhance,
        "input_megapixels": round(megapixels, 1),
        "mosaic_shape": list(clean.shape),
        "simulate_s": round(simulate_s, 1),
        "deblur_and_mosaic_s": round(deblur_s, 1),
        "s_per_megapixel": round(deblur_s / megapixels, 2),
        "peak_rss_largest_process_mib": round(peak),
        "peak_rss_all_processes_mib": sorted(round(v) for v in peaks.values()),
        "psnr_degraded_vs_truth_db": round(psnr(blurred, truth), 2),
        "psnr_clean_vs_truth_db": round(psnr(clean, truth), 2),
    }
    if args.png:
        # Linear radiance gets display gamma 0.5 (as the sample AOI's quick-look); the enhancer's
        # output is already a display image.
        _quicklook([degraded_mosaic, mosaic_path], args.png, [0.5, 0.5 if args.no_enhance else 1.0])
        results["quicklook"] = str(args.png)
    if not math.isfinite(results["psnr_clean_vs_truth_db"]):
        raise SystemExit("PSNR is not finite: the mosaic is empty")
    dump(results, args.json)


if __name__ == "__main__":
    main()
