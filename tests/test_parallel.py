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
