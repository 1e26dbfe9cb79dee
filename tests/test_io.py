"""Reading scenes lazily and writing COGs that keep their georeferencing."""

from __future__ import annotations

import json
import os

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from conftest import MASK_KINDS, write_masked_scene
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geo_ntl.exceptions import (
    AllNoDataError,
    MissingCRSError,
    NotARasterError,
    OutputExistsError,
    OutputPathError,
    SceneNotFoundError,
    UnsupportedRasterError,
)
from geo_ntl.io import atomic_output, ensure_valid_data, open_scene, scene_info, write_cog
from geo_ntl.testing import make_scene

DTYPES = ["uint8", "uint16", "float32"]


def _write_plain(path, array, *, crs="EPSG:3067", nodata=None, dtype=None):
    dtype = dtype or array.dtype
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=dtype,
        crs=crs,
        transform=from_origin(385000, 6672000, 0.92, 0.92),
        nodata=nodata,
    ) as dst:
        dst.write(array.astype(dtype))
    return path


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("bands", [1, 3], ids=["pan", "rgb"])
def test_write_cog__roundtrip_keeps_everything(tmp_path, dtype, bands):
    scene = make_scene((bands, 70, 90), dtype=dtype, nodata=0, chunks=32)
    scene.attrs["long_name"] = tuple(f"b{i}" for i in range(bands))
    out = write_cog(scene, tmp_path / "out.tif", stage="unit", params={"x": 1.5})
    assert cog_validate(out, quiet=True)[0]
    back = open_scene(out)
    assert back.dtype == np.dtype(dtype)
    assert back.rio.crs == scene.rio.crs
    assert back.rio.transform() == scene.rio.transform()
    assert back.rio.nodata == 0
    assert back.attrs["long_name"] == scene.attrs["long_name"] if bands > 1 else True
    np.testing.assert_array_equal(back.values, scene.values)
    with rasterio.open(out) as src:
        tags = src.tags()
        assert src.block_shapes[0] == (512, 512) or src.block_shapes[0][0] >= 70
        assert src.compression.name == "deflate"
    assert tags["GEO_NTL_STAGE"] == "unit"
    assert json.loads(tags["GEO_NTL_PARAMS"]) == {"x": 1.5}


def test_write_cog__overviews_and_tiles_on_larger_scene(tmp_path):
    scene = make_scene((3, 1100, 1300), chunks=400)
    out = write_cog(scene, tmp_path / "big.tif", compress="ZSTD")
    with rasterio.open(out) as src:
        assert src.block_shapes[0] == (512, 512)
        assert src.overviews(1) == [2, 4]
        assert src.compression.name == "zstd"
    assert cog_validate(out, quiet=True)[0]


@pytest.mark.parametrize(
    "width, height", [(512, 512), (513, 513), (1025, 300), (2049, 700), (5000, 12000)]
)
def test_cog_overview_factors__match_gdal_cog_driver(tmp_path, width, height):
    from geo_ntl.io import COG_PROFILE, cog_overview_factors

    src = tmp_path / "empty.tif"
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:3067",
        transform=from_origin(0, 0, 1, 1),
        tiled=True,
        sparse_ok=True,
    ):
        pass
    rasterio.shutil.copy(src, tmp_path / "cog.tif", driver="COG", **COG_PROFILE)
    with rasterio.open(tmp_path / "cog.tif") as cog:
        assert cog_overview_factors(width, height, 512) == cog.overviews(1)


@pytest.mark.parametrize("dtype, nodata", [("uint8", 0), ("float32", None)])
def test_write_cog__overviews_equal_gdal_cog_drivers(tmp_path, dtype, nodata):
    # write_cog builds the overviews itself (uncompressed, before encoding): they must be the
    # ones GDAL's COG driver would have made from the same pixels
    from geo_ntl.io import COG_PROFILE

    scene = make_scene((3, 1300, 1100), dtype=dtype, chunks=500, seed=5)
    if nodata is not None:
        scene = scene.rio.write_nodata(nodata)
        scene[:, 100:400, 200:700] = nodata
    ours = write_cog(scene, tmp_path / "ours.tif")
    plain = tmp_path / "plain.tif"
    with rasterio.open(ours) as src:
        profile = {**src.profile, "driver": "GTiff", "compress": "NONE"}
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(src.read())
    rasterio.shutil.copy(plain, tmp_path / "gdal.tif", driver="COG", **COG_PROFILE)
    with rasterio.open(ours) as a, rasterio.open(tmp_path / "gdal.tif") as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        for level in range(len(a.overviews(1))):
            with (
                rasterio.open(ours, overview_level=level) as oa,
                rasterio.open(tmp_path / "gdal.tif", overview_level=level) as ob,
            ):
                np.testing.assert_array_equal(oa.read(), ob.read())


def test_write_cog__scale_offset_kept(tmp_path):
    scene = make_scene((1, 40, 40), dtype="uint16")
    scene.attrs.update(scale_factor=0.01, add_offset=-1.0)
    back = open_scene(write_cog(scene, tmp_path / "s.tif"))
    assert back.attrs["scale_factor"] == pytest.approx(0.01)
    assert back.attrs["add_offset"] == pytest.approx(-1.0)


def test_write_cog__float_to_uint8_rounds_and_clips(tmp_path):
    scene = make_scene((1, 8, 8), dtype="float32")
    scene.values[0, 0, :3] = [-5.0, 3.6, 300.0]
    back = open_scene(write_cog(scene, tmp_path / "c.tif", dtype="uint8")).values
    assert back[0, 0, :3].tolist() == [0, 4, 255]


def test_write_cog__refuses_existing_without_overwrite(tmp_path, rgb_scene):
    out = write_cog(rgb_scene, tmp_path / "o.tif")
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        write_cog(rgb_scene * 0 + 1, out)
    assert out.read_bytes() == before
    write_cog((rgb_scene * 0 + 1).astype("uint8"), out, overwrite=True)
    assert (open_scene(out).values == 1).all()


def test_write_cog__missing_folder(tmp_path, rgb_scene):
    with pytest.raises(OutputPathError, match="does not exist"):
        write_cog(rgb_scene, tmp_path / "nope" / "o.tif")


def test_write_cog__unwritable_folder(tmp_path, rgb_scene, monkeypatch):
    # CI runs as root, who may write anywhere; simulate a read-only folder the way the check sees it.
    import geo_ntl._atomic as atomic

    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    with pytest.raises(OutputPathError, match="not writable"):
        write_cog(rgb_scene, tmp_path / "o.tif")
    assert list(tmp_path.iterdir()) == []


def test_write_cog__interrupted_leaves_nothing(tmp_path):
    scene = make_scene((3, 300, 300), chunks=100)
    existing = write_cog(scene, tmp_path / "keep.tif")
    before = existing.read_bytes()

    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][1:] == (2, 2):
            raise KeyboardInterrupt
        return block

    broken = scene.copy(data=scene.data.map_blocks(explode, dtype=scene.dtype))
    with pytest.raises(KeyboardInterrupt):
        write_cog(broken, tmp_path / "new.tif")
    with pytest.raises(KeyboardInterrupt):
        write_cog(broken, existing, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]
    assert existing.read_bytes() == before


def test_write_cog__no_crs(tmp_path):
    scene = make_scene((1, 8, 8), crs=None)
    with pytest.raises(MissingCRSError, match="write_crs"):
        write_cog(scene, tmp_path / "n.tif")


def test_open_scene__is_lazy_and_chunked(rgb_scene_file):
    da = open_scene(rgb_scene_file, chunks=16)
    assert isinstance(da.data, dsa.Array)
    assert da.data.chunksize == (3, 16, 16)
    assert da.dims == ("band", "y", "x")


def test_open_scene__missing(tmp_path):
    with pytest.raises(SceneNotFoundError, match="does not exist"):
        open_scene(tmp_path / "missing.tif")


def test_open_scene__not_a_raster(tmp_path):
    bogus = tmp_path / "notes.tif"
    bogus.write_text("hello")
    with pytest.raises(NotARasterError, match="not a raster"):
        open_scene(bogus)


def test_open_scene__no_crs(tmp_path):
    path = _write_plain(tmp_path / "nocrs.tif", np.ones((1, 4, 4), "uint8"), crs=None)
    with pytest.raises(MissingCRSError, match="allow_no_crs=True") as info:
        open_scene(path)
    assert "--allow-no-crs" not in str(info.value)  # no command has that option
    assert open_scene(path, allow_no_crs=True).rio.crs is None


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ((5, 4, 4), "uint8", "5 bands"),
        ((1, 4, 4), "int32", "int32"),
        ((1, 4, 4), "int8", "int8"),
    ],
    ids=["five-bands", "int32", "int8"],
)
def test_open_scene__unsupported(tmp_path, shape, dtype, match):
    path = _write_plain(tmp_path / "u.tif", np.ones(shape), dtype=dtype)
    with pytest.raises(UnsupportedRasterError, match=match):
        open_scene(path)


def test_ensure_valid_data__all_nodata(tmp_path):
    path = _write_plain(tmp_path / "empty.tif", np.zeros((3, 40, 40), "uint8"), nodata=0)
    with pytest.raises(AllNoDataError, match="no valid pixel"):
        ensure_valid_data(open_scene(path))


def test_ensure_valid_data__one_valid_pixel_found(tmp_path):
    array = np.zeros((3, 600, 600), "uint8")
    array[:, 301, 299] = 7  # missed by the decimated look, found by the full check
    ensure_valid_data(
        open_scene(_write_plain(tmp_path / "sparse.tif", array, nodata=0), chunks=128)
    )


def test_scene_info__plain_tiff_is_not_cog(tmp_path):
    path = _write_plain(tmp_path / "plain.tif", np.ones((3, 600, 600), "uint8"))
    info = scene_info(path)
    assert info["is_cog"] is False
    assert (info["width"], info["height"], info["bands"], info["crs"]) == (600, 600, 3, "EPSG:3067")


def test_atomic_output__exception_removes_partial(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_cog__disk_full_leaves_nothing(tmp_path, rgb_scene, monkeypatch):
    import errno

    import geo_ntl.io as gio

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.rasterio.shutil, "copy", no_space)
    with pytest.raises(OSError, match="no space left on device writing"):
        write_cog(rgb_scene, tmp_path / "full.tif")
    assert list(tmp_path.iterdir()) == []


def test_cli__disk_full_is_one_error_line(runner, rgb_scene_file, tmp_path, monkeypatch):
    import errno

    import geo_ntl.io as gio

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio.rasterio.shutil, "copy", no_space)
    result = runner("mosaic", rgb_scene_file, "--out", tmp_path / "m.tif", "--workers", "0")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "no space left on device" in result.stderr
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("user_value", [None, "64"])
def test_gdal_block_cache__capped_unless_the_user_sets_it(tmp_path, user_value):
    # GDAL's default cache (5 % of RAM) would keep every block a streamed scene passes through;
    # geo_ntl caps it in its own GDAL work and its worker processes, not in os.environ.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    if user_value is not None:
        env["GDAL_CACHEMAX"] = user_value
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import geo_ntl.io\n"
        "assert dict(os.environ) == before, 'importing geo_ntl.io changed os.environ'\n"
        "from geo_ntl.testing import make_scene\n"
        "geo_ntl.io.open_scene(geo_ntl.io.write_cog(make_scene((1, 32, 32)), sys.argv[1])).values\n"
        "assert dict(os.environ) == before, 'geo_ntl.io changed os.environ'\n"
        "print(geo_ntl.io.gdal_cache_environ().get('GDAL_CACHEMAX'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.tif")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    from geo_ntl.io import GDAL_CACHE_MB

    # Worker processes geo_ntl starts get the cap, unless the user chose a size.
    assert out.stdout.strip() == ("None" if user_value else str(GDAL_CACHE_MB))


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_open_scene__gdal_mask_is_nodata(tmp_path, kind, dtype):
    from geo_ntl._raster import invalid_pixels

    path, hidden = write_masked_scene(tmp_path / "masked.tif", kind, dtype=dtype)
    with rasterio.open(path) as src:
        raw = src.read(list(range(1, 4)))
    da = open_scene(path, chunks=40)
    assert da.sizes["band"] == 3  # an alpha band is the mask, not an image band
    values = da.values
    invalid = invalid_pixels(values, da.rio.nodata)
    np.testing.assert_array_equal(invalid, hidden)
    np.testing.assert_array_equal(values[:, ~hidden], raw[:, ~hidden])  # valid pixels as read
    if dtype != "float32":  # the value chosen for the hidden pixels is no valid pixel's
        assert not (values[:, ~hidden] == da.rio.nodata).all(axis=0).any()


def test_open_scene__masked_scene_using_every_value_is_refused(tmp_path):
    import rasterio.transform

    data = np.arange(256, dtype="uint8").repeat(16).reshape(1, 64, 64)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8",
               "crs": "EPSG:3067", "transform": rasterio.transform.from_origin(0, 64, 1, 1)}  # fmt: skip
    mask = np.full((64, 64), 255, "uint8")
    mask[:, 60:] = 0
    data[:, :, 60:] = 7  # hidden; every value 0..255 remains among the valid pixels
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(tmp_path / "full.tif", "w", **profile) as dst,
    ):
        dst.write(data)
        dst.write_mask(mask)
    with pytest.raises(UnsupportedRasterError, match="use every uint8 value"):
        open_scene(tmp_path / "full.tif")
