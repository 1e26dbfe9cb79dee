"""Issue 16 items 4-7: every error a clean one, nodata never invented or lost.

In-process CLI tests use the ``runner`` fixture; the few that check what reaches the
real stderr (C-level GDAL lines, dask's loggers, Ctrl-C) run ``python -m geo_ntl``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geo_ntl._raster import check_nodata, disk_errors, is_disk_full, to_dtype
from geo_ntl.exceptions import (
    DiskFullError,
    InputError,
    MissingCRSError,
    NotARasterError,
    ParameterError,
)
from geo_ntl.io import open_scene, scene_info, write_cog
from geo_ntl.testing import make_scene

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _one_error_line(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _plain(path, data, *, nodata=None, crs="EPSG:3067", dtype=None):
    data = np.asarray(data)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=dtype or data.dtype.name,
        crs=crs,
        transform=from_origin(385000, 6672000, 1.0, 1.0),
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


# --- item 4: valid pixels never become nodata --------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "nodata", "computed", "expected"),
    [
        ("uint8", 0, 0.2, 1),
        ("uint8", 255, 254.8, 254),
        ("uint16", 7, 6.9, 6),
        ("uint16", 7, 7.2, 8),
        ("uint8", 0, -3.0, 1),  # nothing below 0: the other side
    ],
    ids=["u8-0-up", "u8-255-down", "u16-below", "u16-above", "u8-clipped"],
)
def test_to_dtype__valid_pixel_at_nodata_is_nudged(dtype, nodata, computed, expected):
    x = np.full((3, 2, 2), computed, np.float32)
    x[:, 0, 0] = np.nan  # an invalid pixel
    y = to_dtype(x, dtype, nodata)
    assert y.dtype == np.dtype(dtype)
    assert (y[:, 0, 0] == nodata).all()
    assert (y[:, 1:, :] == expected).all() and (y[:, 0, 1] == expected).all()


def test_to_dtype__float_nodata_and_partial_match():
    x = np.zeros((2, 1, 3), np.float64)
    x[1, 0, 2] = 5.0  # one band differs: not nodata, left alone
    y = to_dtype(x, "float32", 0.0, invalid=np.array([[True, False, False]]))
    assert (y[:, 0, 0] == 0).all()
    assert (y[:, 0, 1] > 0).all() and y[0, 0, 1] == np.nextafter(np.float32(0), np.float32(1))
    assert (y[:, 0, 2] == [0, 5]).all()


def test_deblur_runner__valid_pixels_never_become_nodata(monkeypatch):
    from geo_ntl.deblur.inference import _Runner

    runner = _Runner(
        weights=None, device="cpu", halo=0, tile=16, batch_size=1, scale=255.0,
        nodata=0, bands=3, out_dtype=np.uint8,
    )  # fmt: skip
    monkeypatch.setattr(runner, "run_rgb", lambda rgb, block_halo=None: np.zeros_like(rgb))
    block = np.full((3, 8, 8), 40, np.uint8)
    block[:, 0, 0] = 0  # nodata
    out = runner(block)
    assert (out[:, 0, 0] == 0).all()
    assert (out.reshape(3, -1)[:, 1:] == 1).all()  # restored to 0 -> nudged, still valid


def test_from_float__valid_zero_is_not_nodata():
    from geo_ntl._raster import from_float

    x = np.full((3, 4, 4), 0.3, np.float32)
    x[:, 0, 0] = np.nan
    y = from_float(x, np.dtype("uint8"), 0)
    assert (y[:, 0, 0] == 0).all() and (y.reshape(3, -1)[:, 1:] == 1).all()


def test_write_cog__float_to_uint8_keeps_valid_pixels(tmp_path):
    da = make_scene((1, 16, 16), dtype="float32", nodata=0.0).astype("float32")
    da = da.copy(data=np.full((1, 16, 16), 0.3, np.float32)).rio.write_nodata(0.0)
    da[0, 0, 0] = 0.0
    out = write_cog(da, tmp_path / "o.tif", dtype="uint8", nodata=0)
    with rasterio.open(out) as src:
        got = src.read(1)
    assert got[0, 0] == 0 and (got.ravel()[1:] == 1).all()


def _two_scenes_without_nodata(tmp_path):
    a = np.zeros((1, 32, 32), np.uint8)  # black, valid pixels
    a[0, :, 16:] = 100
    _plain(tmp_path / "a.tif", a)
    with rasterio.open(
        tmp_path / "b.tif", "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
        crs="EPSG:3067", transform=from_origin(385000 + 48, 6672000 - 8, 1.0, 1.0),
    ) as dst:  # fmt: skip
        dst.write(np.full((1, 32, 32), 50, np.uint8))
    return [tmp_path / "a.tif", tmp_path / "b.tif"]


def test_mosaic__scenes_without_nodata_get_a_mask_not_nodata_0(tmp_path):
    from geo_ntl.mosaic import write_mosaic

    paths = _two_scenes_without_nodata(tmp_path)
    out = write_mosaic(paths, tmp_path / "m.tif", feather=4)
    with rasterio.open(out) as src:
        assert src.nodata is None
        assert rasterio.enums.MaskFlags.per_dataset in src.mask_flag_enums[0]
        data, mask = src.read(1), src.read_masks(1)
    assert data.shape == (40, 80)
    assert (mask[:32, :16] == 255).all() and (data[:32, :16] == 0).all()  # black yet valid
    assert (mask[:8, 40:] == 0).all() and (mask[32:, :32] == 0).all()  # gaps masked
    assert (mask[8:, 48:] == 255).all()


def test_mosaic__vrt_of_scenes_without_nodata_has_a_mask_band(runner, tmp_path):
    paths = _two_scenes_without_nodata(tmp_path)
    res = runner(
        "mosaic", *paths, "--out", tmp_path / "m.vrt", "--vrt", "--vrt-tile", "256",
        "--feather", "4", "--workers", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    with rasterio.open(tmp_path / "m.vrt") as src:
        mask = src.read_masks(1)
        assert src.nodata is None
    assert (mask[:32, :16] == 255).all() and (mask[32:, :32] == 0).all()


def _patched_nodata(tmp_path, dtype):
    """A GeoTIFF whose nodata tag its dtype cannot hold (rasterio refuses to write one)."""
    written, wanted = (b"111\x00", b"999\x00") if dtype == "uint8" else (b"e+30", b"e+40")
    path = _plain(
        tmp_path / f"bad_{dtype}.tif",
        np.ones((1, 8, 8), dtype),
        nodata=111 if dtype == "uint8" else 1e30,
    )
    raw = path.read_bytes()
    assert raw.count(written) == 1
    path.write_bytes(raw.replace(written, wanted))
    return path


@pytest.mark.parametrize(("dtype", "value"), [("uint8", "999"), ("float32", "1e+40")])
def test_open_scene__out_of_range_nodata_tag_is_an_error(tmp_path, dtype, value):
    path = _patched_nodata(tmp_path, dtype)
    with pytest.raises(InputError, match="gdal_edit.py -a_nodata") as info:
        open_scene(path)
    assert value in str(info.value) and dtype in str(info.value)
    assert "-unsetnodata" in str(info.value)
    with rasterio.open(_plain(tmp_path / "ok.tif", np.ones((1, 4, 4), dtype), nodata=0)) as src:
        check_nodata(src)  # a good tag passes


def test_cli__out_of_range_nodata_tag(runner, tmp_path):
    path = _patched_nodata(tmp_path, "uint8")
    _one_error_line(runner("enhance", path, "--out", tmp_path / "o.tif"), "999", "uint8")
    _one_error_line(runner("mosaic", path, "--out", tmp_path / "m.tif"), "999")
    res = runner("info", path)
    assert res.exit_code == 0 and "invalid tag" in res.stdout and "999" in res.stdout


# --- item 5: ordinary situations are clean errors ----------------------------------------


def test_cli_enhance__disk_full_is_a_clean_error(runner, rgb_scene_file, tmp_path, monkeypatch):
    import geo_ntl.io as io_mod

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod.rasterio.shutil, "copy", full)
    out = tmp_path / "out" / "o.tif"
    out.parent.mkdir()
    res = runner("enhance", rgb_scene_file, "--out", out, "--device", "cpu", "--workers", "0")
    line = _one_error_line(res, "no space left on device writing", str(out), "another --out")
    assert "free space" in line
    assert list(out.parent.iterdir()) == []  # nothing partial left


def test_write_cog__gdal_write_failure_on_a_full_disk(tmp_path, monkeypatch):
    import shutil

    import geo_ntl._raster as raster_mod
    import geo_ntl.io as io_mod

    def failed(*args, **kwargs):
        raise rasterio.errors.RasterioIOError("Write failed. See previous exception for details.")

    monkeypatch.setattr(io_mod.rasterio.shutil, "copy", failed)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(raster_mod.shutil, "disk_usage", lambda p: usage._replace(free=1024))
    with pytest.raises(DiskFullError, match="no space left on device writing"):
        write_cog(make_scene((1, 16, 16)), tmp_path / "o.tif")
    monkeypatch.undo()
    assert not is_disk_full(rasterio.errors.RasterioIOError("Write failed"), tmp_path)


def test_cluster_cells__disk_full(tmp_path, monkeypatch):
    import geopandas as gpd
    import shapely

    from geo_ntl.spatial.api import write_cells

    cells = gpd.GeoDataFrame({"v": [1.0]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:3067")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", full)
    with pytest.raises(DiskFullError, match="cells.gpkg"):
        write_cells(cells, tmp_path / "cells.gpkg")
    with disk_errors(tmp_path / "x"), pytest.raises(ValueError):
        raise ValueError("not a disk error")  # other errors pass through unchanged


@pytest.mark.parametrize("crs", ["EPSG:999999", "nonsense"])
def test_cli_mosaic__unknown_crs(runner, rgb_scene_file, tmp_path, crs):
    res = runner("mosaic", rgb_scene_file, "--out", tmp_path / "m.tif", "--crs", crs)
    _one_error_line(res, crs, "unknown CRS")


def test_cli__bad_scheduler_address(runner, rgb_scene_file, tmp_path, monkeypatch):
    out = tmp_path / "o.tif"
    res = runner("enhance", rgb_scene_file, "--out", out, "--scheduler", "notanaddress")
    _one_error_line(res, "'notanaddress'", "tcp://HOST:8786")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "garbage:xx")
    _one_error_line(runner("enhance", rgb_scene_file, "--out", out), "'garbage:xx'")


@pytest.mark.parametrize(
    ("param", "range_"),
    [
        ("gf_radius=1e30", "[0, 512]"),
        ("ae_sigma=1e9", "[0, 256]"),
        ("t_sigma=1e9", "[0, 256]"),
        ("el_sigma=1e9", "[0, 256]"),
        ("z_sigma=1e9", "[0, 256]"),
        ("alpha=1e30", "[0, 1]"),
        ("lambda3=1e30", "[0, 1000]"),
    ],
)
def test_cli_enhance__huge_parameters_refused_with_their_range(
    runner, rgb_scene_file, tmp_path, param, range_
):
    res = runner("enhance", rgb_scene_file, "--out", tmp_path / "o.tif", "--param", param)
    _one_error_line(res, param.split("=")[0], range_)
    assert not (tmp_path / "o.tif").exists()


def _run_folder(tmp_path, **stored):
    from dataclasses import asdict

    from geo_ntl.deblur.train import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(crop=96, batch=1, n_cities=1, city_size=96, steps=4, **stored)
    (run / "config.json").write_text(json.dumps(asdict(cfg)))
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return run


def test_cli_train__resume_with_corrupt_files(runner, tmp_path):
    run = _run_folder(tmp_path)
    (run / "pool.npz").write_bytes(b"not a zip")
    res = runner("train", "--out-dir", run, "--resume", "--no-progress", "--device", "cpu")
    _one_error_line(res, str(run / "pool.npz"), "another --out-dir")

    from geo_ntl.deblur.blur_transfer import PairPool

    (run / "pool.npz").unlink()
    PairPool(np.zeros((1, 3, 96, 96), np.uint8), np.zeros((1, 3, 96, 96), np.uint8), 0).save(
        run / "pool.npz"
    )
    res = runner("train", "--out-dir", run, "--resume", "--no-progress", "--device", "cpu")
    _one_error_line(res, str(run / "checkpoint.pt"), "corrupt", "another --out-dir")

    (run / "config.json").write_text("{not json")
    res = runner("train", "--out-dir", run, "--resume", "--no-progress")
    _one_error_line(res, str(run / "config.json"), "another --out-dir")
    assert run.exists()  # never removes a folder it did not create


# --- item 6: quiet stderr, sane limits ---------------------------------------------------


def test_cli__workers_above_the_limit(runner, rgb_scene_file, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    res = runner("enhance", rgb_scene_file, "--out", tmp_path / "o.tif", "--workers", "64")
    _one_error_line(res, "--workers 64", "8")


def test_logging__quiet_survives_distributed_reinitialising_its_loggers():
    import importlib
    import logging

    import dask

    from geo_ntl.cli.main import _configure_logging

    dconfig = importlib.import_module("distributed.config")  # `distributed.config` is a dict

    try:
        for quiet, verbose, want in ((True, 0, logging.ERROR), (False, 0, logging.WARNING)):
            _configure_logging(verbose=verbose, quiet=quiet, debug=False)
            dconfig.initialize_logging(dask.config.config)  # what `import` does
            assert logging.getLogger("distributed").getEffectiveLevel() == want
            assert os.environ["DASK_LOGGING__DISTRIBUTED"] == logging.getLevelName(want).lower()
        _configure_logging(verbose=1, quiet=False, debug=False)
        dconfig.initialize_logging(dask.config.config)
        assert logging.getLogger("distributed").getEffectiveLevel() == logging.INFO
    finally:
        _configure_logging(verbose=0, quiet=False, debug=False)


def test_logging__records_are_one_line_without_debug():
    import logging

    from geo_ntl.cli.main import OneLineFormatter

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "distributed.nanny", logging.ERROR, __file__, 1, "worker died\nmore", None,
            sys.exc_info(),
        )  # fmt: skip
    assert OneLineFormatter().format(record) == "ERROR distributed.nanny: worker died more"
    assert "Traceback" in OneLineFormatter(debug=True).format(record)


@pytest.mark.slow  # 11-25 s here: an embedded cluster starts and stops
def test_cli_enhance__workers_1_logs_one_dashboard_line(tmp_path):
    """One embedded-cluster run: no distributed.* INFO lines, the dashboard as one INFO line."""
    scene = write_cog(make_scene((3, 32, 32), seed=3), tmp_path / "s.tif")
    out = subprocess.run(
        [sys.executable, "-m", "geo_ntl", "enhance", str(scene), "--out", str(tmp_path / "o.tif"),
         "--workers", "1", "--device", "cpu", "--tile", "32"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("INFO geo_ntl.parallel: dask dashboard: http")


def test_mosaic__huge_resolution_refused_up_front(runner, rgb_scene_file, tmp_path):
    start = time.perf_counter()
    res = runner("mosaic", rgb_scene_file, "--out", tmp_path / "m.tif", "--resolution", "0.0001")
    line = _one_error_line(res, "the mosaic would be 5888", "Gpx per band", "--vrt")
    assert "TB uncompressed" in line and time.perf_counter() - start < 10
    res = runner(
        "mosaic", rgb_scene_file, "--out", tmp_path / "m.vrt", "--vrt", "--resolution", "0.0001"
    )
    _one_error_line(res, "tiles", "coarser --resolution")
    assert not list(tmp_path.glob("m*"))


def test_mosaic__larger_than_free_space_refused(runner, rgb_scene_file, tmp_path, monkeypatch):
    import shutil

    import geo_ntl.mosaic as mosaic_mod

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(mosaic_mod.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    res = runner("mosaic", rgb_scene_file, "--out", tmp_path / "m.tif")
    _one_error_line(res, "64 x 64 px", "needs about", "1 kB is free")


_FAKE_COMMANDS = """
import atexit, errno, os, sys, time
import click
from geo_ntl.cli import main as m

@click.command()
def diskfull():
    os.write(2, b"_tiffWriteProc: No space left on device.\\n")
    os.write(2, b"ERROR 1: TIFFAppendToStrip:Write error at scanline 128\\n")
    print("some other stderr line", file=sys.stderr)
    raise OSError(errno.ENOSPC, "No space left on device", "/data/out.tif")

@click.command()
def slow():
    atexit.register(lambda: (print("atexit", flush=True), time.sleep(3)))
    try:
        print("ready", flush=True)
        time.sleep(30)
    finally:
        print("cleanup", flush=True)
        time.sleep(30)

sys.modules["fake_commands"] = sys.modules[__name__]
m.COMMANDS.update({"diskfull": "fake_commands:diskfull", "slow": "fake_commands:slow"})
m.run()
"""


def _fake(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(textwrap.dedent(_FAKE_COMMANDS))
    return [sys.executable, "-u", str(script)]


def test_cli__gdal_disk_full_lines_do_not_reach_stderr(tmp_path):
    out = subprocess.run(
        [*_fake(tmp_path), "diskfull"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "some other stderr line",
        "error: no space left on device writing /data/out.tif; free space or choose another --out",
    ]


def test_cli__triple_ctrl_c_prints_no_traceback(tmp_path):
    proc = subprocess.Popen(
        [*_fake(tmp_path), "slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "cleanup"
        proc.send_signal(signal.SIGINT)  # interrupts the cleanup
        assert proc.stdout.readline().strip() == "atexit"
        proc.send_signal(signal.SIGINT)  # and the interpreter's exit
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines() == [
        "error: interrupted by SIGINT; no output was written and existing files are unchanged"
    ]


# --- item 7: words that are true ---------------------------------------------------------


@pytest.fixture
def truncated_cog(tmp_path):
    rng = np.random.default_rng(0)
    da = make_scene((1, 1100, 1100)).copy(data=rng.integers(0, 255, (1, 1100, 1100), np.uint8))
    path = write_cog(da, tmp_path / "big.tif", compress="NONE")
    raw = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    return cut


def test_info__truncated_cog_is_not_valid(runner, truncated_cog):
    res = runner("info", truncated_cog)
    assert res.exit_code == 0, res.stderr
    row = res.stdout.split("valid COG")[1].splitlines()[0]
    assert "no: truncated or corrupt" in row
    assert scene_info(truncated_cog)["is_cog"] is False


def test_cli_enhance__truncated_scene(runner, truncated_cog, tmp_path):
    res = runner("enhance", truncated_cog, "--out", tmp_path / "o.tif")
    line = _one_error_line(res, "truncated or corrupt", str(truncated_cog))
    assert "free disk space" not in line and "previous exception" not in line.split("(")[0]
    with pytest.raises(NotARasterError, match="truncated"):
        open_scene(truncated_cog)


def test_cli__no_crs_advice_names_real_options(runner, tmp_path):
    path = _plain(tmp_path / "nocrs.tif", np.ones((1, 8, 8), "uint8"), crs=None)
    line = _one_error_line(runner("enhance", path, "--out", tmp_path / "o.tif"), "has no CRS")
    assert "--allow-no-crs" not in line and "rio edit-info --crs" in line


@pytest.mark.parametrize(
    ("shape", "cell", "message"),
    [
        ((1, 64, 64), float("inf"), "finite, positive"),
        ((1, 64, 64), float("nan"), "finite, positive"),
        ((1, 1, 1), 1.0, "too small"),
    ],
    ids=["inf", "nan", "1x1"],
)
def test_make_grid__cell_size_messages(shape, cell, message):
    from geo_ntl.spatial.grid import make_grid

    with pytest.raises(ParameterError, match=message) as info:
        make_grid(make_scene(shape, resolution=1.0), cell_size=cell)
    assert "smaller than a pixel" not in str(info.value) and "at most 0 m" not in str(info.value)


@click.command()
def _writes_then_interrupted():
    from geo_ntl.cli.main import note_written

    note_written("cells.gpkg")
    raise KeyboardInterrupt


def test_cli__interrupt_after_writing_says_so(runner, monkeypatch):
    from geo_ntl.cli import main as main_mod

    monkeypatch.setitem(main_mod.COMMANDS, "fake-int", f"{__name__}:_writes_then_interrupted")
    previous = signal.getsignal(signal.SIGINT)
    try:
        res = runner("fake-int")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert res.exit_code == 130
    assert "after cells.gpkg had been written (replaced if it existed)" in res.stderr
    assert "no partial output was left" not in res.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("enhance", "{scene}", "--out", "{tmp}/x.png"), ("x.png", ".tif or .tiff")),
        (("deblur", "{scene}", "--out", "{tmp}/x.jpg"), ("x.jpg", ".tif or .tiff")),
        (("enhance", "{scene}", "--out-dir", "{tmp}", "--mosaic", "{tmp}/m.png"), ("m.png",)),
        (("mosaic", "{scene}", "--out", "{tmp}/x.png"), ("x.png", ".tif or .tiff")),
        (("mosaic", "{scene}", "--out", "{tmp}/x.tif", "--vrt"), ("x.tif", "name it .vrt")),
        (("mosaic", "{scene}", "--out", "{tmp}/x.vrt"), ("x.vrt", "--vrt")),
    ],
    ids=[
        "enhance-png",
        "deblur-jpg",
        "mosaic-option-png",
        "mosaic-png",
        "vrt-as-tif",
        "vrt-no-flag",
    ],
)
def test_cli__output_suffix_must_match_the_format(runner, rgb_scene_file, tmp_path, args, words):
    args = [a.format(scene=rgb_scene_file, tmp=tmp_path) for a in args]
    _one_error_line(runner(*args), *words)
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob("m.*"))


def test_cli_train__resume_refuses_changed_options(runner, tmp_path):
    run = _run_folder(tmp_path, lr=5e-4)
    res = runner("train", "--out-dir", run, "--resume", "--lr", "0.002", "--crop", "128")
    _one_error_line(res, "lr=0.002 (the run has 0.0005)", "crop=128 (the run has 96)")
    res = runner("train", "--out-dir", run, "--resume", "--steps", "2")
    _one_error_line(res, "steps=2 is lower than the run's 4")


@pytest.mark.parametrize("flag", ["--batch-size", "--batch"])
def test_cli_train__batch_size_and_its_old_name_set_the_batch(runner, tmp_path, flag):
    run = _run_folder(tmp_path)
    res = runner("train", "--out-dir", run, "--resume", flag, "3")
    _one_error_line(res, "batch=3 (the run has 1)")


def test_cli_train__help_shows_batch_size_only(runner):
    out = runner("train", "--help").stdout
    assert "--batch-size" in out and "--batch " not in out and "--batch," not in out


def test_cli_train__failed_run_removes_the_folders_it_made(runner, tmp_path):
    run = tmp_path / "new" / "deep" / "run"
    res = runner("train", "--out-dir", run, "--init-weights", tmp_path / "no.pt", "--no-progress")
    assert res.exit_code == 2 and "no.pt" in res.stderr
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    runner("train", "--out-dir", kept, "--init-weights", tmp_path / "no.pt", "--no-progress")
    assert kept.is_dir()  # it existed before: left alone


def test_cli_enhance__out_dir_is_created(runner, rgb_scene_file, tmp_path):
    folder = tmp_path / "a" / "b"
    res = runner(
        "enhance", rgb_scene_file, "--out-dir", folder, "--device", "cpu", "--workers", "0",
        "--tile", "32",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert (folder / "scene_enhanced.tif").is_file()


_KILLER = """
import os, sys
import click
from geo_ntl.cli import main as m


@click.command()
def killer():
    from geo_ntl.io import write_cog
    from geo_ntl.parallel import compute_context
    from geo_ntl.testing import make_scene
    from geo_ntl.tiling import apply_tiled

    def die(block):
        os._exit(1)  # every worker that runs a tile dies, as an out-of-memory kill would

    with compute_context(workers=1, threads_per_worker=1, dashboard=False):
        write_cog(apply_tiled(make_scene((3, 64, 64), chunks=32), die, halo=2), os.environ["OUT"])


if __name__ == "__main__":  # worker processes re-import this file
    sys.modules["fake_commands"] = sys.modules[__name__]
    m.COMMANDS.update({"killer": "fake_commands:killer"})
    m.run()
"""


def test_cli__workers_killed_repeatedly_end_with_one_error_and_no_traceback(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    out = subprocess.run(
        [sys.executable, str(script), "killer"], capture_output=True, text=True,
        env={**_env(), "OUT": str(tmp_path / "o.tif")}, timeout=180,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert (
        lines[-1].startswith("error: dask workers died repeatedly") and "lower --tile" in lines[-1]
    )
    # what distributed says on the way is one line per event, at WARNING or ERROR
    assert all(line.startswith(("WARNING ", "ERROR ")) for line in lines[:-1]), lines
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "message",
    [
        "Could not add feature to layer at index 12656: failed to execute insert : database or "
        "disk is full",  # what pyogrio said on a full tmpfs
        "Failed to create GPKG file",  # said with little space left
    ],
)
def test_cli_cluster__disk_full_is_the_no_space_line(tmp_path, monkeypatch, message):
    """cluster on a full disk: the exit-2 no-space line of deblur and mosaic, not exit 1 (#26)."""
    import shutil

    import geopandas as gpd
    import pyogrio.errors
    from test_spatial import planted, run_cli

    import geo_ntl._raster as raster_mod

    ntl, roads, parks = planted(tmp_path)

    def full(self, *args, **kwargs):
        raise pyogrio.errors.DataSourceError(message)

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", full)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(raster_mod.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    out = tmp_path / "cells.gpkg"
    code, _, err = run_cli("cluster", ntl, "--roads", roads, "--permeable", parks,
                           "--cell-size", 4, "--permutations", 9, "--out", out)  # fmt: skip
    assert code == 2, err
    assert err.startswith("error: no space left on device writing") and "cells.gpkg" in err
    assert not out.exists()


# --- issue 26: nothing silently wrong ------------------------------------------------------


def _palette_tif(path):
    data = (np.arange(32 * 32) % 4).astype("uint8").reshape(1, 32, 32)
    _plain(path, data)
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255),
                               3: (0, 0, 255, 255)})  # fmt: skip
    return path


def test_open_scene__palette_raster_is_refused(tmp_path):
    from geo_ntl.exceptions import UnsupportedRasterError

    path = _palette_tif(tmp_path / "palette.tif")
    with pytest.raises(UnsupportedRasterError, match="palette"):
        open_scene(path)


@pytest.mark.parametrize("command", ["enhance", "mosaic"])
def test_cli__palette_raster_is_one_error_line(runner, tmp_path, command):
    path = _palette_tif(tmp_path / "palette.tif")
    res = runner(command, path, "--out", tmp_path / "o.tif")
    _one_error_line(res, "palette", "gdal_translate -expand rgb")
    assert not (tmp_path / "o.tif").exists()


def test_open_scene__gcp_scene_is_told_to_warp(tmp_path):
    from rasterio.control import GroundControlPoint

    path = tmp_path / "gcps.tif"
    _plain(path, np.ones((1, 16, 16), "uint8"), crs=None)
    gcps = [GroundControlPoint(row=r, col=c, x=385000 + c, y=6672000 - r)
            for r, c in [(0, 0), (0, 16), (16, 0), (16, 16)]]  # fmt: skip
    with rasterio.open(path, "r+") as dst:
        dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(3067))
    with pytest.raises(MissingCRSError, match="ground control points.*gdalwarp"):
        open_scene(path)


def test_cli__gdal_subdataset_name_is_refused_with_the_extract_command(runner, tmp_path):
    nc = tmp_path / "radiance.nc"
    nc.write_bytes(b"not read")
    line = _one_error_line(
        runner("enhance", f"NETCDF:{nc}:radiance", "--out", tmp_path / "o.tif"),
        "GDAL subdataset",
        "gdal_translate",
    )
    assert "not exist" not in line


@pytest.mark.parametrize("flag", ["--out", "--out-dir"])
def test_cli__url_output_is_refused_and_no_folder_is_made(runner, rgb_scene_file, tmp_path,
                                                           monkeypatch, flag):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    target = "http://example.com/out.tif" if flag == "--out" else "s3://bucket/clean"
    res = runner("enhance", rgb_scene_file, flag, target, "--device", "cpu")
    _one_error_line(res, "local files", target)
    assert not (tmp_path / "http:").exists() and not (tmp_path / "s3:").exists()


@pytest.mark.parametrize("chunks", [0, -3, {"y": 0, "x": 64}])
def test_open_scene__bad_chunks_is_a_parameter_error(rgb_scene_file, chunks):
    with pytest.raises(ParameterError, match="chunks must be a positive"):
        open_scene(rgb_scene_file, chunks=chunks)


def _geo_ntl(*args):
    return subprocess.run([sys.executable, "-m", "geo_ntl", *map(str, args)],
                          capture_output=True, text=True, env=_env(), timeout=300)  # fmt: skip


def test_cli__png_without_georeferencing_is_one_error_line(tmp_path):
    """No rasterio NotGeoreferencedWarning and its source line before the error (#26)."""
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), "uint8")).save(png)
    out = _geo_ntl("enhance", png, "--out", tmp_path / "o.tif", "--device", "cpu")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no CRS" in lines[0], out.stderr


def test_cli_psf__radiance_with_a_nodata_border_prints_no_python_warning(tmp_path):
    rng = np.random.default_rng(1)
    radiance = rng.gamma(2, 3, (1, 400, 400)).astype("float32")
    yy, xx = np.mgrid[-3:4, -3:4]
    lamp = np.exp(-(yy**2 + xx**2) / (2 * 1.5**2))
    for r in range(40, 380, 50):
        for c in range(30, 380, 50):
            radiance[0, r - 3 : r + 4, c - 3 : c + 4] += rng.uniform(80, 300) * lamp
    radiance[0, :10, :] = np.nan  # a nodata border
    path = _plain(tmp_path / "radiance.tif", radiance, nodata=float("nan"))
    out = _geo_ntl("psf", path)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and ".py:" not in out.stderr, out.stderr


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cli__a_python_warning_is_one_line(runner, rgb_scene_file, tmp_path, monkeypatch):
    import warnings

    import geo_ntl.io

    opened = geo_ntl.io.open_scene

    def noisy(*args, **kwargs):
        warnings.warn("something odd\n  with a second line", UserWarning, stacklevel=1)
        return opened(*args, **kwargs)

    monkeypatch.setattr(geo_ntl.io, "open_scene", noisy)
    res = runner("enhance", rgb_scene_file, "--out", tmp_path / "o.tif", "--device", "cpu",
                 "--workers", "0", "--tile", "32")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert res.stderr.strip().splitlines() == ["WARNING python: something odd with a second line"]
    quiet = runner("-q", "enhance", rgb_scene_file, "--out", tmp_path / "q.tif", "--device", "cpu",
                   "--workers", "0", "--tile", "32")  # fmt: skip
    assert quiet.exit_code == 0 and quiet.stderr == ""
