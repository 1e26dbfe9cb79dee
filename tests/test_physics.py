"""Tests of the physics baseline (damped, masked Richardson-Lucy) and `deblur --method physics`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from geo_ntl.deblur.physics import deconvolve, deconvolve_array, default_halo, physics_stage
from geo_ntl.exceptions import InputError, ParameterError
from geo_ntl.io import write_cog
from geo_ntl.psf import lamp_fwhm
from geo_ntl.simulate.psf import gaussian_psf, moffat_psf
from geo_ntl.testing import make_scene

SEED = 0
KERNEL = gaussian_psf(9, sigma=1.3).astype(np.float64)


def blurred_lamps(
    shape: tuple[int, int, int] = (3, 96, 96),
    *,
    kernel: np.ndarray = KERNEL,
    n: int = 40,
    seed: int = SEED,
    peak: float = 150.0,
    dtype: str = "uint8",
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros(shape[1:])
    ys, xs = rng.integers(4, shape[1] - 4, n), rng.integers(4, shape[2] - 4, n)
    img[ys, xs] = rng.uniform(0.3, 1.0, n) * peak / kernel.max()
    out = np.stack([signal.fftconvolve(img, kernel, mode="same") for _ in range(shape[0])])
    out = np.clip(out + 6 + rng.normal(0, 1.0, out.shape), 0, None)
    if np.dtype(dtype).kind in "ui":
        return np.clip(np.round(out), 0, np.iinfo(dtype).max).astype(dtype)
    return out.astype(dtype)


def as_scene(pixels: np.ndarray, *, chunks: int | None = None, nodata: float | None = None):
    da = make_scene(pixels.shape, dtype=str(pixels.dtype), nodata=nodata).copy(data=pixels)
    return da.chunk({"y": chunks, "x": chunks}) if chunks else da


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(24, 56), iterations=st.integers(1, 30))
def test_deconvolve_array__conserves_flux(seed, size, iterations):
    rng = np.random.default_rng(seed)
    image = (rng.gamma(0.5, 20.0, (2, size, size)) + rng.uniform(0, 5)).astype(np.float32)
    out = deconvolve_array(image, KERNEL, iterations=iterations)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out.sum() == pytest.approx(image.sum(), rel=2e-3)


def test_deconvolve_array__damped_flux_within_two_percent():
    image = blurred_lamps((2, 96, 96), dtype="float32")
    out = deconvolve_array(image, KERNEL, damping=1.0)
    assert out.sum() == pytest.approx(image.sum(), rel=0.02)


def test_deconvolve_array__sharpens_lamps_and_keeps_cell_flux():
    image = blurred_lamps((1, 128, 128), n=12, peak=100.0)
    out = deconvolve_array(image, KERNEL, dtype="float32")
    lamps = [(y, x) for y, x in np.argwhere(image[0] == image[0].max())][:1]
    before = lamp_fwhm(image, lamps, radius=10)
    after = lamp_fwhm(out, lamps, radius=10)
    assert after[0] < 0.8 * before[0]
    cells = [(slice(y, y + 64), slice(x, x + 64)) for y in (0, 64) for x in (0, 64)]
    ratios = [out[0][c].sum() / image[0][c].astype(float).sum() for c in cells]
    assert np.allclose(ratios, 1.0, atol=0.03)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"], ids=str)
def test_deconvolve_array__keeps_dtype_and_nodata(dtype):
    image = blurred_lamps((3, 64, 64), dtype=dtype)
    nodata = 0 if dtype != "float32" else -9999.0
    image[:, :10, :12] = nodata
    out = deconvolve_array(image, KERNEL, nodata=nodata)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert (out[:, :10, :12] == nodata).all()
    assert np.isfinite(out.astype(float)).all()


def test_deconvolve_array__float_nan_kept_and_two_d():
    image = blurred_lamps((1, 48, 48), dtype="float32")[0]
    image[5, 5] = np.nan
    out = deconvolve_array(image, KERNEL)
    assert out.shape == image.shape and np.isnan(out[5, 5]) and np.isfinite(out[6:, 6:]).all()


def test_deconvolve_array__saturated_pixels_not_lowered():
    image = blurred_lamps((1, 64, 64), peak=400.0)
    clipped = image == 255
    assert clipped.any()
    out = deconvolve_array(image, KERNEL)
    assert (out[clipped] == 255).all()


def test_deconvolve__tiled_equals_whole_within_one_dn():
    image = blurred_lamps((3, 160, 144), n=80, seed=3)
    da = as_scene(image, chunks=64)
    kernel = moffat_psf(9).astype(np.float64)
    tiled = deconvolve(da, psf=kernel, tile=64).values
    whole = deconvolve_array(image, kernel)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert default_halo(9, 25) >= 32


def test_deconvolve__keeps_grid_nodata_and_attrs():
    image = blurred_lamps((3, 96, 96))
    image[:, 40:50, 40:50] = 0
    da = as_scene(image, chunks=48, nodata=0)
    da.attrs["long_name"] = ("r", "g", "b")
    out = deconvolve(da, psf=KERNEL, tile=48)
    assert out.rio.crs == da.rio.crs and out.rio.transform() == da.rio.transform()
    assert (
        out.rio.nodata == 0 and out.dtype == da.dtype and out.attrs["long_name"] == ("r", "g", "b")
    )
    assert (out.values[:, 40:50, 40:50] == 0).all()


def test_deconvolve__per_band_kernels_from_estimate():
    from geo_ntl.psf import estimate_psf

    image = blurred_lamps((3, 144, 144), n=40, seed=4, kernel=gaussian_psf(15, sigma=1.6))
    da = as_scene(image)
    est = estimate_psf(image)
    out = deconvolve(da, psf=est)
    assert out.shape == da.shape
    auto = deconvolve(da)  # the PSF measured on the scene
    assert np.abs(auto.values.astype(int) - out.values.astype(int)).max() <= 1


def test_deconvolve__bad_psf_and_options():
    da = as_scene(blurred_lamps((3, 48, 48)))
    with pytest.raises(ParameterError, match="odd"):
        deconvolve(da, psf=np.ones((4, 4)))
    with pytest.raises(ParameterError, match="one per band"):
        deconvolve(da, psf=np.ones((2, 5, 5)))
    with pytest.raises(ParameterError, match="iterations"):
        deconvolve(da, psf=KERNEL, iterations=0)
    with pytest.raises(ParameterError, match="tile"):
        deconvolve(da, psf=KERNEL, tile=8)


def test_physics_stage__params_and_bad_json(tmp_path):
    _, params = physics_stage(None)
    assert params["method"] == "physics" and params["psf_fwhm"] == "per scene"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        physics_stage(bad)
    bad.write_text(json.dumps({"kernel": [[1]]}))
    with pytest.raises(InputError, match="geo-ntl psf"):
        physics_stage(bad)
    with pytest.raises(InputError, match="does not exist"):
        physics_stage(tmp_path / "missing.json")


# --- command line --------------------------------------------------------------------------


@pytest.fixture
def lamp_scene_file(tmp_path):
    pixels = blurred_lamps((3, 160, 160), n=50, seed=5, kernel=gaussian_psf(15, sigma=1.6))
    return write_cog(as_scene(pixels), tmp_path / "lamps.tif")


def test_cli_deblur_physics__writes_cog(runner, lamp_scene_file, tmp_path):
    out = tmp_path / "out.tif"
    res = runner(
        "deblur",
        lamp_scene_file,
        "--out",
        out,
        "--method",
        "physics",
        "--no-enhance",
        "--tile",
        "64",
    )
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst, rasterio.open(lamp_scene_file) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.dtypes == src.dtypes and dst.shape == src.shape
        params = json.loads(dst.tags()["GEO_NTL_PARAMS"])
        assert params["method"] == "physics" and dst.tags()["GEO_NTL_STAGE"] == "deblur"


def test_cli_deblur_physics__psf_json_and_float32(runner, lamp_scene_file, tmp_path):
    res = runner("psf", lamp_scene_file, "--json")
    assert res.exit_code == 0, res.stderr
    psf_file = tmp_path / "psf.json"
    psf_file.write_text(res.stdout)
    out = tmp_path / "out.tif"
    res = runner(
        "deblur",
        lamp_scene_file,
        "--out",
        out,
        "--method",
        "physics",
        "--psf-json",
        psf_file,
        "--no-enhance",
        "--float32",
    )
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst:
        assert dst.dtypes[0] == "float32"
        params = json.loads(dst.tags()["GEO_NTL_PARAMS"])
        assert params["psf_fwhm"] == pytest.approx(
            json.loads(psf_file.read_text())["fwhm"], abs=1e-3
        )


def test_cli_deblur_physics__bad_psf_json(runner, lamp_scene_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kernel": [[0.5, 0.5]]}')
    out = tmp_path / "out.tif"
    res = runner("deblur", lamp_scene_file, "--out", out, "--method", "physics", "--psf-json", bad)
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "bad.json" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


def test_cli_deblur__psf_json_needs_a_method_that_takes_a_psf(runner, lamp_scene_file, tmp_path):
    res = runner("deblur", lamp_scene_file, "--out", tmp_path / "o.tif", "--psf-json", "x.json",
                 "--method", "gan-direct")  # fmt: skip
    assert res.exit_code == 2 and "--method psf-gan or physics" in res.stderr


def test_cli_deblur_physics__scene_without_lamps(runner, tmp_path):
    rng = np.random.default_rng(6)
    flat = np.clip(rng.normal(20, 2, (3, 96, 96)), 0, 255).astype(np.uint8)
    path = write_cog(as_scene(flat), tmp_path / "flat.tif")
    out = tmp_path / "out.tif"
    res = runner("deblur", path, "--out", out, "--method", "physics", "--no-enhance")
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "--psf-json" in res.stderr
    assert not out.exists()


def test_levels__black_is_the_darkest_area_not_the_noise_tail():
    # RL's positivity acts at the black level: taken from the raw pixels' low tail
    # (20 - 2.3 sigma here) RL would fit the noise floor above it.
    from geo_ntl.deblur.physics import _levels

    rng = np.random.default_rng(SEED)
    image = 20 + rng.normal(0, 2.0, (2, 256, 256))
    image[:, 100:110, 100:110] += 150
    black, sigma = _levels(image, None)
    assert np.allclose(black, 20, atol=1.0)  # the 1st percentile of the pixels: 15.3
    assert np.allclose(sigma, 2.0, rtol=0.15)


def test_deconvolve_array__keeps_flux_below_black():
    # Noise below the black level passes through (RL sees only the light above it), so the
    # total is kept although RL itself only takes positive data.
    rng = np.random.default_rng(SEED)
    image = (8 + rng.normal(0, 3.0, (1, 96, 96))).astype(np.float32)
    image[0, 40, 40] += 400
    out = deconvolve_array(image, KERNEL, dtype="float32")
    assert out.sum() == pytest.approx(image.sum(), rel=1e-4)
    assert out[0, 40, 40] > image[0, 40, 40]
