"""Speed of the ASM enhancer: seconds per image and per megapixel, peak memory, tiled overhead.

Usage: nice python benchmarks/bench_enhance_speed.py [--max 4096] [--threads N] [--repeat 3] [--device cpu]

Prints a markdown table. The CPU is shared, so every figure is the minimum of
``--repeat`` runs and the ratios (s/MP across sizes) matter more than absolutes.
Peak memory is the process's peak resident set (ru_maxrss) growth during the
run, measured in a fresh subprocess per size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
size, threads, repeat, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if threads:
    torch.set_num_threads(threads)
from geo_ntl.enhance import enhance_array
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:size, :size]
img = np.stack([40 * (0.3 + 0.7 * xx / size) * f for f in (1.0, 0.8, 0.6)])
img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
enhance_array(img[:, :128, :128], device=device)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeat):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    enhance_array(img, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size, "threads": torch.get_num_threads(), "min_s": min(times),
                  "median_s": sorted(times)[len(times) // 2], "peak_mb": (peak - base) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sizes = [s for s in (256, 512, 1024, 2048, 4096) if s <= args.max]
    rows = []
    for size in sizes:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(size),
                str(args.threads),
                str(args.repeat),
                args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        mp = size * size / 1e6
        print(
            f"| {size}x{size} | {r['threads']} | {r['min_s']:.3f} | {r['median_s']:.3f} | "
            f"{r['min_s'] / mp:.3f} | {mp / r['min_s']:.2f} | {r['peak_mb']:.0f} |",
            flush=True,
        )
    print(time.strftime("measured %Y-%m-%d %H:%M"), "device", args.device)


if __name__ == "__main__":
    print(
        "| size (RGB uint8) | torch threads | min s | median s | s/MP | MP/s | peak extra RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    main()
