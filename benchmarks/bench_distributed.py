"""Scaling of the ASM enhancer on dask.distributed, measured side by side in one run.

Four runs, each writing one COG per scene:

* ``single``: a fresh process, dask's threaded scheduler, torch and BLAS with 1 thread each,
  glibc's allocator tuned as ``geo-ntl`` tunes it (:func:`geo_ntl.allocator.tune_allocator`);
* ``cluster-1``: an embedded LocalCluster of 1 worker process x 1 thread;
* ``cluster-2``: an embedded LocalCluster of 2 worker processes x 1 thread;
* ``pair``: two ``single`` processes at once, each with half of the scenes (:func:`run_pair`):
  what the machine's two cores give to two independent copies of the work, without
  dask.distributed.

``--scenes K`` (default 1) times K scenes of ``--size`` (distinct pixels) per run, through
:func:`geo_ntl.batch.run_jobs` as ``geo-ntl enhance`` runs them: one after the other in the
single process, :func:`geo_ntl.parallel.scenes_in_flight` (2) at a time on the clusters.
With one scene the pair runs that scene and the warm-up scene.

They run in rounds of (single, cluster-1, cluster-2, pair) (``--rounds``, default 3),
best time of each kept. Each configuration starts fresh every round and first
enhances, untimed, a scene of the same size that is not timed (other pixels): the first
scene a process runs is slower (measured 7-23 % for the single process, 33-62 %
for a fresh cluster: glibc maps every large temporary afresh until its mmap
threshold has grown, and workers import torch on their first task), and a
warm-up on a different scene keeps GDAL's block cache from serving the timed
scenes. That cold start is printed too. Prints the throughput of each,
``cluster-2 / cluster-1`` (goal >= 1.6 on a 2-core machine), ``cluster-1 /
single`` (the distributed path's overhead per worker; goal >= 0.9), ``pair /
single`` (the ceiling that ``cluster-2 / cluster-1`` is read against), whether
the outputs are byte-identical across configurations, and the peak RSS of each worker
process (goal <= 2 GB for any scene size: memory depends on the tile, not the scene).

With ``--memory-only`` it makes one timed run on a cluster of ``--workers``
workers and reports the workers' peak RSS: the check that memory per worker is
bounded on a 20000 x 20000 x 3 scene (``--scenes 2``: two such scenes, two in flight).

Usage::

    python benchmarks/bench_distributed.py --size 4096 --tile 1024 [--rounds 5] [--scenes 4] [--compress ZSTD]
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


def enhance_scenes(
    srcs: list[Path], dsts: list[Path], tile: int, in_flight: int = 1, compress: str = "DEFLATE"
) -> None:
    """Enhance each scene into its COG, ``in_flight`` at a time, as ``geo-ntl enhance`` does."""
    from geo_ntl.batch import SceneJob, run_jobs
    from geo_ntl.enhance import enhance
    from geo_ntl.io import open_scene, write_cog

    def process(job: SceneJob) -> None:
        scene = open_scene(job.scene, chunks=tile)
        result = enhance(scene, device="cpu", tile=tile)
        write_cog(result, job.out, overwrite=True, stage="enhance", compress=compress)

    jobs = [SceneJob(src, dst, "", False) for src, dst in zip(srcs, dsts, strict=True)]
    run_jobs(jobs, process, in_flight=in_flight)


def _timed(func, *args) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def _single_process(
    srcs: list[Path],
    warm: Path,
    dsts: list[Path],
    tile: int,
    compress: str,
    barrier: object | None = None,
) -> tuple[float, float]:
    import dask
    import torch
    from threadpoolctl import threadpool_limits

    from geo_ntl.allocator import tune_allocator

    tune_allocator()  # as `geo-ntl enhance --workers 0` does; cluster workers get it at spawn
    torch.set_num_threads(1)
    # One BLAS thread too, as dask.distributed gives its workers (OPENBLAS_NUM_THREADS=1 etc.).
    with threadpool_limits(1), dask.config.set(scheduler="threads", num_workers=1):
        cold = _timed(enhance_scenes, [warm], [dsts[0]], tile, 1, compress)
        if barrier is not None:
            barrier.wait()  # the pair's timed runs start together
        return cold, _timed(enhance_scenes, srcs, dsts, tile, 1, compress)


def run_single(
    srcs: list[Path], warm: Path, dsts: list[Path], tile: int, compress: str
) -> tuple[float, float]:
    """(cold, warm) seconds in a fresh process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_single_process, srcs, warm, dsts, tile, compress).result()


def run_pair(
    srcs: list[Path], warm: Path, workdir: Path, tile: int, compress: str
) -> tuple[float, int]:
    """Seconds for two fresh single processes that share the scenes, and how many they ran.

    The scenes are dealt alternately to the two processes (with one scene, the second runs the
    warm-up scene and warms up on the first). Each warms up on a scene it will not time, both wait
    at a barrier, then both are timed: all scenes in the slower one's time. No dask.distributed
    at all, so ``pair / single`` throughput is what this machine's two cores give to two
    independent copies of the work -- the ceiling beside which ``cluster-2 / cluster-1`` is read.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    halves = [srcs[0::2], srcs[1::2]] if len(srcs) > 1 else [srcs, [warm]]
    warms = [warm, warm] if len(srcs) > 1 else [warm, srcs[0]]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        futures = [
            pool.submit(
                _single_process,
                half,
                warm_scene,
                [workdir / f"p{i}_{k}.tif" for k in range(len(half))],
                tile,
                compress,
                barrier,
            )
            for i, (half, warm_scene) in enumerate(zip(halves, warms, strict=True))
        ]
        return max(f.result()[1] for f in futures), sum(len(h) for h in halves)


def run_cluster(
    srcs: list[Path], warm: Path | None, dsts: list[Path], tile: int, workers: int, compress: str
) -> tuple[float, float, list[float]]:
    """(cold, warm) seconds on a fresh cluster, and the workers' peak RSS."""
    from geo_ntl.parallel import compute_context, scenes_in_flight

    with compute_context(workers=workers, threads_per_worker=1, dashboard=False) as context:
        in_flight = scenes_in_flight(context)
        cold = (
            _timed(enhance_scenes, [warm], [dsts[0]], tile, in_flight, compress)
            if warm is not None
            else float("nan")
        )
        elapsed = _timed(enhance_scenes, srcs, dsts, tile, in_flight, compress)
        rss = list(context.client.run(_peak_rss_mib).values())
    return cold, elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--scenes", type=int, default=1, help="timed scenes per run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geo_ntl_bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=REPEAT, help="rounds of the four runs")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="with --memory-only")
    parser.add_argument("--compress", default="DEFLATE", help="COG compression of the outputs")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    srcs = [
        make_input_scene(
            args.workdir / (f"in_{args.size}.tif" if k == 0 else f"in_{args.size}_{k}.tif"),
            args.size,
            seed=0 if k == 0 else 10 + k,
        )
        for k in range(args.scenes)
    ]
    megapixels = args.scenes * args.size**2 / 1e6

    def outputs(name: str) -> list[Path]:
        return [args.workdir / f"{name}{k}.tif" for k in range(args.scenes)]

    if args.memory_only:
        mem = outputs(f"mem_{args.size}_")
        _, t, rss = run_cluster(srcs, None, mem, args.tile, args.workers, args.compress)
        dump(
            {
                "size": args.size,
                "tile": args.tile,
                "scenes": args.scenes,
                "workers": args.workers,
                "seconds": round(t, 1),
                "mp_s": round(megapixels / t, 3),
                "worker_peak_rss_mib": [round(v) for v in rss],
            },
            args.json,
        )
        for path in mem:
            path.unlink(missing_ok=True)
        return

    warm = make_input_scene(args.workdir / f"warm_{args.size}.tif", args.size, seed=1)
    # Rounds of (single, 1 worker, 2 workers, pair), so that drifts in the machine's speed hit all
    # four alike; a fresh process or cluster each round (its start is not timed).
    runs: dict[str, list[float]] = {"single": [], "cluster1": [], "cluster2": [], "pair": []}
    cold: dict[str, list[float]] = {"single": [], "cluster1": [], "cluster2": []}
    rss1: list[float] = []
    rss2: list[float] = []
    pair_scenes = 0
    for _ in range(args.rounds):
        c, t = run_single(srcs, warm, outputs("s"), args.tile, args.compress)
        cold["single"].append(c)
        runs["single"].append(t)
        c, t, rss1 = run_cluster(srcs, warm, outputs("c1_"), args.tile, 1, args.compress)
        cold["cluster1"].append(c)
        runs["cluster1"].append(t)
        c, t, rss2 = run_cluster(srcs, warm, outputs("c2_"), args.tile, 2, args.compress)
        cold["cluster2"].append(c)
        runs["cluster2"].append(t)
        t, pair_scenes = run_pair(srcs, warm, args.workdir, args.tile, args.compress)
        runs["pair"].append(t)
    t0, t1, t2, tp = (min(runs[k]) for k in ("single", "cluster1", "cluster2", "pair"))
    same = all(
        a.read_bytes() == b.read_bytes() == c.read_bytes()
        for a, b, c in zip(outputs("s"), outputs("c1_"), outputs("c2_"), strict=True)
    )
    dump(
        {
            "size": args.size,
            "tile": args.tile,
            "scenes": args.scenes,
            "compress": args.compress,
            "runs_s": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
            "cold_first_scene_s": {k: [round(v, 2) for v in vs] for k, vs in cold.items()},
            "single_s": round(t0, 1),
            "cluster1_s": round(t1, 1),
            "cluster2_s": round(t2, 1),
            "single_mp_s": round(megapixels / t0, 3),
            "cluster1_mp_s": round(megapixels / t1, 3),
            "cluster2_mp_s": round(megapixels / t2, 3),
            "pair_s": round(tp, 1),
            "pair_scenes": pair_scenes,
            "speedup_2_vs_1_workers": round(t1 / t2, 2),
            "pair_vs_single_throughput": round((pair_scenes / tp) / (args.scenes / t0), 2),
            "cluster1_vs_single_throughput": round(t0 / t1, 3),
            "byte_identical_outputs": same,
            "worker_peak_rss_mib": [round(v) for v in rss1 + rss2],
        },
        args.json,
    )


if __name__ == "__main__":
    main()
