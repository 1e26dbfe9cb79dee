"""Scaling of the ASM enhancer on dask.distributed, measured side by side in one run.

Four runs, each writing a COG:

* ``single``: a fresh process, dask's threaded scheduler, torch and BLAS with 1 thread each;
* ``cluster-1``: an embedded LocalCluster of 1 worker process x 1 thread;
* ``cluster-2``: an embedded LocalCluster of 2 worker processes x 1 thread;
* ``pair``: two ``single`` processes at once, one scene each (:func:`run_pair`): what the
  machine's two cores give to two independent copies of the work, without dask.distributed.

They run in rounds of (single, cluster-1, cluster-2, pair) (``--rounds``, default 3),
best time of each kept. Each configuration starts fresh every round and first
enhances, untimed, a second scene of the same size (other pixels): the first
scene a process runs is slower (measured 7-23 % for the single process, 33-62 %
for a fresh cluster: glibc maps every large temporary afresh until its mmap
threshold has grown, and workers import torch on their first task), and a
warm-up on a different scene keeps GDAL's block cache from serving the timed
scene. That cold start is printed too. Prints the throughput of each,
``cluster-2 / cluster-1`` (goal >= 1.6 on a 2-core machine), ``cluster-1 /
single`` (the distributed path's overhead per worker; goal >= 0.9), ``2 single /
pair`` (the ceiling that ``cluster-2 / cluster-1`` is read against), whether
the three outputs are byte-identical, and the peak RSS of each worker process
(goal <= 2 GB for any scene size: memory depends on the tile, not the scene).

With ``--memory-only`` it makes one timed run on a cluster of ``--workers``
workers and reports the workers' peak RSS: the check that memory per worker is
bounded on a 20000 x 20000 x 3 scene.

Usage::

    python benchmarks/bench_distributed.py --size 4096 --tile 1024 [--rounds 5]
    python benchmarks/bench_distributed.py --size 20000 --tile 1024 --memory-only --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import dump, make_input_scene

#: Timed runs of each configuration (the best is reported).
REPEAT = 3


def _peak_rss_mib() -> float:
    from _common import vm_hwm_mib  # workers import it from the script's folder

    return vm_hwm_mib()


def enhance_scene(src: Path, dst: Path, tile: int) -> None:
    from geo_ntl.enhance import enhance
    from geo_ntl.io import open_scene, write_cog

    scene = open_scene(src, chunks=tile)
    write_cog(enhance(scene, device="cpu", tile=tile), dst, overwrite=True, stage="enhance")


def _timed(func, *args) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def _single_process(
    src: Path, warm: Path, dst: Path, tile: int, barrier: object | None = None
) -> tuple[float, float]:
    import dask
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    # One BLAS thread too, as dask.distributed gives its workers (OPENBLAS_NUM_THREADS=1 etc.).
    with threadpool_limits(1), dask.config.set(scheduler="threads", num_workers=1):
        cold = _timed(enhance_scene, warm, dst, tile)
        if barrier is not None:
            barrier.wait()  # the pair's timed runs start together
        return cold, _timed(enhance_scene, src, dst, tile)


def run_single(src: Path, warm: Path, dst: Path, tile: int) -> tuple[float, float]:
    """(cold, warm) seconds in a fresh process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_single_process, src, warm, dst, tile).result()


def run_pair(src: Path, warm: Path, workdir: Path, tile: int) -> float:
    """Seconds for two fresh single processes that each enhance one scene at the same time.

    Each warms up on the other's scene, both wait at a barrier, then both are timed: two scenes
    in the slower one's time. No dask.distributed at all, so ``2 * single / pair`` is what this
    machine's two cores give to two independent copies of the work -- the ceiling beside which
    ``cluster-2 / cluster-1`` is read.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        first = pool.submit(_single_process, src, warm, workdir / "p1.tif", tile, barrier)
        second = pool.submit(_single_process, warm, src, workdir / "p2.tif", tile, barrier)
        return max(first.result()[1], second.result()[1])


def run_cluster(
    src: Path, warm: Path | None, dst: Path, tile: int, workers: int
) -> tuple[float, float, list[float]]:
    """(cold, warm) seconds on a fresh cluster, and the workers' peak RSS."""
    from geo_ntl.parallel import compute_context

    with compute_context(workers=workers, threads_per_worker=1, dashboard=False) as context:
        cold = _timed(enhance_scene, warm, dst, tile) if warm is not None else float("nan")
        elapsed = _timed(enhance_scene, src, dst, tile)
        rss = list(context.client.run(_peak_rss_mib).values())
    return cold, elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geo_ntl_bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=REPEAT, help="rounds of the three runs")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="with --memory-only")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = make_input_scene(args.workdir / f"in_{args.size}.tif", args.size)
    megapixels = args.size**2 / 1e6
    if args.memory_only:
        out = args.workdir / f"mem_{args.size}.tif"
        _, t, rss = run_cluster(src, None, out, args.tile, args.workers)
        dump(
            {
                "size": args.size,
                "tile": args.tile,
                "workers": args.workers,
                "seconds": round(t, 1),
                "mp_s": round(megapixels / t, 3),
                "worker_peak_rss_mib": [round(v) for v in rss],
            },
            args.json,
        )
        out.unlink(missing_ok=True)
        return

    warm = make_input_scene(args.workdir / f"warm_{args.size}.tif", args.size, seed=1)
    # Rounds of (single, 1 worker, 2 workers), so that drifts in the machine's speed hit all three
    # alike; a fresh process or cluster each round (its start is not timed).
    runs: dict[str, list[float]] = {"single": [], "cluster1": [], "cluster2": [], "pair": []}
    cold: dict[str, list[float]] = {"single": [], "cluster1": [], "cluster2": []}
    rss1: list[float] = []
    rss2: list[float] = []
    for _ in range(args.rounds):
        c, t = run_single(src, warm, args.workdir / "s.tif", args.tile)
        cold["single"].append(c)
        runs["single"].append(t)
        c, t, rss1 = run_cluster(src, warm, args.workdir / "c1.tif", args.tile, 1)
        cold["cluster1"].append(c)
        runs["cluster1"].append(t)
        c, t, rss2 = run_cluster(src, warm, args.workdir / "c2.tif", args.tile, 2)
        cold["cluster2"].append(c)
        runs["cluster2"].append(t)
        runs["pair"].append(run_pair(src, warm, args.workdir, args.tile))
    t0, t1, t2, tp = (min(runs[k]) for k in ("single", "cluster1", "cluster2", "pair"))
    same = (
        (args.workdir / "s.tif").read_bytes()
        == (args.workdir / "c1.tif").read_bytes()
        == (args.workdir / "c2.tif").read_bytes()
    )
    dump(
        {
            "size": args.size,
            "tile": args.tile,
            "runs_s": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
            "cold_first_scene_s": {k: [round(v, 2) for v in vs] for k, vs in cold.items()},
            "single_s": round(t0, 1),
            "cluster1_s": round(t1, 1),
            "cluster2_s": round(t2, 1),
            "single_mp_s": round(megapixels / t0, 3),
            "cluster1_mp_s": round(megapixels / t1, 3),
            "cluster2_mp_s": round(megapixels / t2, 3),
            "pair_s": round(tp, 1),
            "speedup_2_vs_1_workers": round(t1 / t2, 2),
            "pair_vs_single_throughput": round(2 * t0 / tp, 2),
            "cluster1_vs_single_throughput": round(t0 / t1, 3),
            "byte_identical_outputs": same,
            "worker_peak_rss_mib": [round(v) for v in rss1 + rss2],
        },
        args.json,
    )


if __name__ == "__main__":
    main()
