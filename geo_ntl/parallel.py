"""Where the work runs: in this process, an embedded dask cluster, or an existing one.

geo_ntl never schedules work itself: every stage builds a dask graph, and
:func:`compute_context` decides who computes it.

* ``workers=0`` -- dask's threaded scheduler in this process (no cluster).
* ``workers=N`` (N >= 1) -- an embedded :class:`distributed.LocalCluster` of N
  worker processes (at most :data:`MAX_WORKERS_PER_CORE` per CPU core). With
  ``gpu=True`` and GPUs present, one worker per GPU instead (N at most the GPU
  count, default all GPUs): a dask-cuda ``LocalCUDACluster`` when dask-cuda is
  installed, else worker processes that each see one GPU (``CUDA_VISIBLE_DEVICES``);
  either way each worker declares ``GPU=1``, and its threads (cores // N) do the
  reads, CPU passes and writes while its model tasks take the GPU one at a time.
* ``scheduler=ADDRESS`` (or the ``DASK_SCHEDULER_ADDRESS`` environment
  variable) -- join a running cluster, e.g. one started with ``dask scheduler``
  and ``dask worker ADDRESS`` on several machines, or by dask-jobqueue or the
  dask Kubernetes operator. Workers must see the input and output folders
  (a shared file system), because they read the scenes and write their own
  blocks of the output.
* ``workers=None`` (the default, "auto") -- a LocalCluster with one worker per
  core when the job is large (several scenes, or more than
  :data:`AUTO_CLUSTER_MEGAPIXELS`), the threaded scheduler otherwise: starting
  worker processes costs seconds, which a laptop-sized scene does not repay.

Embedded workers start with geo_ntl's allocator settings
(:data:`geo_ntl.allocator.ALLOCATOR_ENVIRON`) in place of the
``MALLOC_TRIM_THRESHOLD_=65536`` that dask.distributed puts in its workers'
environment by default: that setting freezes glibc's mmap threshold, so every
large torch temporary becomes a fresh mmap that faults its pages in (the ASM
enhancer runs 1.9x slower with it); geo_ntl's keep freed tile-sized blocks in
the process for the next tile (see :mod:`geo_ntl.allocator`).
Workers you start yourself for geo_ntl should get the same environment (the
README's "Where the work runs" section lists it). Their statistical profiler is
off as well (``distributed.worker.profile.enabled``), which costs about 30 % of
the enhancer's task time on a 2-core machine.

Model tasks (the GAN's forward passes, the enhancer's tiles) ask for the ``GPU``
worker resource when the cluster's workers declare one (``dask worker ...
--resources GPU=1``), so they run only on those workers, one at a time per worker
(:func:`geo_ntl._device.plan_device`, :func:`geo_ntl.tiling.apply_tiled`'s ``resources``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from geo_ntl._device import GPU_RESOURCE
from geo_ntl.exceptions import ClusterError, InputError

__all__ = [
    "AUTO_CLUSTER_MEGAPIXELS",
    "CLUSTER_SCENES_IN_FLIGHT",
    "DEFAULT_CONNECT_TIMEOUT",
    "ComputeContext",
    "active_client",
    "compute_context",
    "scenes_in_flight",
]

log = logging.getLogger(__name__)

#: Jobs larger than this many megapixels get an embedded cluster under ``workers=None``.
AUTO_CLUSTER_MEGAPIXELS = 400.0
#: Seconds to wait for an existing scheduler to answer.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Scenes a cluster works on at once in a multi-scene run (see :func:`scenes_in_flight`).
CLUSTER_SCENES_IN_FLIGHT = 2
#: Most embedded worker processes per CPU core (``workers`` above it is refused): each worker
#: is a process with its own memory, and 64 of them on 2 cores spent the run starting up.
MAX_WORKERS_PER_CORE = 4


def max_workers() -> int:
    """Return the most embedded workers :func:`compute_context` starts on this machine."""
    return MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)


@dataclass(frozen=True)
class ComputeContext:
    """What :func:`compute_context` set up.

    Attributes
    ----------
    client : distributed.Client or None
        The client in use, None for the threaded scheduler.
    kind : str
        ``"threads"``, ``"local-cluster"``, ``"local-cuda-cluster"`` or ``"scheduler"``.
    dashboard : str or None
        Dashboard URL, when there is one.
    gpu_resource : bool
        Whether workers declare a ``GPU`` resource.
    """

    client: Any
    kind: str
    dashboard: str | None
    gpu_resource: bool


def _cuda_count() -> int:
    """Return the number of CUDA GPUs this process sees."""
    from geo_ntl._device import local_gpus

    return len(local_gpus())


def active_client() -> Any:
    """Return the dask.distributed client in use, or None for dask's local schedulers."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def worker_gpus(client: Any) -> tuple[dict[str, list[tuple[int, int]]], bool]:
    """Return the GPUs of the workers that run model tasks, and whether they declare them.

    Parameters
    ----------
    client : distributed.Client
        The client in use.

    Returns
    -------
    dict of str to list of (int, int), bool
        Worker address -> compute capability of each GPU it sees, for the workers that
        declare a ``GPU`` resource when any does (else for all); and whether any does.
    """
    from geo_ntl._device import local_gpus

    info = client.scheduler_info(n_workers=-1).get("workers", {})
    declaring = [a for a, w in info.items() if w.get("resources", {}).get("GPU", 0) > 0]
    seen = client.run(local_gpus, workers=declaring or None)
    return {a: [tuple(c) for c in caps] for a, caps in seen.items()}, bool(declaring)


def _wants_cluster(workers: int | None, megapixels: float, n_scenes: int) -> bool:
    if workers is None:
        return n_scenes > 1 or megapixels > AUTO_CLUSTER_MEGAPIXELS
    return workers > 0


@contextlib.contextmanager
def compute_context(
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    scheduler: str | None = None,
    gpu: bool = False,
    memory_limit: str | float = "auto",
    megapixels: float = 0.0,
    n_scenes: int = 1,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    dashboard: bool = True,
) -> Iterator[ComputeContext]:
    """Set up the scheduler that computes geo_ntl's dask graphs inside the block.

    Parameters
    ----------
    workers : int, optional
        0 for the in-process threaded scheduler, N for an embedded cluster of N
        worker processes, None to decide from the job's size (see module docs).
    threads_per_worker : int, optional
        Threads per embedded worker; defaults to cores // workers.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); defaults to the
        ``DASK_SCHEDULER_ADDRESS`` environment variable.
    gpu : bool, default False
        Prefer one worker per GPU (dask-cuda) for an embedded cluster.
    memory_limit : str or float, default "auto"
        Per-worker memory limit of an embedded cluster.
    megapixels, n_scenes : float, int
        Size of the job, for ``workers=None``.
    timeout : float, default DEFAULT_CONNECT_TIMEOUT
        Seconds to wait for ``scheduler`` to answer.
    dashboard : bool, default True
        Serve and log a dashboard link for embedded clusters.

    Yields
    ------
    ComputeContext

    Raises
    ------
    ClusterError
        If the scheduler does not answer within ``timeout``.
    InputError
        If ``workers`` or ``threads_per_worker`` is negative.
    """
    if workers is not None and workers < 0:
        raise InputError(f"workers must be 0 or more, got {workers}")
    if workers is not None and workers > max_workers():
        raise InputError(
            f"workers={workers} is more than {max_workers()} ({MAX_WORKERS_PER_CORE} per CPU "
            f"core, {os.cpu_count() or 1} here); use at most {max_workers()}, or join a larger "
            "cluster with `scheduler`",
            options={f"workers={workers}": "workers", "`scheduler`": "scheduler"},
        )
    if threads_per_worker is not None and threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be 1 or more, got {threads_per_worker}")
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        with _join(address, timeout) as context:
            yield context
        return
    if not _wants_cluster(workers, megapixels, n_scenes):
        yield ComputeContext(client=None, kind="threads", dashboard=None, gpu_resource=False)
        return
    with _embedded(workers, threads_per_worker, gpu, memory_limit, dashboard) as context:
        yield context


@contextlib.contextmanager
def _join(address: str, timeout: float) -> Iterator[ComputeContext]:
    from distributed import Client

    quiet_dask_loggers()
    try:
        _parse_scheduler_address(address)
        client = Client(address, timeout=timeout)
    except (ValueError, TypeError) as exc:
        _forget_failed_client()
        raise ClusterError(
            f"`scheduler` (or $DASK_SCHEDULER_ADDRESS) {address!r} is not a dask scheduler "
            f"address ({exc}); give one such as tcp://HOST:8786",
            options={"`scheduler`": "scheduler"},
        ) from exc
    except Exception as exc:  # OSError, TimeoutError, and distributed's own failures to connect
        _forget_failed_client()
        raise ClusterError(
            f"no dask scheduler answered at {address} within {timeout:g} s; check the address "
            "or start one with `dask scheduler` and `dask worker ADDRESS`"
        ) from exc
    try:
        info = client.scheduler_info()
        has_gpu = any("GPU" in w.get("resources", {}) for w in info.get("workers", {}).values())
        log.info("joined dask scheduler %s (dashboard: %s)", address, client.dashboard_link)
        yield ComputeContext(client, "scheduler", client.dashboard_link, has_gpu)
    finally:
        client.close()


def _parse_scheduler_address(address: str) -> None:
    """Raise ValueError for an address dask cannot connect to (before any connection)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme in ("tcp", "tls", "ws", "wss"):
        host, port = parse_host_port(location)
        if not host:
            raise ValueError(f"no host in address {address!r}")


def _forget_failed_client() -> None:
    """Drop the Client whose connection failed from distributed's default client.

    It stays registered otherwise, and later work in this process would compute on it.
    """
    try:
        from distributed.client import _get_global_client, _set_global_client
    except ImportError:  # pragma: no cover - private API of distributed
        return
    stale = _get_global_client()
    if stale is not None and stale.status != "running":
        with contextlib.suppress(Exception):
            stale.close()
        _set_global_client(None)


@contextlib.contextmanager
def _embedded(
    workers: int | None,
    threads_per_worker: int | None,
    gpu: bool,
    memory_limit: str | float,
    dashboard: bool,
) -> Iterator[ComputeContext]:
    import dask

    # Imported before the settings below: its configuration defaults are registered on import,
    # and a dask.config.set made before that creates the "distributed" section and, on exit,
    # drops it whole, the defaults merged into it since included, so that the next cluster in
    # the process failed (KeyError: 'comm').
    import distributed  # noqa: F401

    from geo_ntl.allocator import ALLOCATOR_ENVIRON
    from geo_ntl.io import gdal_cache_environ

    environ = {
        **dask.config.get("distributed.nanny.pre-spawn-environ", default={}),
        **ALLOCATOR_ENVIRON,
        **gdal_cache_environ(),
    }
    settings = {
        "distributed.nanny.pre-spawn-environ": environ,
        # The statistical profiler samples every thread's stack every 10 ms; on the
        # enhancer's many small torch calls it cost ~30% of task time here.
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(settings):
        with _start_cluster(workers, threads_per_worker, gpu, memory_limit, dashboard) as context:
            yield context


@contextlib.contextmanager
def _start_cluster(
    workers: int | None,
    threads_per_worker: int | None,
    gpu: bool,
    memory_limit: str | float,
    dashboard: bool,
) -> Iterator[ComputeContext]:
    from distributed import Client, LocalCluster

    quiet_dask_loggers()
    cores = os.cpu_count() or 1
    dashboard_address = ":0" if dashboard else None
    n_gpus = _cuda_count() if gpu else 0
    if n_gpus:
        cluster, kind = _gpu_cluster(
            workers, n_gpus, threads_per_worker, memory_limit, dashboard_address
        )
    else:
        n_workers = workers or cores
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker or max(1, cores // n_workers),
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
            silence_logs=dask_log_level(),
        )
        kind = "local-cluster"
    with cluster, Client(cluster) as client:
        link = client.dashboard_link if dashboard else None
        if link:
            log.info("dask dashboard: %s", link)
        yield ComputeContext(client, kind, link, gpu_resource=bool(n_gpus))


def _gpu_cluster(
    workers: int | None,
    n_gpus: int,
    threads_per_worker: int | None,
    memory_limit: str | float,
    dashboard_address: str | None,
) -> tuple[Any, str]:
    """Start one worker per GPU (``workers`` of the ``n_gpus``), each declaring ``GPU=1``.

    Each worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``), so ``cuda`` in its tasks is
    that GPU, and its threads share the cores: its model tasks take the GPU one at a time
    (the ``GPU`` resource), while the others read, run the CPU passes and write.
    """
    if workers is not None and workers > n_gpus:
        raise InputError(
            f"workers={workers} is more than the {n_gpus} GPU(s) of this machine: an embedded "
            f"cluster runs one worker per GPU (its threads do the reads and writes); use "
            f"workers={n_gpus} or fewer, or device='cpu' for CPU workers",
            options={f"workers={n_gpus}": "workers", "device='cpu'": "device"},
        )
    n_workers = workers or n_gpus
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n_workers)
    common = {
        "threads_per_worker": threads,
        "memory_limit": memory_limit,
        "dashboard_address": dashboard_address,
        "resources": dict(GPU_RESOURCE),
        "silence_logs": dask_log_level(),
    }
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        log.info(
            "dask-cuda is not installed: %d worker process(es), each with one GPU "
            "(CUDA_VISIBLE_DEVICES)",
            n_workers,
        )
        return _visible_device_cluster(n_workers, common), "local-cluster"
    devices = ",".join(str(i) for i in range(n_workers))
    cluster = LocalCUDACluster(n_workers=n_workers, CUDA_VISIBLE_DEVICES=devices, **common)
    return cluster, "local-cuda-cluster"


def _visible_device_cluster(n_workers: int, options: dict[str, Any]) -> Any:
    """Start a LocalCluster of ``n_workers`` processes, worker ``i`` seeing only GPU ``i``."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=0, processes=True, **options)
    (spec,) = cluster.new_worker_spec().values()
    for index in range(n_workers):
        env = {**spec["options"].get("env", {}), "CUDA_VISIBLE_DEVICES": str(index)}
        cluster.worker_spec[f"gpu-{index}"] = {**spec, "options": {**spec["options"], "env": env}}
    cluster.scale(n_workers)
    cluster.wait_for_workers(n_workers)
    return cluster


#: Level of the dask/distributed/tornado/bokeh loggers (see :func:`set_dask_log_level`).
_DASK_LOG_LEVEL = logging.WARNING
_DASK_LOGGERS = ("distributed", "tornado", "bokeh")


def set_dask_log_level(level: int) -> None:
    """Set the level of dask.distributed's loggers, here and in worker processes started later.

    Importing ``distributed`` resets its loggers from dask's ``logging`` configuration
    (``distributed: info``), so the level goes there too -- in the environment, which
    worker processes inherit, and in this process's dask config when dask is loaded --
    and is applied again after every import by :func:`quiet_dask_loggers`.

    Parameters
    ----------
    level : int
        A :mod:`logging` level, e.g. ``logging.WARNING``.
    """
    global _DASK_LOG_LEVEL
    _DASK_LOG_LEVEL = level
    name = logging.getLevelName(level).lower()
    os.environ["DASK_LOGGING__DISTRIBUTED"] = name
    import sys

    if "dask" in sys.modules:
        import dask

        dask.config.set({"logging.distributed": name})
    quiet_dask_loggers()


def dask_log_level() -> int:
    """Return the level set by :func:`set_dask_log_level` (WARNING by default)."""
    return _DASK_LOG_LEVEL


def quiet_dask_loggers() -> None:
    """Apply :func:`dask_log_level` to the dask.distributed loggers (after importing it)."""
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(_DASK_LOG_LEVEL)


def scenes_in_flight(context: ComputeContext) -> int:
    """How many scenes of a multi-scene run to process at the same time.

    On a dask.distributed cluster, :data:`CLUSTER_SCENES_IN_FLIGHT` (2): each
    scene has serial phases run by this process (its scene-wide statistics are
    summed, and its COG encoded, while no tile of it can run), and the other
    scene's tasks keep the workers busy meanwhile. With the threaded scheduler, 1:
    every scene already uses all of this process's threads.

    Parameters
    ----------
    context : ComputeContext
        The active compute context.

    Returns
    -------
    int
    """
    return 1 if context.client is None else CLUSTER_SCENES_IN_FLIGHT
