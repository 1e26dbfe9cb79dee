"""Provenance tags of restoration outputs: code, weights SHA-256, torch and GDAL, the device."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import rasterio

from geo_ntl._provenance import code_hash, library_versions
from geo_ntl._version import __version__
from geo_ntl.io import write_cog
from geo_ntl.testing import make_scene

torch = pytest.importorskip("torch")


def test_library_versions__geo_ntl_torch_and_gdal():
    tags = library_versions()
    assert tags["GEO_NTL_VERSION"] == __version__ and tags["GEO_NTL_CODE"] == code_hash()
    assert tags["GEO_NTL_TORCH"] == metadata.version("torch") == torch.__version__
    assert tags["GEO_NTL_GDAL"] == rasterio.__gdal_version__


def test_cli_deblur__output_records_weights_sha_versions_and_device(runner, tmp_path):
    from test_deblur import _tiny_generator

    from geo_ntl.deblur.weights import save_weights, sha256sum

    scene = write_cog(make_scene((3, 48, 48), seed=9), tmp_path / "scene.tif")
    weights, out = tmp_path / "generator.pt", tmp_path / "clean.tif"
    save_weights(_tiny_generator(), weights)
    res = runner(
        "deblur", scene, "--out", out, "--method", "gan-direct", "--weights", weights, "--no-enhance", "--tile", "32",
        "--device", "cpu", "--workers", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["GEO_NTL_WEIGHTS_SHA256"] == sha256sum(weights)
    assert json.loads(tags["GEO_NTL_PARAMS"])["weights_sha256"] == sha256sum(weights)
    assert tags["GEO_NTL_TORCH"] == torch.__version__
    assert tags["GEO_NTL_GDAL"] == rasterio.__gdal_version__
    assert tags["GEO_NTL_DEVICE"] == "cpu"
    assert tags["GEO_NTL_VERSION"] == __version__ and tags["GEO_NTL_CODE"] == code_hash()
