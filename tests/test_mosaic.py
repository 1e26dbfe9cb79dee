"""Mosaics: exact where scenes agree, feathered seams, nodata respected, VRT tiles resumable."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geo_ntl.exceptions import MissingCRSError, UnsupportedRasterError
from geo_ntl.io import open_scene, write_cog
from geo_ntl.mosaic import mosaic, mosaic_grid, write_mosaic
from geo_ntl.testing import make_scene

OFFSETS = [(0, 0), (0, 90), (70, 0), (70, 90)]


@pytest.fixture
def tiles(tmp_path):
    """Four overlapping crops of one 150 x 200 scene."""
    big = make_scene((3, 150, 200), seed=5, nodata=0)
    paths = []
    for i, (r, c) in enumerate(OFFSETS):
        crop = big.isel(y=slice(r, r + 80), x=slice(c, c + 110))
        paths.append(write_cog(crop, tmp_path / f"t{i}.tif"))
    return big, paths


@pytest.mark.parametrize("chunks", [37, 64, 256])
def test_mosaic__reassembles_crops_exactly(tiles, chunks):
    big, paths = tiles
    result = mosaic(paths, chunks=chunks)
    assert result.rio.transform() == big.rio.transform()
    assert result.rio.crs == big.rio.crs
    np.testing.assert_array_equal(result.values, big.values)


def test_mosaic__feathers_a_seam(tmp_path):
    left = make_scene((1, 40, 60), seed=1).copy(data=np.full((1, 40, 60), 100, "uint8"))
    right = left.copy(data=np.full((1, 40, 60), 200, "uint8"))
    right = right.assign_coords(x=right.x + 30 * 0.92).rio.write_transform(
        rasterio.transform.from_origin(385000 + 30 * 0.92, 6672000, 0.92, 0.92)
    )
    paths = [write_cog(left, tmp_path / "l.tif"), write_cog(right, tmp_path / "r.tif")]
    row = mosaic(paths, feather=10).values[0, 20]
    assert row[0] == 100 and row[-1] == 200
    overlap = row[30:60].astype(int)
    assert (np.diff(overlap) >= 0).all()  # a monotone ramp, not a step
    assert 100 < overlap[15] < 200


def test_mosaic__nodata_does_not_leak(tmp_path):
    a = make_scene((1, 30, 30), seed=1, nodata=0)
    data = np.full((1, 30, 30), 50, "uint8")
    data[:, :, 20:] = 0  # a hole of nodata in the first scene
    a = a.copy(data=data)
    b = a.copy(data=np.full((1, 30, 30), 150, "uint8"))
    out = mosaic(
        [write_cog(a, tmp_path / "a.tif"), write_cog(b, tmp_path / "b.tif")], feather=1
    ).values
    assert (out[0, :, 25:] == 150).all()


def test_mosaic__reprojects_other_crs(tiles, tmp_path):
    big, paths = tiles
    utm = write_cog(big.rio.reproject("EPSG:32635"), tmp_path / "utm.tif")
    result = mosaic([paths[0], utm])
    assert result.rio.crs.to_epsg() == 3067
    valid = result.values[0] > 0
    assert valid.mean() > 0.9


def test_mosaic_grid__mismatched_bands(tiles, tmp_path):
    _, paths = tiles
    single = write_cog(make_scene((1, 20, 20)), tmp_path / "pan.tif")
    with pytest.raises(UnsupportedRasterError, match="band"):
        mosaic_grid([paths[0], single])


def test_mosaic_grid__mismatched_dtype(tiles, tmp_path):
    _, paths = tiles
    other = write_cog(make_scene((3, 20, 20), dtype="uint16"), tmp_path / "u16.tif")
    with pytest.raises(UnsupportedRasterError, match="uint16"):
        mosaic_grid([paths[0], other])


def test_mosaic_grid__no_crs(tiles, tmp_path):
    _, paths = tiles
    nocrs = write_cog(make_scene((3, 20, 20), crs=None), tmp_path / "n.tif", allow_no_crs=True)
    with pytest.raises(MissingCRSError):
        mosaic_grid([paths[0], nocrs])


def test_write_mosaic__cog(tiles, tmp_path):
    big, paths = tiles
    out = write_mosaic(paths, tmp_path / "m.tif")
    assert cog_validate(out, quiet=True)[0]
    np.testing.assert_array_equal(open_scene(out).values, big.values)


def test_write_mosaic__vrt_resumes(tiles, tmp_path):
    big, paths = tiles
    out = write_mosaic(paths, tmp_path / "m.vrt", vrt=True, tile_size=64)
    np.testing.assert_array_equal(open_scene(out).values, big.values)
    tile_files = sorted((tmp_path / "m_tiles").glob("*.tif"))
    assert len(tile_files) == 12  # 3 rows x 4 columns of 64-pixel tiles
    stamps = {p: p.stat().st_mtime_ns for p in tile_files}
    tile_files[0].unlink()  # as if the run had stopped before this tile
    again = write_mosaic(paths, tmp_path / "m.vrt", vrt=True, tile_size=64)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in tile_files[1:])
    assert tile_files[0].exists()
    np.testing.assert_array_equal(open_scene(again).values, big.values)
    # --overwrite recomputes every tile, finished or not.
    write_mosaic(paths, tmp_path / "m.vrt", vrt=True, tile_size=64, overwrite=True)
    assert all(p.stat().st_mtime_ns != stamps[p] for p in tile_files[1:])


def test_cli_mosaic__error_on_missing_scene(runner, tiles, tmp_path):
    _, paths = tiles
    result = runner("mosaic", paths[0], tmp_path / "nope.tif", "--out", tmp_path / "m.tif")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_cli_mosaic__writes(runner, tiles, tmp_path):
    big, paths = tiles
    result = runner("mosaic", *paths, "--out", tmp_path / "m.tif", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(open_scene(tmp_path / "m.tif").values, big.values)


def test_cli_mosaic__vrt_tiles_in_the_chosen_compression(runner, tiles, tmp_path):
    import rasterio

    big, paths = tiles
    out = tmp_path / "m.vrt"
    args = ("--out", out, "--vrt", "--vrt-tile", "256", "--compress", "zstd", "--workers", "0")
    result = runner("mosaic", *paths, *args)
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(open_scene(out).values, big.values)
    for path in (tmp_path / "m_tiles").glob("*.tif"):
        with rasterio.open(path) as src:
            assert src.compression.name == "zstd"


def test_cli_mosaic__vrt_resume_follows_the_output_rules(runner, tiles, tmp_path):
    _, paths = tiles
    out = tmp_path / "m.vrt"
    args = ("mosaic", *paths, "--out", out, "--vrt", "--vrt-tile", "256", "--workers", "0")
    assert runner(*args).exit_code == 0
    tile_files = sorted((tmp_path / "m_tiles").glob("*.tif"))
    stamps = {p: p.stat().st_mtime_ns for p in [out, *tile_files]}
    kept = runner(*args)  # the same command: kept, nothing rewritten
    assert kept.exit_code == 0 and kept.stderr.startswith(f"kept {out}")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    changed = runner(*args, "--feather", "16")  # another mosaic: refused without --overwrite
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    redone = runner(*args, "--feather", "16", "--overwrite")
    assert redone.exit_code == 0, redone.stderr
    assert all(p.stat().st_mtime_ns != stamps[p] for p in stamps)
    with rasterio.open(out) as vrt:
        assert vrt.tags()["GEO_NTL_STAGE"] == "mosaic" and "GEO_NTL_JOB" in vrt.tags()


def test_write_mosaic__same_mosaic_twice_is_kept(tiles, tmp_path):
    _, paths = tiles
    out = write_mosaic(paths, tmp_path / "m.tif")
    before = out.stat().st_mtime_ns
    assert write_mosaic(paths, out) == out and out.stat().st_mtime_ns == before


def _flat(value, shape, *, dtype="uint8", resolution=0.92, origin=(385_000.0, 6_672_000.0)):
    scene = make_scene(shape, dtype=dtype, resolution=resolution, origin=origin)
    return scene.copy(data=np.full(shape, value, dtype))


@pytest.mark.parametrize(
    "other",
    ["pixel size", "crs", "resolution given"],
)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_mosaic__gaps_beside_a_warped_scene_stay_gaps(tmp_path, other, dtype):
    """Scenes without nodata on different grids: the gaps are gaps, not valid 0."""
    a = _flat(100, (1, 60, 60), dtype=dtype)
    # b: below-right of a, overlapping it by 20 px, leaving two corners of the union uncovered
    b_origin = (385_000.0 + 40 * 0.92, 6_672_000.0 - 40 * 0.92)
    kwargs = {}
    if other == "pixel size":
        b = _flat(200, (1, 30, 30), dtype=dtype, resolution=1.84, origin=b_origin)
    elif other == "crs":
        b = _flat(200, (1, 60, 60), dtype=dtype, origin=b_origin)
        b = b.rio.reproject("EPSG:3857")
        b = b.copy(data=np.full(b.shape, 200, dtype)).rio.write_nodata(None)
        b.attrs.pop("_FillValue", None)
    else:
        b = _flat(200, (1, 60, 60), dtype=dtype, origin=b_origin)
        kwargs = {"resolution": 0.46}
    paths = [write_cog(a, tmp_path / "a.tif"), write_cog(b, tmp_path / "b.tif")]
    out = tmp_path / "m.tif"
    write_mosaic(paths, out, feather=16, **kwargs)
    with rasterio.open(out) as src:
        values = src.read(1).astype(float)
        valid = src.dataset_mask() > 0
        scale = round(abs(0.92 / src.res[0]))
    if dtype == "float32":
        valid &= np.isfinite(values)
    # top-right and bottom-left corners: outside both scenes
    corner = slice(0, 30 * scale), slice(-10 * scale, None)
    assert not valid[corner].any()
    assert not valid[-10 * scale :, : 30 * scale].any()
    # a's own pixels away from b keep their value exactly (no blending with warped zeros)
    own = values[: 35 * scale, : 35 * scale]
    assert valid[: 35 * scale, : 35 * scale].all()
    np.testing.assert_array_equal(own, 100)


@pytest.mark.parametrize("kind", ["internal", "msk", "alpha", "mosaic"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("resolution", [None, 0.46])
def test_mosaic__gdal_masks_of_the_scenes_are_gaps(tmp_path, kind, dtype, resolution):
    """A mask band, .msk or alpha band hides pixels from the mosaic, on its grid or warped."""
    from conftest import write_masked_scene

    path, hidden = write_masked_scene(tmp_path / "s.tif", kind, dtype=dtype, bands=3)
    out = tmp_path / "m.tif"
    write_mosaic([path], out, feather=4, resolution=resolution)
    with rasterio.open(out) as src:
        assert src.count == 3
        valid = src.dataset_mask() > 0
        if dtype == "float32":
            valid &= np.isfinite(src.read(1))
    step = 2 if resolution else 1
    hidden_cols = slice(2 * 96 // 3 * step + step, None)  # off the warped edge's pixel
    assert not valid[:, hidden_cols].any()
    assert valid[:, : 60 * step].all()
