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


#: The ways GDAL marks pixels invalid besides a nodata value (see write_masked_scene).
MASK_KINDS = ("internal", "msk", "alpha", "mosaic")


def write_masked_scene(path, kind, *, dtype="uint8", bands=3, shape=(96, 96), seed=3):
    """Write a scene whose right third is hidden by a GDAL mask, not by a nodata value.

    ``kind``: ``internal`` (an internal per-dataset mask band), ``msk`` (a ``.msk``
    sidecar), ``alpha`` (an alpha band) or ``mosaic`` (geo_ntl's own mask band, as
    :func:`geo_ntl.mosaic.write_mosaic` writes for gaps). The hidden pixels hold 0, as do
    some valid ones. Returns ``(path, hidden)``: ``hidden`` is the ``(y, x)`` bool mask.
    """
    import numpy as np
    import rasterio

    scene = make_scene((bands, *shape), dtype=dtype, seed=seed)
    data = scene.values.copy()
    hidden = np.zeros(shape, dtype=bool)
    hidden[:, 2 * shape[1] // 3 :] = True
    data[:, hidden] = 0
    data[:, :4, :4] = 0  # valid black pixels
    if kind == "mosaic":
        write_cog(scene.copy(data=data), path, mask=~hidden)
        return Path(path), hidden
    profile = {
        "driver": "GTiff",
        "width": shape[1],
        "height": shape[0],
        "count": bands + (kind == "alpha"),
        "dtype": dtype,
        "crs": scene.rio.crs,
        "transform": scene.rio.transform(),
    }
    alpha = np.where(hidden, 0, 255).astype(dtype)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=kind == "internal"):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, indexes=list(range(1, bands + 1)))
            if kind == "alpha":
                dst.write(alpha, bands + 1)
                dst.colorinterp = [*dst.colorinterp[:bands], rasterio.enums.ColorInterp.alpha]
            else:
                dst.write_mask(np.where(hidden, 0, 255).astype("uint8"))
    return Path(path), hidden


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
