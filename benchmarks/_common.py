"""Helpers shared by the benchmark scripts: synthetic inputs, timing, peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def make_input_scene(
    path: Path, size: int, *, bands: int = 3, seed: int = 0, strip: int = 1024
) -> Path:
    """Write a night-light-like uint8 GeoTIFF strip by strip (never whole in memory)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint8",
        crs="EPSG:3067",
        transform=from_origin(385000, 6672000, 0.92, 0.92),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="DEFLATE",
        BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, strip):
            h = min(strip, size - row)
            base = rng.normal(18, 6, (bands, h, size))
            lamps = rng.random((h, size)) < 0.004
            base[:, lamps] += rng.uniform(120, 240, (bands, int(lamps.sum())))
            dst.write(np.clip(base, 0, 255).astype("uint8"), window=((row, row + h), (0, size)))
    return path


def timed(func, *args, repeat: int = 1, **kwargs) -> float:
    """Best wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def vm_hwm_mib() -> float:
    """Peak resident set of this process's memory map (``VmHWM``), in MiB.

    Unlike ``ru_maxrss``, which Linux carries over from the parent through
    fork and exec (a child started by a big process "peaks" at the parent's
    size), ``VmHWM`` starts afresh with each program.
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024.0


def peak_rss_of(code: str) -> tuple[float, str]:
    """Run Python `code` in a child process; return its peak RSS (VmHWM) in MiB and its stdout."""
    probe = "\nimport sys as _s, _common as _c\nprint('VMHWM', _c.vm_hwm_mib(), file=_s.stderr)\n"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n" + code + probe,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = next(
        float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("VMHWM")
    )
    return peak, proc.stdout


def dump(results: dict, out: Path | None) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
