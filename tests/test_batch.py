"""Running many scene jobs: in order, several at once on a cluster, stopping cleanly on errors."""

from __future__ import annotations

import os
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


def test_expand_scenes__folders_and_globs_skip_hidden_and_temporary_files(tmp_path):
    from geo_ntl.batch import expand_scenes

    for name in ("a.tif", "b.tif", ".a.1f2e3d4c.partial.tif.staging.tif", ".hidden.tif",
                 "c.partial.tif", "d.staging.tif"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".geo_ntl-gan-x").mkdir()
    (tmp_path / ".geo_ntl-gan-x" / "gan_0.tif").write_bytes(b"x")
    expected = [tmp_path / "a.tif", tmp_path / "b.tif"]
    assert expand_scenes([tmp_path]) == expected
    assert expand_scenes([str(tmp_path / "*.tif")]) == expected
    assert expand_scenes([str(tmp_path / "**" / "*.tif")]) == expected
    # A hidden file named explicitly is the user's choice.
    assert expand_scenes([tmp_path / ".hidden.tif"]) == [tmp_path / ".hidden.tif"]


def test_job_signature__covers_code_parameters_and_input_content(tmp_path, monkeypatch):
    import geo_ntl.batch as batch

    scene = tmp_path / "s.tif"
    scene.write_bytes(b"a" * 1000)
    base = batch.job_signature(scene, "enhance", {"p": 0.15})
    assert batch.job_signature(scene, "enhance", {"p": 0.15}) == base
    assert batch.job_signature(scene, "enhance", {"p": 0.2}) != base
    assert batch.job_signature(scene, "deblur", {"p": 0.15}) != base
    stat = scene.stat()
    scene.write_bytes(b"b" * 1000)  # same size, same mtime: the fingerprint tells them apart
    os.utime(scene, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = batch.job_signature(scene, "enhance", {"p": 0.15})
    assert changed != base
    monkeypatch.setattr(batch, "code_hash", lambda: "edited-code")
    assert batch.job_signature(scene, "enhance", {"p": 0.15}) != changed
