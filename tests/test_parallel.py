"""Distributed runs: same bytes for any worker count, survive a killed worker, clear errors."""

from __future__ import annotations

import os

import pytest
from scipy import ndimage

from geo_ntl.allocator import ALLOCATOR_ENVIRON
from geo_ntl.exceptions import ClusterError, InputError
from geo_ntl.io import write_cog
from geo_ntl.parallel import compute_context
from geo_ntl.testing import make_scene
from geo_ntl.tiling import apply_tiled


def _blur(block):
    return ndimage.uniform_filter(block, size=(1, 7, 7))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The scene filtered in this process with the threaded scheduler."""
    scene = make_scene((3, 700, 650), seed=4, chunks=128)
    out = tmp_path_factory.mktemp("ref") / "ref.tif"
    write_cog(apply_tiled(scene, _blur, halo=3), out)
    return scene, out.read_bytes()


def test_local_cluster__same_bytes_and_survives_a_killed_worker(reference, tmp_path):
    scene, expected = reference
    marker = tmp_path / "killed-once"

    def blur_or_die(block):
        # The first tile to run kills its worker process outright, as an OOM kill would.
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return _blur(block)
        os.close(fd)
        os._exit(1)

    with compute_context(workers=2, threads_per_worker=1, dashboard=False) as context:
        assert context.kind == "local-cluster"
        environs = context.client.run(lambda: {k: os.environ.get(k) for k in ALLOCATOR_ENVIRON})
        assert all(env == ALLOCATOR_ENVIRON for env in environs.values())
        out = write_cog(
            apply_tiled(scene.chunk({"y": 200, "x": 300}), blur_or_die, halo=3), tmp_path / "d.tif"
        )
    assert marker.exists()
    assert out.read_bytes() == expected


FRESH_PROCESS_TWO_CLUSTERS = """
import json, os
from geo_ntl.parallel import compute_context
seen = []
for _ in range(2):
    with compute_context(workers=1, threads_per_worker=1, dashboard=False) as context:
        seen.append(context.client.run(lambda: os.environ.get("OMP_NUM_THREADS")))
print(json.dumps([list(s.values()) for s in seen]))
"""


def test_compute_context__second_cluster_in_a_fresh_process_with_distributed_defaults():
    # In a process that has not imported distributed, its configuration defaults must survive
    # the first cluster (a second one failed with KeyError 'comm'), and the workers of both
    # get its one-thread BLAS/OpenMP environment.
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_TWO_CLUSTERS],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [["1"], ["1"]]


def test_compute_context__threads_by_default_for_small_jobs():
    with compute_context(megapixels=1.0) as context:
        assert context.kind == "threads" and context.client is None


def test_compute_context__unreachable_scheduler():
    with (
        pytest.raises(ClusterError, match="no dask scheduler answered"),
        compute_context(scheduler="tcp://127.0.0.1:9", timeout=1),
    ):
        pass


def test_compute_context__negative_workers():
    with pytest.raises(InputError, match="workers must be 0 or more") as info:
        with compute_context(workers=-1):
            pass
    assert "--" not in str(info.value)  # the library names parameters, the CLI flags


def test_store_distributed__killed_worker_names_the_tile(tmp_path, monkeypatch):
    from distributed.scheduler import KilledWorker

    import geo_ntl.io as gio

    def killed(*args, **kwargs):
        raise KilledWorker("task", "worker", 3)

    monkeypatch.setattr(gio.dsa, "store", killed)
    scene = make_scene((3, 64, 64), chunks=32)
    with pytest.raises(ClusterError, match="32-pixel tile.*lower `tile`") as info:
        gio._store_distributed(scene.data, tmp_path / "s.tif")
    from geo_ntl.cli._flags import cli_message

    assert "lower --tile, use fewer --threads-per-worker" in cli_message(info.value)


def test_row_bands__cover_the_rows_once_in_bands_of_a_few_tasks_per_thread():
    from geo_ntl.io import BAND_TASKS_PER_THREAD, _row_bands

    chunks = (200, 200, 200, 100)
    bands = _row_bands(chunks, n_cols=3, threads=1)
    assert bands == [(0, 600), (600, 700)]  # ceil(4 * 2 / 3) = 3 chunk rows per band
    assert _row_bands(chunks, n_cols=100, threads=1) == [
        (0, 200),
        (200, 400),
        (400, 600),
        (600, 700),
    ]
    assert _row_bands(chunks, n_cols=1, threads=64) == [(0, 700)]
    assert BAND_TASKS_PER_THREAD >= 2  # enough queued work to keep every thread busy


# --- GPU workers: placement and one GPU per worker (no GPU needed) ---------------------------


@pytest.fixture
def gpu_worker_calls(monkeypatch):
    """Let the GPU-declaring worker's "GPU" stand in for one; record where each model call runs.

    Every model and solver call (a GAN batch, an enhancer tile) resolves its device where it
    runs; the stand-in records whether that worker declares a GPU, and gives the CPU.
    """
    import torch
    from distributed import get_worker

    from geo_ntl import _device

    calls: list[bool] = []
    resolve = _device.resolve_device

    def recording(device="auto"):
        if device in ("cuda", "auto"):
            calls.append("GPU" in get_worker().state.total_resources)
            return torch.device("cpu")
        return resolve(device)

    monkeypatch.setattr(_device, "local_gpus", lambda: [(8, 0)])
    monkeypatch.setattr(_device, "resolve_device", recording)
    return calls


@pytest.mark.parametrize(
    ("shape", "stages", "model_calls"),
    [
        ((3, 256, 256), [("deblur", {"tile": 64})], 16),  # psf-gan: one solver call per tile
        ((3, 256, 256), [("deblur", {"tile": 64, "method": "gan-direct"})], 16),  # a GAN batch each
        ((3, 256, 512), [("enhance", {"tile": 256, "params": {"iterations": 1}})], 2),
    ],
)
def test_restore_scenes__every_model_call_on_the_gpu_worker(
    mixed_cluster, gpu_worker_calls, tmp_path, shape, stages, model_calls
):
    from geo_ntl.pipeline import ComputeOptions, restore_scenes

    scene = write_cog(make_scene(shape, seed=3), tmp_path / "scene.tif")
    restore_scenes(
        scene,
        stages=stages,
        out=tmp_path / "out.tif",
        compute=ComputeOptions(scheduler=mixed_cluster.scheduler_address),
    )
    # Before: half of them ran on the worker without a GPU (the write's graph was optimised,
    # which dropped the GPU annotation).
    assert gpu_worker_calls == [True] * model_calls


class _FakeCUDACluster:
    """Stand-in for dask_cuda.LocalCUDACluster: records its arguments, starts no GPU worker."""

    started: list[dict] = []

    def __new__(cls, **kwargs):
        from distributed import LocalCluster

        cls.started.append(kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k != "CUDA_VISIBLE_DEVICES"}
        return LocalCluster(processes=False, **kwargs)


def test_compute_context__dask_cuda_one_worker_per_gpu_with_threads_and_memory_limit(
    monkeypatch,
):
    import sys
    import types

    from geo_ntl import parallel

    monkeypatch.setattr(parallel, "_cuda_count", lambda: 2)
    monkeypatch.setitem(
        sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=_FakeCUDACluster)
    )
    _FakeCUDACluster.started.clear()
    with compute_context(workers=2, gpu=True, memory_limit="1GB", dashboard=False) as context:
        assert context.kind == "local-cuda-cluster" and context.gpu_resource
        declared = {
            w["resources"].get("GPU") for w in context.client.scheduler_info()["workers"].values()
        }
        assert declared == {1}
    (kwargs,) = _FakeCUDACluster.started
    assert kwargs["n_workers"] == 2 and kwargs["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert kwargs["threads_per_worker"] == max(1, (os.cpu_count() or 1) // 2)
    assert kwargs["memory_limit"] == "1GB" and kwargs["resources"] == {"GPU": 1}
    # More workers than GPUs: an error naming the option, not dask-cuda's ValueError.
    with pytest.raises(InputError, match="workers=3 is more than the 2 GPU") as info:
        with compute_context(workers=3, gpu=True, dashboard=False):
            pass
    from geo_ntl.cli._flags import cli_message

    assert "use --workers 2 or fewer, or --device cpu" in cli_message(info.value)
    assert len(_FakeCUDACluster.started) == 1


def test_compute_context__without_dask_cuda_each_worker_sees_its_own_gpu(monkeypatch):
    import sys

    from geo_ntl import parallel

    monkeypatch.setattr(parallel, "_cuda_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # not installed
    with compute_context(workers=2, threads_per_worker=1, gpu=True, dashboard=False) as context:
        assert context.kind == "local-cluster" and context.gpu_resource
        client = context.client
        visible = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        resources = [w["resources"] for w in client.scheduler_info()["workers"].values()]
    assert sorted(visible.values()) == ["0", "1"]  # before: both workers used cuda:0
    assert resources == [{"GPU": 1}, {"GPU": 1}]
    with pytest.raises(InputError, match="workers=2 is more than the 1 GPU"):
        monkeypatch.setattr(parallel, "_cuda_count", lambda: 1)
        with compute_context(workers=2, gpu=True, dashboard=False):
            pass
