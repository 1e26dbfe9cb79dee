"""Tests of the scene PSF estimate (geo_ntl.psf) and ``geo-ntl psf``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage, signal

from geo_ntl.exceptions import ParameterError, PSFEstimationError
from geo_ntl.psf import (
    PSFEstimate,
    estimate_psf,
    isolated_lamps,
    lamp_fwhm,
    profile_fwhm,
    radial_profile,
)
from geo_ntl.simulate.psf import gaussian_psf, moffat_psf

SEED = 0
#: Relative FWHM error allowed against the true kernel's (measured the same way).
FWHM_RTOL = 0.10


def lamp_field(
    kernel: np.ndarray,
    *,
    n: int = 120,
    size: int = 384,
    seed: int = SEED,
    noise: float = 1.0,
    background: float = 10.0,
    bands: int = 3,
    peak: float = 200.0,
) -> np.ndarray:
    """uint8 (band, y, x) field of point lamps (random positions, fluxes) blurred by ``kernel``."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size))
    ys, xs = rng.integers(24, size - 24, (2, n))
    img[ys, xs] = rng.uniform(0.3, 1.0, n) * peak / kernel.max()
    out = np.stack([signal.fftconvolve(img, kernel, mode="same") for _ in range(bands)])
    out = out + background + rng.normal(0, noise, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def elliptical_gaussian(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    h = size // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * (u**2 / sx**2 + v**2 / sy**2))
    return k / k.sum()


def core_halo(size: int, sigma: float, scale: float, fraction: float) -> np.ndarray:
    """Gaussian core plus an exponential halo holding ``fraction`` of the flux."""
    h = size // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    r = np.hypot(yy, xx)
    g = np.exp(-0.5 * r**2 / sigma**2)
    e = np.exp(-r / scale)
    k = (1 - fraction) * g / g.sum() + fraction * e / e.sum()
    return k / k.sum()


FAMILIES = {
    "moffat": moffat_psf(41, alpha=3.0, beta=2.5).astype(float),
    "moffat-heavy": moffat_psf(61, alpha=4.0, beta=1.8).astype(float),
    "gaussian": gaussian_psf(21, sigma=1.5).astype(float),
    "gaussian-wide": gaussian_psf(31, sigma=3.0).astype(float),
    "elliptical": elliptical_gaussian(31, 2.5, 1.5, 0.5),
    "core-halo": core_halo(61, 1.5, 5.0, 0.3),
}


@pytest.mark.parametrize("family", list(FAMILIES), ids=list(FAMILIES))
def test_estimate_psf__recovers_fwhm(family):
    kernel = FAMILIES[family]
    est = estimate_psf(lamp_field(kernel))
    true = profile_fwhm(kernel)
    assert est.method == "isolated-lamps" and est.n_sources >= 5
    assert np.allclose(est.fwhm, true, rtol=FWHM_RTOL), (est.fwhm, true)
    assert est.kernel.shape[0] % 2 == 1 and est.kernel.shape[0] >= 4 * true - 1
    assert est.kernel.sum() == pytest.approx(1.0)
    assert np.allclose(est.band_kernels.sum(axis=(1, 2)), 1.0)
    assert est.band_kernels.shape == (3, *est.kernel.shape)
    assert est.profile.shape == (3, est.radius.size)
    assert np.allclose(est.profile.max(axis=1), 1.0)


def test_estimate_psf__analytic_fwhm_of_moffat_and_gaussian():
    alpha, beta = 3.0, 2.5
    est = estimate_psf(lamp_field(FAMILIES["moffat"]))
    assert np.mean(est.fwhm) == pytest.approx(2 * alpha * np.sqrt(2 ** (1 / beta) - 1), rel=0.05)
    est = estimate_psf(lamp_field(FAMILIES["gaussian"]))
    assert np.mean(est.fwhm) == pytest.approx(2.3548 * 1.5, rel=0.05)


def test_estimate_psf__moffat_wing_slope():
    beta = 2.5
    est = estimate_psf(lamp_field(FAMILIES["moffat"]))
    slope = float(np.mean(est.wing_slope))
    # Between 2 and 4 HWHM the Moffat is not yet at its asymptote -2 beta.
    assert -2 * beta < slope < -0.5 * beta
    gauss = estimate_psf(lamp_field(FAMILIES["gaussian"]))
    assert np.mean(gauss.wing_slope) < slope  # a Gaussian's wings fall much faster


def test_estimate_psf__per_band_kernels_differ():
    kernels = [gaussian_psf(21, sigma=s).astype(float) for s in (1.2, 1.6, 2.0)]
    rng = np.random.default_rng(1)
    img = np.zeros((384, 384))
    ys, xs = rng.integers(24, 360, (2, 120))
    img[ys, xs] = rng.uniform(1000, 3000, 120)
    field = np.stack([signal.fftconvolve(img, k, mode="same") for k in kernels])
    field = (field + 5 + rng.normal(0, 0.5, field.shape)).astype(np.float32)
    est = estimate_psf(field)
    true = [profile_fwhm(k) for k in kernels]
    assert np.allclose(est.fwhm, true, rtol=FWHM_RTOL)
    assert est.fwhm[0] < est.fwhm[1] < est.fwhm[2]


def test_estimate_psf__dataarray_and_nodata():
    import rioxarray  # noqa: F401
    import xarray as xr

    field = lamp_field(FAMILIES["moffat"])
    field[:, :40, :40] = 0
    da = xr.DataArray(field, dims=("band", "y", "x")).rio.write_nodata(0, encoded=False)
    est = estimate_psf(da.chunk({"y": 128, "x": 128}))
    assert np.allclose(est.fwhm, profile_fwhm(FAMILIES["moffat"]), rtol=FWHM_RTOL)
    # A bounded read: windows of the brightest areas only.
    small = estimate_psf(da, max_pixels=200 * 200)
    assert small.method == "isolated-lamps"


def test_estimate_psf__to_dict_round_trip():
    est = estimate_psf(lamp_field(FAMILIES["gaussian"]))
    data = json.loads(json.dumps(est.to_dict()))
    back = PSFEstimate.from_dict(data)
    assert np.allclose(back.kernel, est.kernel) and back.fwhm == pytest.approx(est.fwhm)
    assert back.method == est.method and back.n_sources == est.n_sources
    with pytest.raises(ParameterError, match="geo-ntl psf"):
        PSFEstimate.from_dict({"kernel": [[1.0]]})
    with pytest.raises(ParameterError, match="odd"):
        PSFEstimate.from_dict({**data, "kernel": [[0.5, 0.5]]})


def test_estimate_psf__saturated_edges_fallback():
    kernel = moffat_psf(61, alpha=3.0, beta=2.5).astype(float)
    rng = np.random.default_rng(2)
    img = np.zeros((320, 320))
    for y, x in [(60, 60), (60, 200), (160, 120), (260, 60), (260, 250), (160, 270)]:
        img[y - 2 : y + 3, x - 2 : x + 3] = rng.uniform(60, 120)
    field = signal.fftconvolve(img, kernel, mode="same") * 40 + 8
    field = np.clip(np.round(field + rng.normal(0, 1.0, field.shape)), 0, 255).astype(np.uint8)
    assert (field == 255).any()
    est = estimate_psf(field)
    assert est.method == "saturated-edges" and est.n_sources >= 3
    assert np.mean(est.fwhm) == pytest.approx(profile_fwhm(kernel), rel=0.3)


def test_estimate_psf__no_lamps_error():
    rng = np.random.default_rng(3)
    flat = np.clip(rng.normal(20, 2, (3, 128, 128)), 0, 255).astype(np.uint8)
    with pytest.raises(PSFEstimationError, match="isolated unsaturated lamps"):
        estimate_psf(flat)


def test_estimate_psf__all_saturated_error():
    with pytest.raises(PSFEstimationError, match="min_sources"):
        estimate_psf(np.full((3, 128, 128), 255, np.uint8))


def test_estimate_psf__tiny_scene_error():
    with pytest.raises(PSFEstimationError, match="at least 48"):
        estimate_psf(np.zeros((3, 20, 20), np.uint8))


def test_estimate_psf__all_nodata_error():
    with pytest.raises(PSFEstimationError, match="no valid pixel"):
        estimate_psf(np.zeros((3, 64, 64), np.uint8), nodata=0)


def test_estimate_psf__bad_options():
    field = lamp_field(FAMILIES["gaussian"])
    with pytest.raises(ParameterError, match="max_size"):
        estimate_psf(field, max_size=8)
    with pytest.raises(ParameterError, match="min_sources"):
        estimate_psf(field, min_sources=0)


def test_estimate_psf__max_size_caps_kernel():
    est = estimate_psf(lamp_field(FAMILIES["moffat-heavy"]), max_size=11)
    assert est.kernel.shape == (11, 11)


def test_isolated_lamps__skips_saturated_crowded_and_nodata():
    img = np.zeros((128, 128))
    img[30, 30] = 1000.0  # isolated
    img[30, 90], img[30, 97] = 1000.0, 900.0  # a close pair
    img[90, 30] = 1000.0  # isolated, but its window holds nodata
    img[90, 90] = 5000.0  # clipped below
    img = ndimage.gaussian_filter(img, 1.5) + 2.0
    img = np.minimum(img, 0.3 * img[90, 90])  # a clipped plateau
    img[96, 24] = -1.0
    lamps = isolated_lamps(img, nodata=-1.0)
    assert lamps[["row", "col"]].to_numpy().tolist() == [[30, 30]]
    assert {"y", "x", "peak", "background", "snr"} <= set(lamps.columns)


def test_lamp_fwhm__gaussian_and_subpixel():
    img = np.zeros((80, 80))
    img[40, 40] = 1.0
    img = ndimage.shift(ndimage.gaussian_filter(img, 2.0), (0.3, -0.4), order=3)
    f = lamp_fwhm(img, [(40.3, 39.6), (2, 2)])
    assert f[0] == pytest.approx(2.3548 * 2.0, rel=0.05)
    assert np.isnan(f[1])


def test_radial_profile__centre_first():
    k = gaussian_psf(15, sigma=2.0)
    radius, profile = radial_profile(k)
    assert radius[0] == 0 and profile.argmax() == 0 and np.all(np.diff(profile) <= 1e-9)


# --- command line --------------------------------------------------------------------------


@pytest.fixture
def lamp_scene_file(tmp_path):
    from geo_ntl.io import write_cog
    from geo_ntl.testing import make_scene

    da = make_scene((3, 256, 256), seed=4)
    da = da.copy(data=lamp_field(FAMILIES["moffat"], size=256, n=60))
    return write_cog(da, tmp_path / "lamps.tif")


def test_cli_psf__table_json_and_plot(runner, lamp_scene_file, tmp_path):
    res = runner("psf", lamp_scene_file)
    assert res.exit_code == 0, res.stderr
    assert "FWHM" in res.stdout and "isolated-lamps" in res.stdout
    res = runner("psf", lamp_scene_file, "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["resolution"] == pytest.approx([0.92, 0.92])
    assert np.allclose(data["fwhm"], profile_fwhm(FAMILIES["moffat"]), rtol=FWHM_RTOL)
    assert data["fwhm_m"] == pytest.approx([0.92 * v for v in data["fwhm"]])
    PSFEstimate.from_dict(data)
    plot = tmp_path / "psf.png"
    res = runner("psf", lamp_scene_file, "--plot", plot)
    assert res.exit_code == 0, res.stderr and plot.stat().st_size > 0
    res = runner("psf", lamp_scene_file, "--plot", plot)
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    assert runner("psf", lamp_scene_file, "--plot", plot, "--overwrite").exit_code == 0


def test_cli_psf__no_lamps(runner, tmp_path):
    from geo_ntl.io import write_cog
    from geo_ntl.testing import make_scene

    da = make_scene((3, 64, 64), seed=5)
    path = write_cog(da.copy(data=np.full(da.shape, 255, np.uint8)), tmp_path / "white.tif")
    res = runner("psf", path)
    assert res.exit_code == 2 and res.stderr.startswith("error:")
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_psf__help_has_examples(runner):
    res = runner("psf", "--help")
    assert res.exit_code == 0 and "Examples" in res.stdout
