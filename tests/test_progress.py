"""Progress of a restoration run: events per scene and stage, tile counts, the CLI display."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import numpy as np
import pytest
import rasterio

from geo_ntl.io import write_cog
from geo_ntl.pipeline import ComputeOptions, DeblurStage, EnhanceStage, restore_scenes
from geo_ntl.progress import DONE, WRITE_COG, ProgressEvent, RichProgress
from geo_ntl.testing import make_scene

# 64 px scenes in 32 px tiles with an 8 px halo: four GAN tiles each, fast on a CPU.
DEBLUR = DeblurStage(tile=32, halo=8)
ENHANCE = EnhanceStage(params={"iterations": 1})
IN_PROCESS = ComputeOptions(workers=0)


@pytest.fixture
def scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    big = make_scene((3, 64, 128), seed=9)
    return [
        write_cog(big.isel(x=slice(0, 64)), folder / "a.tif"),
        write_cog(big.isel(x=slice(64, 128)), folder / "b.tif"),
    ]


class _Recorder:
    """A thread-safe progress callback that keeps every event."""

    def __init__(self):
        self.events: list[ProgressEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self.events.append(event)


def _check_events(events, *, scenes, stages, polled=False):
    """Each scene: its stages in order, tile counts rising to the total, then write COG, done.

    ``polled``: counted by polling a cluster, which may end a tiny scene between two polls
    and so never see it writing its COG.
    """
    by_scene = defaultdict(list)
    for event in events:
        assert event.scenes == scenes
        by_scene[event.scene].append(event)
    assert sorted(by_scene) == list(range(1, scenes + 1))
    for scene_events in by_scene.values():
        order = list(dict.fromkeys(e.stage for e in scene_events))
        assert order == [*stages, WRITE_COG, DONE] or (polled and order == [*stages, DONE])
        for stage in stages:
            counts = [(e.completed, e.total) for e in scene_events if e.stage == stage and e.total]
            assert counts, f"no tile count for {stage}"
            done = [c for c, _ in counts]
            assert done == sorted(done)
            assert len({t for _, t in counts}) == 1
            assert counts[-1][0] == counts[-1][1]


def _pixels_and_tags(paths):
    out = []
    for path in paths:
        with rasterio.open(path) as src:
            out.append((src.read(), src.tags()["GEO_NTL_JOB"]))
    return out


def test_restore_scenes__progress_in_process__stages_and_tiles_to_the_total(scenes, tmp_path):
    recorder = _Recorder()
    kwargs = {"stages": [DEBLUR, ENHANCE], "device": "cpu", "compute": IN_PROCESS}
    outs = restore_scenes(scenes, out_dir=tmp_path / "with", progress=recorder, **kwargs)
    _check_events(recorder.events, scenes=2, stages=["deblur", "enhance"])
    deblur_tiles = [e.total for e in recorder.events if e.stage == "deblur" and e.total]
    assert set(deblur_tiles) == {4}
    # The same pixels and job signatures as a run without progress.
    plain = restore_scenes(scenes, out_dir=tmp_path / "without", **kwargs)
    for (a, job_a), (b, job_b) in zip(_pixels_and_tags(outs), _pixels_and_tags(plain), strict=True):
        np.testing.assert_array_equal(a, b)
        assert job_a == job_b


def test_restore_scenes__progress_on_a_local_cluster__per_scene_counts(scenes, tmp_path):
    recorder = _Recorder()
    outs = restore_scenes(
        scenes,
        stages=[DEBLUR],
        out_dir=tmp_path / "out",
        device="cpu",
        compute=ComputeOptions(workers=1, threads_per_worker=1),
        progress=recorder,
    )
    _check_events(recorder.events, scenes=2, stages=["deblur"], polled=True)
    assert {e.name for e in recorder.events} == {"a.tif", "b.tif"}
    # Tagged for progress, the tasks give the same pixels and job signatures as in process.
    plain = restore_scenes(
        scenes, stages=[DEBLUR], out_dir=tmp_path / "plain", device="cpu", compute=IN_PROCESS
    )
    for (a, job_a), (b, job_b) in zip(_pixels_and_tags(outs), _pixels_and_tags(plain), strict=True):
        np.testing.assert_array_equal(a, b)
        assert job_a == job_b


def test_restore_scenes__progress_reports_the_mosaic_and_skips_kept_scenes(scenes, tmp_path):
    kwargs = {"stages": [DEBLUR], "device": "cpu", "compute": IN_PROCESS}
    restore_scenes(scenes[:1], out_dir=tmp_path / "out", **kwargs)
    recorder = _Recorder()
    restore_scenes(
        scenes, out_dir=tmp_path / "out", mosaic=tmp_path / "m.tif", progress=recorder, **kwargs
    )
    assert {(e.scene, e.name) for e in recorder.events} == {(1, "b.tif"), (0, "m.tif")}
    assert [e.stage for e in recorder.events if e.scene == 0] == ["mosaic", DONE]
    assert str(recorder.events[0]) == "scene 1/1 b.tif · deblur"


def test_rich_progress__draws_the_stage_and_tiles(capsys):
    with RichProgress(force_terminal=True) as display:
        display(ProgressEvent(scene=1, scenes=2, name="a.tif", stage="deblur"))
        display(
            ProgressEvent(scene=1, scenes=2, name="a.tif", stage="deblur", completed=3, total=4)
        )
        time.sleep(0.3)  # counts are drawn at the display's refresh rate
        display(ProgressEvent(scene=1, scenes=2, name="a.tif", stage=DONE))
    err = capsys.readouterr().err
    assert "scene 1/2 a.tif · deblur" in err
    assert "tiles 3/4" in err


FAST = ("--tile", "32", "--halo", "8", "--device", "cpu", "--workers", "0")


def _deblur(runner, scenes, tmp_path, *args):
    return runner(*args[:1], "deblur", *scenes, "--out-dir", tmp_path / "out", *FAST, *args[1:])


@pytest.fixture
def terminal(monkeypatch):
    """Make the restoration commands see a terminal on stderr."""
    monkeypatch.setattr("geo_ntl.cli._restore._stderr_is_terminal", lambda: True)


def test_cli__progress_on_a_terminal(runner, scenes, tmp_path, terminal):
    result = _deblur(runner, scenes, tmp_path, "-v")
    assert result.exit_code == 0, result.stderr
    assert "· deblur" in result.stderr
    assert result.stdout.count("wrote ") == 2  # stdout keeps its lines


def test_cli__quiet_shows_no_progress(runner, scenes, tmp_path, terminal):
    result = _deblur(runner, scenes, tmp_path, "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_cli__no_progress_when_stderr_is_not_a_terminal(runner, scenes, tmp_path):
    result = _deblur(runner, scenes, tmp_path, "-v")
    assert result.exit_code == 0, result.stderr
    assert "· deblur" not in result.stderr and "tiles" not in result.stderr


def test_cli__progress_flag_forces_it_on(runner, scenes, tmp_path):
    result = _deblur(runner, scenes, tmp_path, "-v", "--progress")
    assert result.exit_code == 0, result.stderr
    assert "scene 1/2 a.tif · deblur" in result.stderr


def test_cli__no_progress_flag_turns_it_off(runner, scenes, tmp_path, terminal):
    result = _deblur(runner, scenes, tmp_path, "-v", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "· deblur" not in result.stderr
