"""Running many scene jobs: in order, several at once on a cluster, stopping cleanly on errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from geo_ntl.batch import SceneJob, run_jobs
from geo_ntl.exceptions import InputError


def _jobs(tmp_path: Path, n: int, *, done: tuple[int, ...] = ()) -> list[SceneJob]:
    return [
        SceneJob(tmp_path / f"s{i}.tif", tmp_path / f"o{i}.tif", f"sig{i}", i in done)
        for i in range(n)
    ]


def test_run_jobs__one_at_a_time_in_order_skipping_done(tmp_path):
    seen: list[str] = []
    outs = run_jobs(_jobs(tmp_path, 4, done=(1,)), lambda job: seen.append(job.scene.name))
    assert seen == ["s0.tif", "s2.tif", "s3.tif"]
    assert [p.name for p in outs] == ["o0.tif", "o1.tif", "o2.tif", "o3.tif"]


def test_run_jobs__in_flight_jobs_overlap(tmp_path):
    # Each job waits until two jobs are inside `process` at once: run one at a time, the
    # barrier times out and the jobs fail.
    barrier = threading.Barrier(2, timeout=10)
    seen: list[str] = []

    def process(job):
        barrier.wait()
        seen.append(job.scene.name)

    run_jobs(_jobs(tmp_path, 4), process, in_flight=2)
    assert sorted(seen) == ["s0.tif", "s1.tif", "s2.tif", "s3.tif"]


def test_run_jobs__error_lets_running_jobs_finish_and_starts_no_more(tmp_path):
    failed = threading.Event()
    finished: list[str] = []

    def process(job):
        if job.scene.name == "s0.tif":
            failed.set()
            raise ValueError("bad scene s0")
        assert failed.wait(10)
        time.sleep(0.05)
        finished.append(job.scene.name)

    with pytest.raises(ValueError, match="bad scene s0"):
        run_jobs(_jobs(tmp_path, 5), process, in_flight=2)
    assert finished == ["s1.tif"]


def test_run_jobs__in_flight_must_be_positive(tmp_path):
    with pytest.raises(InputError, match="in_flight"):
        run_jobs(_jobs(tmp_path, 2), lambda job: None, in_flight=0)


def test_run_jobs__earlier_scenes_get_higher_dask_priority(tmp_path):
    import dask

    seen: dict[str, int] = {}

    def process(job):
        seen[job.scene.name] = dask.get_annotations().get("priority")

    run_jobs(_jobs(tmp_path, 3), process, in_flight=2)
    assert seen == {"s0.tif": 0, "s1.tif": -1, "s2.tif": -2}
