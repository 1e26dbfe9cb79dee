"""What a user who installed the wheel gets: the sample data, and a README whose examples run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import geo_ntl
from geo_ntl.sample_data import SAMPLE_AOIS, SampleDataError, sample_aoi, sample_aoi_path

#: The source tree of the geo_ntl under test (the worktree, not another editable install).
ROOT = Path(geo_ntl.__file__).resolve().parents[1]
SAMPLE_FILES = (
    "README.md",
    "scene.tif",
    "truth.tif",
    "roads.gpkg",
    "permeable.gpkg",
    "buildings.gpkg",
)


def _readme_api_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_sample_aoi__paths_inside_the_package():
    aoi = sample_aoi()
    package = Path(geo_ntl.__file__).resolve().parent
    assert aoi.folder == sample_aoi_path() == package / "data" / "sample_aoi" / "helsinki"
    for path in (aoi.scene, aoi.truth, aoi.roads, aoi.permeable, aoi.buildings):
        assert path.is_file() and path.parent == aoi.folder
    assert geo_ntl.sample_aoi_path is sample_aoi_path and "helsinki" in SAMPLE_AOIS


def test_sample_aoi__checkout_link_is_the_package_data():
    link = ROOT / "sample_aoi" / "helsinki"
    if not link.exists():
        pytest.skip("no sample_aoi/ link in this checkout")
    assert link.resolve() == sample_aoi_path().resolve()


def test_sample_aoi__unknown_name_is_a_parameter_error():
    with pytest.raises(ValueError, match="unknown sample AOI 'paris'; choose one of helsinki"):
        sample_aoi_path("paris")
    assert issubclass(SampleDataError, FileNotFoundError)


def test_wheel__ships_the_sample_aoi(tmp_path):
    pytest.importorskip(
        "setuptools", reason="building the wheel without isolation needs setuptools"
    )
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "geo_ntl", src / "geo_ntl", ignore=ignore)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("geo_ntl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SAMPLE_FILES:
        assert f"geo_ntl/data/sample_aoi/helsinki/{name}" in names
    assert "geo_ntl/sample_data.py" in names and "geo_ntl/weights/registry.json" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert wheel.stat().st_size < 40 * 2**20


def test_readme__python_api_runs_outside_the_source_tree(tmp_path):
    blocks = _readme_api_blocks()
    assert blocks, "no python block under the README's Python API heading"
    code = "\n".join(blocks)
    assert "sample_aoi/" not in code, "the README example must not use checkout-relative paths"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "smoothed.tif").is_file()
    assert (tmp_path / "city.tif").is_file() and [
        p.name for p in (tmp_path / "clean").glob("*.tif")
    ] == ["scene_clean.tif"]
    assert float(run.stdout.strip().splitlines()[-1]) > 0  # night light sits among roads
