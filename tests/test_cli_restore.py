"""Restoration commands over many scenes: one COG each, resume, mosaic, no clobbering."""

from __future__ import annotations

import numpy as np
import pytest

from geo_ntl.io import open_scene, write_cog
from geo_ntl.testing import make_scene

FAST = ("--param", "iterations=1", "--tile", "32", "--device", "cpu", "--workers", "0")


@pytest.fixture
def scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    big = make_scene((3, 60, 100), seed=9)
    return [
        write_cog(big.isel(x=slice(0, 60)), folder / "a.tif"),
        write_cog(big.isel(x=slice(40, 100)), folder / "b.tif"),
    ]


def test_enhance__folder_to_out_dir_and_mosaic(runner, scenes, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner(
        "enhance", scenes[0].parent, "--out-dir", out_dir, "--mosaic", tmp_path / "m.tif", *FAST
    )
    assert result.exit_code == 0, result.stderr
    outs = sorted(out_dir.glob("*.tif"))
    assert [p.name for p in outs] == ["a_enhanced.tif", "b_enhanced.tif"]
    mosaic = open_scene(tmp_path / "m.tif")
    assert mosaic.shape == (3, 60, 100)
    assert mosaic.rio.crs == open_scene(scenes[0]).rio.crs


def test_enhance__rerun_skips_finished_scenes(runner, scenes, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert runner("enhance", *scenes, "--out-dir", out_dir, *FAST).exit_code == 0
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.glob("*.tif")}
    again = runner("enhance", *scenes, "--out-dir", out_dir, *FAST)
    assert again.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in out_dir.glob("*.tif")} == stamps


def test_enhance__interrupted_run_resumes_to_identical_output(
    runner, scenes, tmp_path, monkeypatch
):
    import geo_ntl.enhance as enhance_module

    reference_dir, resumed_dir = tmp_path / "ref", tmp_path / "resumed"
    reference_dir.mkdir()
    resumed_dir.mkdir()
    assert runner("enhance", *scenes, "--out-dir", reference_dir, *FAST).exit_code == 0

    real = enhance_module.enhance
    calls = []

    def interrupted(da, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(da, **kwargs)

    monkeypatch.setattr(enhance_module, "enhance", interrupted)
    result = runner("enhance", *scenes, "--out-dir", resumed_dir, *FAST)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert [p.name for p in resumed_dir.iterdir()] == ["a_enhanced.tif"]
    first = (resumed_dir / "a_enhanced.tif").stat().st_mtime_ns

    monkeypatch.setattr(enhance_module, "enhance", real)
    assert runner("enhance", *scenes, "--out-dir", resumed_dir, *FAST).exit_code == 0
    assert (resumed_dir / "a_enhanced.tif").stat().st_mtime_ns == first
    for name in ("a_enhanced.tif", "b_enhanced.tif"):
        assert (resumed_dir / name).read_bytes() == (reference_dir / name).read_bytes()


def test_enhance__foreign_output_is_not_clobbered(runner, scenes, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "b_enhanced.tif").write_bytes(b"precious")
    result = runner("enhance", *scenes, "--out-dir", out_dir, *FAST)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (out_dir / "b_enhanced.tif").read_bytes() == b"precious"
    assert not (out_dir / "a_enhanced.tif").exists()  # checked before any work


def test_enhance__out_with_several_scenes(runner, scenes, tmp_path):
    result = runner("enhance", *scenes, "--out", tmp_path / "x.tif", *FAST)
    assert result.exit_code == 2 and "--out-dir" in result.stderr


def test_enhance__glob_matching_nothing(runner, tmp_path):
    result = runner("enhance", str(tmp_path / "*.tif"), "--out-dir", tmp_path, *FAST)
    assert result.exit_code == 2 and "no scene matches" in result.stderr


def test_enhance__all_nodata_scene(runner, tmp_path):
    empty = make_scene((3, 20, 20), nodata=0)
    path = write_cog(empty.copy(data=np.zeros((3, 20, 20), "uint8")), tmp_path / "e.tif")
    result = runner("enhance", path, "--out", tmp_path / "o.tif", *FAST)
    assert result.exit_code == 2 and "no valid pixel" in result.stderr
    assert not (tmp_path / "o.tif").exists()


def test_enhance__cluster_run_overlapping_scenes_gives_the_same_bytes(runner, scenes, tmp_path):
    from geo_ntl.io import write_cog as write

    more = [write(open_scene(scenes[0]).isel(y=slice(10, 50)), scenes[0].with_name("c.tif"))]
    threads_dir, cluster_dir = tmp_path / "threads", tmp_path / "cluster"
    threads_dir.mkdir()
    cluster_dir.mkdir()
    assert runner("enhance", *scenes, *more, "--out-dir", threads_dir, *FAST).exit_code == 0
    cluster = [*FAST[:-1], "2", "--threads-per-worker", "1"]  # --workers 2: two scenes at once
    result = runner("enhance", *scenes, *more, "--out-dir", cluster_dir, *cluster)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in threads_dir.iterdir())
    assert names == sorted(p.name for p in cluster_dir.iterdir()) and len(names) == 3
    for name in names:
        assert (cluster_dir / name).read_bytes() == (threads_dir / name).read_bytes()


def test_enhance__compress_option_changes_the_codec_not_the_pixels(runner, scenes, tmp_path):
    import rasterio

    outs = {}
    for codec in ("deflate", "zstd"):
        out_dir = tmp_path / codec
        out_dir.mkdir()
        result = runner(
            "enhance", *scenes, "--out-dir", out_dir, "--mosaic", out_dir / "m.tif",
            "--compress", codec, *FAST,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        outs[codec] = sorted(out_dir.glob("*.tif"))
        for path in outs[codec]:
            with rasterio.open(path) as src:
                assert src.compression.name.upper() == codec.upper()
    for deflated, zstd in zip(outs["deflate"], outs["zstd"], strict=True):
        with rasterio.open(deflated) as a, rasterio.open(zstd) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_enhance__unknown_compression_is_a_usage_error(runner, scenes, tmp_path):
    result = runner("enhance", scenes[0], "--out", tmp_path / "x.tif", "--compress", "jpeg", *FAST)
    assert result.exit_code == 2
    assert "--compress" in result.stderr
    assert not (tmp_path / "x.tif").exists()


def _stamp(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_enhance__same_command_twice_keeps_the_output(runner, scenes, tmp_path):
    out = tmp_path / "o.tif"
    assert runner("enhance", scenes[0], "--out", out, *FAST).exit_code == 0
    before = _stamp(out)
    again = runner("enhance", scenes[0], "--out", out, *FAST)
    assert again.exit_code == 0, again.stderr
    assert _stamp(out) == before  # not rewritten
    assert again.stderr.strip() == (
        "kept 1 of 1 output(s) from an earlier identical run; --overwrite recomputes them"
    )


def test_enhance__overwrite_recomputes_a_finished_output(runner, scenes, tmp_path):
    out = tmp_path / "o.tif"
    assert runner("enhance", scenes[0], "--out", out, *FAST).exit_code == 0
    before, data = _stamp(out), open_scene(out).values
    again = runner("enhance", scenes[0], "--out", out, "--overwrite", *FAST)
    assert again.exit_code == 0, again.stderr
    assert _stamp(out) != before and "kept" not in again.stderr
    assert again.stderr.strip() == (
        "recomputing 1 of 1 output(s) an earlier identical run wrote (--overwrite)"
    )
    np.testing.assert_array_equal(open_scene(out).values, data)


def test_enhance__changed_parameter_default_recomputes(runner, scenes, tmp_path, monkeypatch):
    import dataclasses

    from geo_ntl.enhance import ASMParams

    out = tmp_path / "o.tif"
    assert runner("enhance", scenes[0], "--out", out, *FAST).exit_code == 0
    before = _stamp(out)
    names = [f.name for f in dataclasses.fields(ASMParams)]
    defaults = list(ASMParams.__init__.__defaults__)
    defaults[names.index("p")] = 0.3  # as if a release changed the default of p
    monkeypatch.setattr(ASMParams.__init__, "__defaults__", tuple(defaults))
    refused = runner("enhance", scenes[0], "--out", out, *FAST)
    assert refused.exit_code == 2 and "other parameters (p)" in refused.stderr
    assert _stamp(out) == before
    redone = runner("enhance", scenes[0], "--out", out, "--overwrite", *FAST)
    assert redone.exit_code == 0, redone.stderr
    assert _stamp(out) != before
    import json

    import rasterio

    with rasterio.open(out) as src:
        assert json.loads(src.tags()["GEO_NTL_PARAMS"])["p"] == 0.3


def test_enhance__rerun_with_mosaic_keeps_outputs_and_mosaic(runner, scenes, tmp_path):
    out_dir, mosaic = tmp_path / "out", tmp_path / "m.tif"
    out_dir.mkdir()
    args = ("enhance", scenes[0].parent, "--out-dir", out_dir, "--mosaic", mosaic, *FAST)
    assert runner(*args).exit_code == 0
    stamps = {p: _stamp(p) for p in [mosaic, *out_dir.iterdir()]}
    again = runner(*args)
    assert again.exit_code == 0, again.stderr
    assert "kept 2 of 2 output(s) and the mosaic" in again.stderr
    assert {p: _stamp(p) for p in stamps} == stamps


@pytest.mark.parametrize("alias", ["dotdot", "symlink"])
def test_enhance__output_that_is_the_input_under_another_name(runner, scenes, tmp_path, alias):
    scene = scenes[0]
    if alias == "dotdot":
        out = scene.parent / ".." / scene.parent.name / scene.name
    else:
        (tmp_path / "link").symlink_to(scene.parent)
        out = tmp_path / "link" / scene.name
    before = scene.read_bytes()
    result = runner("enhance", scene, "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 2 and "is the input scene" in result.stderr
    assert scene.read_bytes() == before


def test_enhance__mosaic_that_is_an_input_or_an_output(runner, scenes, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    base = ("enhance", *scenes, "--out-dir", out_dir, "--overwrite", *FAST)
    result = runner(*base, "--mosaic", scenes[1].parent / ".." / "scenes" / "b.tif")
    assert result.exit_code == 2 and "is the input scene" in result.stderr
    result = runner(*base, "--mosaic", out_dir / "a_enhanced.tif")
    assert result.exit_code == 2 and "same file" in result.stderr
    assert list(out_dir.iterdir()) == []


def test_mosaic__out_inside_the_folder_it_mosaics(runner, scenes, tmp_path):
    out = scenes[0].parent / "m.tif"
    assert runner("mosaic", scenes[0].parent, "--out", out, "--workers", "0").exit_code == 0
    # The second run would read its own output as a scene.
    result = runner("mosaic", scenes[0].parent, "--out", out, "--workers", "0", "--overwrite")
    assert result.exit_code == 2 and "is the input scene" in result.stderr


def test_cluster__out_that_is_the_roads_file(runner, scenes, tmp_path):
    roads = tmp_path / "roads.gpkg"
    roads.write_bytes(b"precious roads")
    result = runner("cluster", scenes[0], "--roads", roads, "--permeable", tmp_path / "p.gpkg",
                    "--out", tmp_path / "." / "roads.gpkg", "--overwrite")  # fmt: skip
    assert result.exit_code == 2 and "is the roads file" in result.stderr
    assert roads.read_bytes() == b"precious roads"


def test_info__prints_provenance(runner, scenes, tmp_path):
    import json

    out = tmp_path / "o.tif"
    assert runner("enhance", scenes[0], "--out", out, *FAST).exit_code == 0
    text = runner("info", out).stdout
    for label in ("geo_ntl version", "geo_ntl code", "stage", "parameters", "device", "torch",
                  "GDAL", "job signature"):  # fmt: skip
        assert any(line.startswith(label + " ") for line in text.splitlines()), label
    details = json.loads(runner("info", out, "--json").stdout)["provenance"]
    assert details["stage"] == "enhance" and details["device"] == "cpu"
    assert details["params"]["iterations"] == 1 and details["params"]["tile"] == 32
    assert details["version"] == "0.2.0" and len(details["code"]) == 16


def test_enhance__rerun_into_the_input_folder(runner, scenes):
    """``DIR --out-dir DIR`` twice: the second run leaves its own outputs out (#26)."""
    folder = scenes[0].parent
    first = runner("enhance", folder, "--out-dir", folder, *FAST)
    assert first.exit_code == 0, first.stderr
    outs = sorted(p.name for p in folder.glob("*_enhanced.tif"))
    assert outs == ["a_enhanced.tif", "b_enhanced.tif"]
    stamps = [p.stat().st_mtime_ns for p in sorted(folder.glob("*_enhanced.tif"))]
    again = runner("enhance", folder, "--out-dir", folder, *FAST)
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in folder.glob("*.tif")) == ["a.tif", "a_enhanced.tif", "b.tif",
                                                            "b_enhanced.tif"]  # fmt: skip
    assert [p.stat().st_mtime_ns for p in sorted(folder.glob("*_enhanced.tif"))] == stamps


def test_enhance__a_foreign_file_named_like_an_output_is_still_a_scene(runner, scenes):
    folder = scenes[0].parent
    write_cog(make_scene((3, 60, 60), seed=2), folder / "c_enhanced.tif")  # not geo_ntl's output
    res = runner("enhance", folder, "--out-dir", folder, *FAST)
    assert res.exit_code == 0, res.stderr
    assert (folder / "c_enhanced_enhanced.tif").exists()


@pytest.mark.parametrize("kind", ["mosaic", "alpha"])
def test_enhance__masked_pixels_stay_nodata(runner, tmp_path, kind):
    import rasterio
    from conftest import write_masked_scene

    from geo_ntl._raster import invalid_pixels

    scene, hidden = write_masked_scene(tmp_path / "masked.tif", kind, shape=(64, 64))
    out = tmp_path / "o.tif"
    res = runner("enhance", scene, "--out", out, *FAST)
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst:
        values, nodata = dst.read(), dst.nodata
    assert values.shape[0] == 3 and nodata is not None
    np.testing.assert_array_equal(invalid_pixels(values, nodata), hidden)
