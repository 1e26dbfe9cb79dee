"""Tests of geo_ntl.metrics and the ``geo-ntl evaluate`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geo_ntl import metrics
from geo_ntl.exceptions import DimensionError, InputError

SEED = 0


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut().transpose(2, 0, 1)[:, ::2, ::2].copy()  # 256 x 256 RGB uint8


@pytest.fixture(scope="module")
def noisy(astronaut):
    rng = np.random.default_rng(SEED)
    return np.clip(astronaut + rng.normal(0, 20, astronaut.shape), 0, 255).astype(np.uint8)


def test_psnr__identical_is_inf_and_matches_skimage(astronaut, noisy):
    from skimage.metrics import peak_signal_noise_ratio

    assert metrics.psnr(astronaut, astronaut) == math.inf
    assert metrics.psnr(noisy, astronaut) == pytest.approx(
        peak_signal_noise_ratio(astronaut, noisy), rel=1e-9
    )


def test_psnr__known_value():
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 255, np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(0.0)
    assert metrics.psnr(
        np.zeros((4, 4), np.float32), np.full((4, 4), 0.1, np.float32)
    ) == pytest.approx(20.0)


def test_ssim__identical_is_one_and_matches_skimage_on_gray(astronaut, noisy):
    from skimage.metrics import structural_similarity

    assert metrics.ssim(astronaut, astronaut) == pytest.approx(1.0)
    g1, g2 = astronaut[1].astype(float), noisy[1].astype(float)
    ref = structural_similarity(
        g1, g2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert metrics.ssim(noisy[1], astronaut[1]) == pytest.approx(ref, abs=1e-9)
    assert metrics.ssim(noisy, astronaut) < 0.8


def test_vif__identical_near_one_and_noise_lowers(astronaut, noisy):
    assert metrics.vif(astronaut, astronaut) == pytest.approx(1.0, abs=1e-3)
    assert metrics.vif(noisy, astronaut) < 0.6


def test_lrsd__zero_for_identical_and_grows_with_noise(astronaut, noisy):
    assert metrics.lrsd(astronaut, astronaut) == 0.0
    rng = np.random.default_rng(SEED)
    less = np.clip(astronaut + rng.normal(0, 5, astronaut.shape), 0, 255).astype(np.uint8)
    assert 0 < metrics.lrsd(less, astronaut) < metrics.lrsd(noisy, astronaut)


def test_loe__zero_for_monotone_curve_positive_for_inversion(astronaut):
    gamma = (255 * (astronaut / 255.0) ** 0.5).astype(np.uint8)
    assert metrics.loe(gamma, astronaut) < 0.02 * 50 * 50  # only ties and resampling flip
    assert metrics.loe(255 - astronaut, astronaut) > 500


def test_brightness_entropy_average_gradient__known_values():
    flat = np.full((3, 10, 10), 51, np.uint8)
    assert metrics.brightness(flat) == pytest.approx(0.2)
    two = np.zeros((10, 10), np.uint8)
    two[:, 5:] = 200
    assert metrics.entropy(two) == pytest.approx(1.0)
    assert metrics.entropy(flat) == pytest.approx(0.0)
    ramp = np.tile(np.arange(10, dtype=np.float32) * 10, (10, 1)).astype(np.uint8)
    assert metrics.average_gradient(ramp) == pytest.approx(10 / math.sqrt(2))


def test_niqe__plausible_and_noise_worsens(astronaut, noisy):
    clean = metrics.niqe(astronaut)
    assert 2.0 < clean < 7.0
    assert metrics.niqe(noisy) > clean + 1.0


def test_niqe__too_small_error():
    with pytest.raises(InputError, match="two 96 x 96 blocks"):
        metrics.niqe(np.zeros((3, 100, 100), np.uint8))


def test_niqe__imresize_half_of_constant_is_constant():
    from geo_ntl.metrics.niqe import imresize_half

    out = imresize_half(np.full((9, 12), 3.5))
    assert out.shape == (5, 6) and np.allclose(out, 3.5)


def test_ceiq__low_contrast_scores_lower(astronaut):
    low = (astronaut.astype(float) * 0.2 + 100).astype(np.uint8)
    assert math.isfinite(metrics.ceiq(astronaut))
    assert metrics.ceiq(low) < metrics.ceiq(astronaut)


def test_ceiq__ordinary_photo_scores_in_the_papers_range(astronaut):
    # The paper reports about 3.3 for enhanced photos; the authors' examples span 1.7 to 3.6.
    assert 2.0 < metrics.ceiq(astronaut) < 4.5


def test_ceiq__dark_image_with_empty_bins_stays_bounded():
    rng = np.random.default_rng(0)
    dark = np.clip(rng.normal(12, 4, (3, 64, 64)), 0, 255).astype(np.uint8)  # few levels used
    score = metrics.ceiq(dark)
    assert math.isfinite(score) and -5.0 < score < 5.0


def _smooth_gray(seed=SEED, size=128):
    from scipy import ndimage

    # lightly smoothed texture (PIQE rates very flat images as bad: no salient blocks)
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.0)
    return np.rint(255 * (field - field.min()) / np.ptp(field)).astype(np.uint8)


def test_piqe__noise_scores_worse_than_smooth(astronaut, noisy):
    assert metrics.piqe(noisy) > metrics.piqe(astronaut) + 3.0  # measured 45.7 vs 38.6
    smooth = _smooth_gray()
    rng = np.random.default_rng(SEED + 1)
    noisy = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)
    clean_score, noisy_score = metrics.piqe(smooth), metrics.piqe(noisy)
    assert 0.0 <= clean_score <= 100.0 and 0.0 <= noisy_score <= 100.0
    assert noisy_score > clean_score + 20.0  # measured 60.0 vs 10.9


def test_piqe__range_gray_and_rgb(astronaut):
    rgb = metrics.piqe(astronaut)
    gray = metrics.piqe(astronaut[1])
    assert 0.0 < rgb < 100.0 and 0.0 < gray < 100.0
    # float input on [0, 1] gives the same score as the uint8 image
    assert metrics.piqe(astronaut.astype(np.float64) / 255.0) == pytest.approx(rgb, abs=1e-9)
    assert metrics.piqe(np.full((64, 64), 7, np.uint8)) == 100.0  # uniform image: worst


def test_piqe__too_small_error():
    with pytest.raises(ValueError, match="at least 16 x 16"):
        metrics.piqe(np.zeros((3, 15, 40), np.uint8))


def test_piqe__matches_pypiqe(astronaut):
    pypiqe = pytest.importorskip("pypiqe")
    pytest.importorskip("cv2")
    weights = np.array([0.299, 0.587, 0.114])
    gray = np.rint(astronaut.transpose(1, 2, 0) @ weights).astype(np.uint8)
    gray = gray[:250, :230]  # not a multiple of 16: exercises the padding
    assert metrics.piqe(gray) == pytest.approx(pypiqe.piqe(gray)[0], abs=1e-6)
    bgr = np.ascontiguousarray(astronaut.transpose(1, 2, 0)[..., ::-1])
    assert metrics.piqe(astronaut) == pytest.approx(pypiqe.piqe(bgr)[0], abs=1.0)


def test_metrics__shape_mismatch_error(astronaut):
    with pytest.raises(DimensionError, match="shapes differ"):
        metrics.psnr(astronaut, astronaut[:, :10])


def test_evaluate__keys(astronaut, noisy):
    out = metrics.evaluate(noisy, reference=astronaut, low_light=astronaut)
    assert set(out) == {
        "brightness",
        "entropy",
        "average_gradient",
        "niqe",
        "piqe",
        "ceiq",
        "loe",
        "psnr",
        "ssim",
        "vif",
        "lrsd",
    }
    small = metrics.evaluate(np.zeros((3, 20, 20), np.uint8))
    assert small["niqe"] is None
    assert 0.0 <= out["piqe"] <= 100.0
    assert metrics.evaluate(np.zeros((3, 10, 10), np.uint8))["piqe"] is None


def test_cli_evaluate__json_and_table(tmp_path, rgb_scene_file, runner):
    res = runner("evaluate", rgb_scene_file, "--reference", rgb_scene_file, "--json")
    assert res.exit_code == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["metrics"]["psnr"] == "inf" and payload["metrics"]["ssim"] == pytest.approx(1.0)
    res = runner("evaluate", rgb_scene_file)
    assert res.exit_code == 0 and "brightness" in res.stdout


def test_cli_evaluate__missing_file(tmp_path, runner):
    res = runner("evaluate", tmp_path / "nope.tif")
    assert res.exit_code == 2 and res.stderr.startswith("error:")
