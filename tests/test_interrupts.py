"""Real processes stopped by signals, killed outright, or racing for one output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio

from geo_ntl.io import open_scene, write_cog
from geo_ntl.testing import make_scene

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FAST = ("--tile", "256", "--device", "cpu", "--workers", "0")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    """A scene that takes the enhancer a second or two: time to catch it mid-write."""
    return write_cog(make_scene((3, 512, 512), seed=5), tmp_path_factory.mktemp("in") / "a.tif")


def _start(*args: object) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "geo_ntl", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_signals__one_line_conventional_status_nothing_left_previous_output_intact(
    big_scene, tmp_path
):
    runs = {}
    # A signal this process inherited as ignored (nohup, a background job) stays ignored in the
    # commands it starts, as geo-ntl keeps an inherited SIG_IGN: nothing to test for it.
    signals = [s for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
               if signal.getsignal(s) is not signal.SIG_IGN]  # fmt: skip
    for sig in signals:
        folder = tmp_path / sig.name
        folder.mkdir()
        previous = write_cog(make_scene((3, 16, 16), seed=1), folder / "o.tif")
        runs[sig] = (folder, previous.read_bytes(), _start("enhance", big_scene, "--out",
                     previous, "--overwrite", *FAST))  # fmt: skip
    waiting = dict(runs)  # all three run at once: signal each as soon as it writes
    deadline = time.monotonic() + 120
    while waiting:
        for sig, (folder, _, proc) in list(waiting.items()):
            if any(p.name.endswith(".staging.tif") for p in folder.iterdir()):
                proc.send_signal(sig)
                del waiting[sig]
            else:
                assert proc.poll() is None, f"finished before it was stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "never started writing"
        time.sleep(0.005)
    for sig, (folder, before, proc) in runs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, stderr
        assert stderr.splitlines() == [
            f"error: interrupted by {sig.name}; no output was written and existing files are "
            "unchanged"
        ]
        assert [p.name for p in folder.iterdir()] == ["o.tif"]
        assert (folder / "o.tif").read_bytes() == before


def test_sigkill__next_run_removes_the_leftovers_and_mosaic_sees_real_outputs(
    runner, big_scene, tmp_path
):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    first = write_cog(make_scene((3, 32, 32), seed=2), scenes / "a.tif")
    second = scenes / "b.tif"
    second.write_bytes(big_scene.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    args = ("enhance", first, second, "--out-dir", out, *FAST)
    proc = _start(*args)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".b_") and p.name.endswith(".staging.tif")
                  for p in out.iterdir()):  # fmt: skip
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=60)
    left = sorted(p.name for p in out.iterdir())
    assert "a_enhanced.tif" in left and len(left) == 3  # + b's owner record and staging file
    mosaic = runner("mosaic", out, "--out", tmp_path / "m.tif", "--workers", "0")
    assert mosaic.exit_code == 0 and "from 1 scene(s)" in mosaic.stdout
    again = runner(*args)
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_enhanced.tif", "b_enhanced.tif"]
    assert "kept 1 of 2" in again.stderr


def test_race__two_runs_to_one_output_one_wins_the_other_fails_cleanly(tmp_path):
    scene = write_cog(make_scene((3, 256, 256), seed=6), tmp_path / "s.tif")
    out = tmp_path / "o.tif"
    # Different parameters: whichever finishes second must not replace the first's output,
    # whether it finds it when planning or only at its final rename.
    procs = [_start("enhance", scene, "--out", out, "--param", f"p={p}", *FAST)
             for p in (0.2, 0.25)]  # fmt: skip
    results = [(proc.communicate(timeout=300)[1], proc.returncode) for proc in procs]
    assert sorted(code for _, code in results) == [0, 2], results
    loser = next(err for err, code in results if code == 2)
    assert len(loser.splitlines()) == 1 and loser.startswith("error: ")
    winner_p = (0.2, 0.25)[[code for _, code in results].index(0)]
    with rasterio.open(out) as src:
        assert src.tags()["GEO_NTL_PARAMS"].count(f'"p": {winner_p},') == 1
    assert open_scene(out).shape == (3, 256, 256)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["o.tif", "s.tif"]


def test_signals__in_process_sigterm_unwinds_like_ctrl_c(runner, tmp_path, monkeypatch):
    import geo_ntl.enhance as enhance_module

    scene = write_cog(make_scene((3, 32, 32), seed=3), tmp_path / "s.tif")

    def terminated(da, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread before this returns
        raise AssertionError("SIGTERM was not turned into an exception")

    monkeypatch.setattr(enhance_module, "enhance", terminated)
    result = runner("enhance", scene, "--out", tmp_path / "o.tif", *FAST)
    assert result.exit_code == 143
    assert result.stderr.splitlines() == [
        "error: interrupted by SIGTERM; no output was written and existing files are unchanged"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_signals__an_ignored_signal_stays_ignored():
    from geo_ntl.cli.main import _signals_interrupt

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with _signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
    finally:
        signal.signal(signal.SIGHUP, previous)
