"""The geo-ntl command line: help, info and the one-line error contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import rasterio
from rasterio.transform import from_origin


def test_help__lists_commands(runner):
    result = runner("--help")
    assert result.exit_code == 0
    assert "info" in result.stdout


def test_python_m_help__imports_neither_xarray_nor_torch():
    """``--help`` (of the group and of the restoration commands) stays fast."""
    code = (
        "import sys\n"
        "from geo_ntl.cli.main import main\n"
        "for args in (['--help'], ['deblur', '--help'], ['enhance', '--help']):\n"
        "    assert main(args) == 0, args\n"
        "print(sorted(m for m in ('xarray', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert (
        subprocess.run([sys.executable, "-m", "geo_ntl", "--help"], capture_output=True).returncode
        == 0
    )


def test_info__closed_stdout_stops_quietly(rgb_scene_file):
    """``geo-ntl info scene.tif | head -1``: the reader goes away; no ``error:`` line, status 141."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "geo_ntl", "info", str(rgb_scene_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # before the command prints anything: every write hits a closed pipe
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, stderr
    assert stderr == ""


def test_info__describes_cog(runner, rgb_scene_file):
    result = runner("info", rgb_scene_file)
    assert result.exit_code == 0, result.stderr
    assert "EPSG:3067" in result.stdout
    assert (
        "valid COG        yes" in result.stdout
        or "yes" in result.stdout.split("valid COG")[1].splitlines()[0]
    )


def test_info__json(runner, rgb_scene_file):
    result = runner("info", rgb_scene_file, "--json")
    details = json.loads(result.stdout)
    assert (details["width"], details["height"], details["bands"]) == (64, 64, 3)
    assert details["is_cog"] is True
    assert details["resolution"] == [0.92, 0.92]


def _assert_one_error_line(result):
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_info__missing_file(runner, tmp_path):
    result = runner("info", tmp_path / "nope.tif")
    _assert_one_error_line(result)
    assert "does not exist" in result.stderr


def test_info__not_a_raster(runner, tmp_path):
    bogus = tmp_path / "x.tif"
    bogus.write_bytes(b"\x00" * 100)
    result = runner("info", bogus)
    _assert_one_error_line(result)
    assert "not a raster" in result.stderr


def test_info__scene_without_crs_still_described(runner, tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        transform=from_origin(0, 4, 1, 1),
    ) as dst:
        dst.write(np.ones((1, 4, 4), "uint8"))
    result = runner("info", path)
    assert result.exit_code == 0
    assert "crs" in result.stdout and "none" in result.stdout


def test_unknown_option__one_line(runner, rgb_scene_file):
    _assert_one_error_line(runner("info", rgb_scene_file, "--bogus"))


def test_unknown_command__one_line(runner):
    _assert_one_error_line(runner("nonsense"))


def test_debug__shows_traceback(runner, tmp_path):
    result = runner("--debug", "info", tmp_path / "nope.tif")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
