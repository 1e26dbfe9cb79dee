"""Every public entry point takes the same pixel types and rejects the others the same way."""

from __future__ import annotations

import numpy as np
import pytest

from geo_ntl._raster import SUPPORTED_DTYPES, check_dtype
from geo_ntl.exceptions import UnsupportedRasterError
from geo_ntl.testing import make_scene

REJECTED = ["int8", "int32", "uint32", "int64", "float16", "bool", "complex64"]


def _scene(dtype: str):
    scene = make_scene((3, 32, 32), chunks=32)
    return scene.copy(data=(scene.values // 8).astype(dtype))


def _write(da, tmp_path):
    from geo_ntl.io import open_scene, write_cog

    return open_scene(write_cog(da, tmp_path / "out.tif"))


def _enhance(da, tmp_path):
    from geo_ntl.enhance import enhance

    return enhance(da, device="cpu", tile=32)


def _enhance_array(da, tmp_path):
    from geo_ntl.enhance import enhance_array

    return enhance_array(da.values, device="cpu")


def _deblur(da, tmp_path):
    from geo_ntl.deblur import deblur

    return deblur(da, device="cpu", tile=32)


def _deblur_array(da, tmp_path):
    from geo_ntl.deblur import deblur_array

    return deblur_array(da.values, device="cpu")


def _tiled(da, tmp_path):
    from geo_ntl.tiling import apply_tiled

    return apply_tiled(da, lambda block: block, halo=2)


ENTRY_POINTS = {
    "io.write_cog": _write,
    "enhance": _enhance,
    "enhance_array": _enhance_array,
    "deblur": _deblur,
    "deblur_array": _deblur_array,
    "apply_tiled": _tiled,
}


def test_supported_dtypes__the_documented_set():
    assert SUPPORTED_DTYPES == ("uint8", "uint16", "int16", "float32", "float64")


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=str)
def test_entry_point__accepts_every_supported_dtype(tmp_path, entry, dtype):
    out = ENTRY_POINTS[entry](_scene(dtype), tmp_path)
    values = np.asarray(out)
    assert values.dtype == np.dtype(dtype) and values.shape == (3, 32, 32)


@pytest.mark.parametrize("dtype", REJECTED)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=str)
def test_entry_point__rejects_other_dtypes_with_one_error(tmp_path, entry, dtype):
    with pytest.raises(UnsupportedRasterError) as expected:
        check_dtype(dtype)
    with pytest.raises(UnsupportedRasterError) as info:
        ENTRY_POINTS[entry](_scene(dtype), tmp_path)
    assert str(info.value) == str(expected.value)
    assert f"pixel type {np.dtype(dtype).name} is not supported" in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_open_scene__names_the_file_in_the_same_error(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from geo_ntl.io import open_scene

    path = tmp_path / "i8.tif"
    profile = dict(driver="GTiff", width=4, height=4, count=1, dtype="int8", crs="EPSG:3067")
    with rasterio.open(path, "w", transform=from_origin(0, 4, 1, 1), **profile) as dst:
        dst.write(np.ones((1, 4, 4), "int8"))
    with pytest.raises(UnsupportedRasterError, match=f"{path} has pixel type int8 is not"):
        open_scene(path)
