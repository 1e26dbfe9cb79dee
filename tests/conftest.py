"""Shared fixtures: tiny georeferenced scenes in memory and on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_ntl.io import write_cog
from geo_ntl.testing import make_scene

#: The shared data folder beside a developer's checkout (absent in users' clones).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE_AOI = Path(__file__).resolve().parents[1] / "geo_ntl" / "data" / "sample_aoi" / "helsinki"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is only beside a developer checkout)")
    return path


@pytest.fixture
def rgb_scene():
    return make_scene((3, 64, 64), seed=1)


@pytest.fixture(params=["numpy", "dask"])
def rgb_scene_any(request):
    return make_scene((3, 64, 64), seed=2, chunks=None if request.param == "numpy" else 24)


@pytest.fixture
def rgb_scene_file(tmp_path, rgb_scene):
    return write_cog(rgb_scene, tmp_path / "scene.tif")


@pytest.fixture
def runner():
    """Invoke geo-ntl in-process and return (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from geo_ntl.cli.main import main

    class _Result:
        def __init__(self, code, out, err):
            self.exit_code, self.stdout, self.stderr = code, out, err

    def invoke(*args: str) -> _Result:
        cli_runner = CliRunner()
        with cli_runner.isolation() as (out, err, *_):
            code = main([str(a) for a in args])
            return _Result(code, out.getvalue().decode(), err.getvalue().decode())

    return invoke


@pytest.fixture
def mixed_cluster():
    """An in-process dask cluster: worker "cpu" without resources, worker "gpu" declaring ``GPU=1``."""
    from distributed import Scheduler, SpecCluster, Worker

    workers = {
        "cpu": {"cls": Worker, "options": {"nthreads": 1}},
        "gpu": {"cls": Worker, "options": {"nthreads": 2, "resources": {"GPU": 1}}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        yield cluster
