"""geo_ntl.pipeline.restore_scenes: many scenes, one COG each, resume, mosaic, stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio

from geo_ntl.exceptions import (
    AllNoDataError,
    InputError,
    OutputExistsError,
    ParameterError,
    SceneNotFoundError,
    TilingError,
)
from geo_ntl.io import open_scene, write_cog
from geo_ntl.pipeline import ComputeOptions, DeblurStage, EnhanceStage, restore_scenes
from geo_ntl.testing import make_scene

IN_PROCESS = ComputeOptions(workers=0)
FAST_ENHANCE = ("enhance", {"params": {"iterations": 1}, "tile": 32})


def _run(scenes, **kwargs):
    kwargs.setdefault("stages", [FAST_ENHANCE])
    return restore_scenes(scenes, device="cpu", compute=IN_PROCESS, **kwargs)


@pytest.fixture
def scenes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    big = make_scene((3, 60, 100), seed=9)
    return [
        write_cog(big.isel(x=slice(0, 60)), folder / "a.tif"),
        write_cog(big.isel(x=slice(40, 100)), folder / "b.tif"),
    ]


def test_restore_scenes__folder_to_out_dir_and_mosaic(scenes, tmp_path):
    written = []
    outs = _run(
        scenes[0].parent,
        out_dir=tmp_path / "out",  # created
        mosaic=tmp_path / "m.tif",
        on_written=written.append,
    )
    assert [p.name for p in outs] == ["a_enhanced.tif", "b_enhanced.tif"]
    assert [p.name for p in written] == ["a_enhanced.tif", "b_enhanced.tif", "m.tif"]
    mosaic = open_scene(tmp_path / "m.tif")
    assert mosaic.shape == (3, 60, 100)
    with rasterio.open(outs[0]) as src:
        tags = src.tags()
    assert tags["GEO_NTL_STAGE"] == "enhance" and tags["GEO_NTL_SOURCE"] == "a.tif"
    assert json.loads(tags["GEO_NTL_PARAMS"])["tile"] == 32


def test_restore_scenes__rerun_keeps_finished_outputs_and_says_so(scenes, tmp_path):
    out_dir = tmp_path / "out"
    _run(scenes, out_dir=out_dir, mosaic=tmp_path / "m.tif")
    stamps = {p: p.stat().st_mtime_ns for p in [*out_dir.glob("*.tif"), tmp_path / "m.tif"]}
    notes, written = [], []
    _run(
        scenes,
        out_dir=out_dir,
        mosaic=tmp_path / "m.tif",
        on_note=notes.append,
        on_written=written.append,
    )
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert notes == [
        "kept 2 of 2 output(s) and the mosaic from an earlier identical run; "
        "overwrite=True recomputes them"
    ]
    assert written == []  # nothing was written again


def test_restore_scenes__interrupted_run_resumes_to_identical_output(scenes, tmp_path, monkeypatch):
    import geo_ntl.enhance as enhance_module

    reference, resumed = tmp_path / "ref", tmp_path / "resumed"
    _run(scenes, out_dir=reference)
    real = enhance_module.enhance
    calls = []

    def interrupted(da, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(da, **kwargs)

    monkeypatch.setattr(enhance_module, "enhance", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(scenes, out_dir=resumed)
    assert [p.name for p in resumed.iterdir()] == ["a_enhanced.tif"]
    monkeypatch.setattr(enhance_module, "enhance", real)
    _run(scenes, out_dir=resumed)
    for name in ("a_enhanced.tif", "b_enhanced.tif"):
        assert (resumed / name).read_bytes() == (reference / name).read_bytes()


def test_restore_scenes__foreign_output_is_not_clobbered(scenes, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "b_enhanced.tif").write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        _run(scenes, out_dir=out_dir)
    assert (out_dir / "b_enhanced.tif").read_bytes() == b"precious"
    assert not (out_dir / "a_enhanced.tif").exists()  # checked before any work


def test_restore_scenes__foreign_mosaic_needs_overwrite(scenes, tmp_path):
    (tmp_path / "m.tif").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        _run(scenes, out_dir=tmp_path / "out", mosaic=tmp_path / "m.tif")
    assert (tmp_path / "m.tif").read_bytes() == b"precious"
    _run(scenes, out_dir=tmp_path / "out", mosaic=tmp_path / "m.tif", overwrite=True)
    assert open_scene(tmp_path / "m.tif").shape == (3, 60, 100)


def test_restore_scenes__bad_destinations_and_scenes(scenes, tmp_path):
    with pytest.raises(InputError):
        _run(scenes, out=tmp_path / "x.tif")  # one output for two scenes
    with pytest.raises(SceneNotFoundError, match="no scene matches"):
        _run(str(tmp_path / "*.tif"), out_dir=tmp_path)
    empty = make_scene((3, 20, 20), nodata=0)
    path = write_cog(empty.copy(data=np.zeros((3, 20, 20), "uint8")), tmp_path / "e.tif")
    with pytest.raises(AllNoDataError, match="no valid pixel"):
        _run(path, out=tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    ("stages", "error", "match"),
    [
        ([], ParameterError, "stages must be"),
        (["enhance", "deblur"], ParameterError, "stages must be"),
        (["deblur", "deblur"], ParameterError, "stages must be"),
        (["sharpen"], ParameterError, "unknown stage 'sharpen'"),
        ([("deblur", {"tiles": 32})], ParameterError, "bad arguments for stage 'deblur'"),
        ([DeblurStage(tile=30)], ParameterError, "tile must be a multiple of 4"),
        ([DeblurStage(halo=6)], TilingError, "halo must be"),
        ([DeblurStage(method="physics", batch_size=2)], ParameterError, "method='psf-gan' or"),
        ([DeblurStage(method="gan-direct", psf="psf.json")], ParameterError, "method='physics'"),
        ([DeblurStage(method="wiener")], ParameterError, "unknown deblooming method"),
        ([EnhanceStage(params={"nope": 1})], ParameterError, "nope"),
    ],
)
def test_restore_scenes__bad_stages_fail_before_any_work(scenes, tmp_path, stages, error, match):
    with pytest.raises(error, match=match):
        _run(scenes, stages=stages, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_restore_scenes__bad_dtype(scenes, tmp_path):
    with pytest.raises(ParameterError, match="dtype"):
        _run(scenes, out_dir=tmp_path / "out", dtype="uint16")


# --- deblur then enhance ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from geo_ntl.deblur.model import Generator
    from geo_ntl.deblur.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(Generator(base=4, n_blocks=1).eval(), path, meta={"note": "test"})
    return path


def test_restore_scenes__deblur_then_enhance_runs_the_gan_once_and_matches_the_command(
    runner, tiny_weights, tmp_path, monkeypatch
):
    import geo_ntl.deblur.inference as inference

    scene = write_cog(make_scene((3, 48, 48), seed=9), tmp_path / "scene.tif")
    tile = 32
    forwards = []
    original = inference._Runner._forward

    def counting(self, x):
        forwards.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(inference._Runner, "_forward", counting)
    out = tmp_path / "lib.tif"
    restore_scenes(
        scene,
        stages=[DeblurStage(method="gan-direct", weights=tiny_weights, tile=tile), "enhance"],
        out=out,
        device="cpu",
        compute=IN_PROCESS,
    )
    assert sum(forwards) == math.ceil(48 / tile) ** 2  # every tile through the GAN once
    assert not list(tmp_path.glob(".geo_ntl-gan-*"))  # the staging folder is gone

    command = tmp_path / "cli.tif"
    res = runner("deblur", scene, "--out", command, "--method", "gan-direct", "--weights", tiny_weights, "--enhance",
                 "--tile", str(tile), "--device", "cpu", "--workers", "0")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    np.testing.assert_array_equal(open_scene(out).values, open_scene(command).values)
    with rasterio.open(out) as a, rasterio.open(command) as b:
        assert a.tags()["GEO_NTL_JOB"] == b.tags()["GEO_NTL_JOB"]
        params = json.loads(a.tags()["GEO_NTL_PARAMS"])
    assert params["enhance"]["iterations"] == 3 and params["tile"] == tile


@pytest.mark.parametrize("spec", ["enhance", ("enhance", {"tile": 64})])
def test_plan_stages__one_stage_given_bare(spec):
    """``stages="enhance"`` is one stage, not the letters e, n, h... (#26)."""
    from geo_ntl._stages import plan_stages

    assert plan_stages(spec).stages == ("enhance",)


# --- the device is part of the job ------------------------------------------------------------


def test_restore_scenes__device_precision_and_batch_in_the_job(tiny_weights, tmp_path, monkeypatch):
    from geo_ntl import _device

    scene = write_cog(make_scene((3, 48, 48), seed=9), tmp_path / "scene.tif")
    out = tmp_path / "out.tif"
    gan = [DeblurStage(method="gan-direct", weights=tiny_weights, tile=32)]
    restore_scenes(scene, stages=gan, out=out, device="cpu", compute=IN_PROCESS)
    with rasterio.open(out) as src:
        params, job = json.loads(src.tags()["GEO_NTL_PARAMS"]), src.tags()["GEO_NTL_JOB"]
    # The batch is the effective one (it was recorded as None, its default the device's).
    assert (params["device"], params["precision"], params["batch_size"]) == ("cpu", "fp32", 1)

    # The same job planned on a GPU (stood in for by the CPU) is another job: its output is
    # not kept as "identical" (reduced precision, another default batch).
    resolve = _device.resolve_device
    monkeypatch.setattr(
        _device, "resolve_device", lambda d="auto": resolve("cpu" if d == "cuda" else d)
    )
    monkeypatch.setattr(_device, "plan_device", lambda d="auto": _device.DevicePlan("cuda", "bf16"))
    with pytest.raises(OutputExistsError):
        restore_scenes(scene, stages=gan, out=out, device="auto", compute=IN_PROCESS)
    restore_scenes(scene, stages=gan, out=out, device="auto", compute=IN_PROCESS, overwrite=True)
    with rasterio.open(out) as src:
        params = json.loads(src.tags()["GEO_NTL_PARAMS"])
        assert src.tags()["GEO_NTL_JOB"] != job and src.tags()["GEO_NTL_DEVICE"] == "cuda"
    assert (params["device"], params["precision"], params["batch_size"]) == ("cuda", "bf16", 4)


def test_restore_scenes__enhancer_records_its_device(scenes, tmp_path):
    (out,) = _run(scenes[:1], out_dir=tmp_path / "out")
    with rasterio.open(out) as src:
        params = json.loads(src.tags()["GEO_NTL_PARAMS"])
    assert (params["device"], params["precision"]) == ("cpu", "fp32")
