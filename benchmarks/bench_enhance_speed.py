"""Speed of the ASM enhancer: seconds per image and per megapixel, peak memory, tiled overhead.

Usage: nice python benchmarks/bench_enhance_speed.py [--max 4096] [--threads N] [--repeat 3]
       [--device cpu] [--root PATH] [--param NAME=VALUE ...]

Prints a markdown table. The CPU is shared, so every figure is the minimum of
``--repeat`` runs, and besides wall time the table gives the process's CPU time
(user + system, from getrusage) for the same run: with ``--threads 1`` that is
the single-thread cost, which other jobs on the machine inflate much less than
wall time. System time is mostly page faults on freshly allocated arrays.
Peak memory is the process's peak resident set (ru_maxrss) growth during the
run, measured in a fresh subprocess per size. ``--root`` runs the geo_ntl found
in another checkout (e.g. ``git archive <commit> | tar -x -C /tmp/old``), to
compare two versions on the same machine state. ``--param`` (repeatable) passes enhancer
parameters, e.g. ``--param guard=false`` for the seed paper's method without the night-light
guard.
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
if sys.argv[5]:
    sys.path.insert(0, sys.argv[5])
params = json.loads(sys.argv[6]) or None
if threads:
    torch.set_num_threads(threads)
from geo_ntl.enhance import enhance_array
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:size, :size]
img = np.stack([40 * (0.3 + 0.7 * xx / size) * f for f in (1.0, 0.8, 0.6)])
img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
enhance_array(img[:, :128, :128], device=device, params=params)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times, cpus, syss = [], [], []
for _ in range(repeat):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    enhance_array(img, device=device, params=params)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    syss.append(r1.ru_stime - r0.ru_stime)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size, "threads": torch.get_num_threads(), "min_s": min(times),
                  "median_s": sorted(times)[len(times) // 2], "cpu_s": min(cpus),
                  "sys_s": syss[cpus.index(min(cpus))], "peak_mb": (peak - base) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--root", default="", help="checkout whose geo_ntl to time (default: this one)")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="enhancer parameter, JSON value (repeatable), e.g. guard=false",
    )
    args = ap.parse_args()
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
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
                args.root,
                json.dumps(params),
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
            f"{r['cpu_s']:.3f} | {r['sys_s']:.3f} | {r['cpu_s'] / mp:.3f} | "
            f"{r['min_s'] / mp:.3f} | "
            f"{r['peak_mb']:.0f} |",
            flush=True,
        )
    print(
        time.strftime("measured %Y-%m-%d %H:%M"),
        "device",
        args.device,
        args.root or "",
        json.dumps(params) if params else "",
    )


if __name__ == "__main__":
    print(
        "| size (RGB uint8) | torch threads | wall min s | wall median s | CPU s "
        "| of which system s "
        "| CPU s/MP | wall s/MP | peak extra RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    main()
