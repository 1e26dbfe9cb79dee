"""Tests of geo_ntl.metrics.light and ``geo-ntl evaluate --input``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from geo_ntl.exceptions import DimensionError, ParameterError
from geo_ntl.metrics import light

SEED = 0
CELL = 108


def gaussian_lamps(
    shape: tuple[int, int],
    centres: list[tuple[float, float]],
    *,
    fwhm: float,
    peak: float = 180.0,
    background: float = 4.0,
) -> np.ndarray:
    """(3, y, x) float DN: Gaussian lamps of a known FWHM on a flat background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    s = fwhm / (2 * math.sqrt(2 * math.log(2)))
    img = np.full(shape, background)
    for cy, cx in centres:
        img += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.repeat(img[None], 3, axis=0)


def lamp_scene(seed: int = SEED, size: int = 2 * CELL, noise: float = 0.8) -> np.ndarray:
    """(3, size, size) uint8: a grid of lamps away from the 108 px cell borders, noisy."""
    rng = np.random.default_rng(seed)
    centres = [
        (y + rng.uniform(-1, 1), x + rng.uniform(-1, 1))
        for y in range(24, size, 54)
        for x in range(24, size, 54)
    ]
    img = gaussian_lamps((size, size), centres, fwhm=5.0, peak=150.0, background=6.0)
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- black level
def test_black_level__flat_background_with_lamps():
    img = lamp_scene()
    np.testing.assert_allclose(light.black_level(img), 6.0, atol=0.5)


def test_black_level__per_band_and_2d():
    img = np.zeros((3, 40, 40), np.uint8)
    img[0], img[1], img[2] = 2, 5, 9
    assert light.black_level(img).tolist() == pytest.approx([2, 5, 9])
    assert light.black_level(img[1]).tolist() == pytest.approx([5])


def test_black_level__bad_percentile():
    with pytest.raises(ParameterError, match="percentile"):
        light.black_level(np.zeros((8, 8)), percentile=101)


# ------------------------------------------------------------------------ cell flux
def test_cell_flux__sums_above_black_and_drops_partial_cells():
    img = np.full((3, 250, 330), 7.0)
    flux = light.cell_flux(img, black=2.0)
    assert flux.shape == (2, 3)
    np.testing.assert_allclose(flux, 5.0 * 3 * CELL * CELL)


def test_cell_flux__bad_cell():
    with pytest.raises(ParameterError, match="cell"):
        light.cell_flux(np.zeros((3, 8, 8)), cell=0)


# ---------------------------------------------------------------- flux ratio stats
def test_flux_ratio_stats__identity():
    img = lamp_scene()
    stats = light.flux_ratio_stats(img, img)
    assert stats["n"] >= 1
    assert stats["median_abs_dev"] == 0.0 and stats["within_10pct"] == 1.0
    assert stats["min"] == stats["max"] == 1.0


def test_flux_ratio_stats__flux_conserving_blur():
    truth = gaussian_lamps(
        (2 * CELL, 2 * CELL), [(30, 30), (54, 80), (80, 140), (160, 40), (150, 170)], fwhm=3.0
    )
    blurred = np.stack([ndimage.gaussian_filter(b, 2.5, mode="reflect") for b in truth])
    stats = light.flux_ratio_stats(truth, blurred, lit="all", black=4.0)
    assert stats["n"] == 4
    assert stats["median_abs_dev"] < 0.01 and stats["within_10pct"] == 1.0


def test_flux_ratio_stats__half_the_light_removed():
    img = lamp_scene().astype(np.float64)
    black = light.black_level(img)[:, None, None]
    half = black + 0.5 * (img - black)
    stats = light.flux_ratio_stats(img, half)
    assert stats["median_ratio"] == pytest.approx(0.5, abs=0.02)
    assert stats["within_10pct"] == 0.0


def test_flux_ratio_stats__no_cells_and_bad_lit():
    small = np.zeros((3, 50, 50))
    assert light.flux_ratio_stats(small, small)["n"] == 0
    with pytest.raises(ParameterError, match="lit"):
        light.flux_ratio_stats(lamp_scene(), lamp_scene(), lit="bright")


def test_flux_ratio_stats__shape_mismatch():
    with pytest.raises(DimensionError, match="shapes differ"):
        light.flux_ratio_stats(np.zeros((3, 8, 8)), np.zeros((3, 8, 9)))


# ---------------------------------------------------------------------- lamp widths
@pytest.mark.parametrize("fwhm", [3.0, 4.0, 5.0, 6.5, 8.0], ids=lambda f: f"fwhm{f}")
@pytest.mark.parametrize("offset", [0.0, 0.35], ids=["centred", "subpixel"])
def test_lamp_widths__gaussian_of_known_fwhm(fwhm, offset):
    img = gaussian_lamps((96, 96), [(40 + offset, 48 - offset)], fwhm=fwhm)
    res = light.lamp_widths(img)
    assert res["n"] == 1
    assert res["fwhm"] == pytest.approx(fwhm, rel=0.05)


def test_lamp_widths__skips_saturated_and_crowded_lamps():
    img = gaussian_lamps((128, 128), [(30, 30), (30, 36), (96, 96)], fwhm=4.0)
    img = np.clip(img, 0, 255)
    img[:, 90:103, 90:103] = np.maximum(img[:, 90:103, 90:103], 255)  # saturated lamp
    assert light.lamp_widths(img)["n"] == 0


def test_lamp_widths__positions_measure_the_same_lamps_elsewhere():
    sharp = gaussian_lamps((96, 96), [(48, 48)], fwhm=3.0)
    wide = gaussian_lamps((96, 96), [(48, 48)], fwhm=7.0)
    pos = light.lamp_widths(wide)["positions"]
    assert light.lamp_widths(sharp, positions=pos)["fwhm"] == pytest.approx(3.0, rel=0.05)


def test_lamp_widths__none_found():
    res = light.lamp_widths(np.full((3, 64, 64), 5.0))
    assert res["n"] == 0 and math.isnan(res["fwhm"])


# ---------------------------------------------------------------------- new maxima
def test_new_maxima__identity_is_zero():
    img = lamp_scene()
    assert light.new_maxima(img, img) == 0


def test_new_maxima__a_lamp_in_the_dark_is_new():
    img = lamp_scene()
    out = img.astype(np.float64)
    out += gaussian_lamps(img.shape[1:], [(51, 51), (160, 105)], fwhm=3.0, background=0.0)
    out = np.clip(out, 0, 255).astype(np.uint8)
    assert light.new_maxima(img, out) == 2


def test_new_maxima__sharpening_a_lamp_is_not_new():
    wide = np.round(gaussian_lamps((96, 96), [(48, 48)], fwhm=7.0)).astype(np.uint8)
    sharp = np.round(gaussian_lamps((96, 96), [(48, 48)], fwhm=3.0)).astype(np.uint8)
    assert light.new_maxima(wide, sharp) == 0


# --------------------------------------------------------------------- lights kept
def test_lights_kept__sharpening_keeps_every_light():
    wide = lamp_scene()
    sharp = lamp_scene().astype(np.float64)
    sharp = np.clip(sharp + (sharp - ndimage.gaussian_filter(sharp, (0, 1.5, 1.5))), 0, 255)
    assert light.lights_kept(wide, wide) == 1.0
    assert light.lights_kept(wide, sharp.astype(np.uint8)) == 1.0


def test_lights_kept__a_deleted_light_is_counted_though_its_cell_keeps_its_light():
    """Dim lights erased and their light handed to a neighbour: cells pass, lights do not."""
    img = lamp_scene()
    out = img.astype(np.float64)
    centres = [(y, x) for y in range(24, img.shape[1], 54) for x in range(24, img.shape[2], 54)]
    gone = centres[1::2]
    for cy, cx in gone:  # each erased lamp's light moves onto the lamp 54 px to its left
        lamp = out[:, cy - 8 : cy + 9, cx - 8 : cx + 9] - 6.0
        out[:, cy - 8 : cy + 9, cx - 62 : cx - 45] += lamp
        out[:, cy - 8 : cy + 9, cx - 8 : cx + 9] = 6.0
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    assert light.flux_ratio_stats(img, out, cell=CELL)["within_10pct"] == 1.0
    kept = light.lights_kept(img, out)
    assert kept == pytest.approx(1 - len(gone) / len(centres), abs=0.02)
    assert math.isnan(light.lights_kept(np.full((3, 64, 64), 5, np.uint8), img[:, :64, :64]))


# ---------------------------------------------------------------------- dark rings
def test_dark_rings__identity_is_zero():
    img = lamp_scene()
    assert light.dark_rings(img, img) == 0.0


def test_dark_rings__undershoot_around_lamps():
    img = lamp_scene()
    yy, xx = np.mgrid[: img.shape[1], : img.shape[2]]
    out = img.astype(np.float64)
    for cy in range(24, img.shape[1], 54):
        for cx in range(24, img.shape[2], 54):
            r = np.hypot(yy - cy, xx - cx)
            out[:, (r >= 5) & (r <= 10)] = 0.0
    frac = light.dark_rings(img, np.clip(out, 0, 255).astype(np.uint8))
    assert frac > 0.5


def test_dark_rings__no_bright_lamps():
    img = np.full((3, 64, 64), 5, np.uint8)
    assert math.isnan(light.dark_rings(img, img))


# ----------------------------------------------------------------- highlights kept
def test_highlights_kept__identity_darkened_and_none():
    img = lamp_scene()
    img[:, 100:110, 100:110] = 255
    assert light.highlights_kept(img, img) == 1.0
    dark = img.copy()
    dark[:, 100:110, 100:110] = 200
    assert light.highlights_kept(img, dark) == 0.0
    assert math.isnan(light.highlights_kept(lamp_scene(), lamp_scene()))


# ---------------------------------------------------------------- compare + export
def test_compare_light__identity():
    img = lamp_scene()
    res = light.compare_light(img, img)
    assert res["flux"]["within_10pct"] == 1.0 and res["new_maxima"] == 0
    assert res["lamps"] >= 1 and res["fwhm_before"] == res["fwhm_after"]
    assert res["fwhm_before"] == pytest.approx(5.0, rel=0.1)


def test_exported_from_metrics():
    import geo_ntl.metrics as metrics

    for name in (
        "black_level",
        "cell_flux",
        "flux_ratio_stats",
        "lamp_widths",
        "new_maxima",
        "lights_kept",
        "dark_rings",
        "highlights_kept",
        "compare_light",
    ):
        assert name in metrics.__all__ and callable(getattr(metrics, name))


# ------------------------------------------------------------------------------ CLI
def _write(path, arr):
    from geo_ntl.io import write_cog
    from geo_ntl.testing import make_scene

    return write_cog(make_scene(arr.shape, seed=SEED).copy(data=arr), path)


def test_cli_evaluate__input_light_measures(tmp_path, runner):
    before = lamp_scene()
    after = before.astype(np.float64)
    black = light.black_level(before)[:, None, None]
    after = np.clip(np.round(black + 0.5 * (after - black)), 0, 255).astype(np.uint8)
    src, out = _write(tmp_path / "in.tif", before), _write(tmp_path / "out.tif", after)
    res = runner("evaluate", out, "--input", src, "--json")
    assert res.exit_code == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["input"] == str(src) and "brightness" in payload["metrics"]
    assert payload["light"]["flux"]["median_ratio"] == pytest.approx(0.5, abs=0.05)
    assert payload["light"]["highlights_kept"] is None
    res = runner("evaluate", src, "--input", src)
    assert res.exit_code == 0, res.stderr
    assert "new maxima" in res.stdout and "cells within" in res.stdout


def test_cli_evaluate__input_shape_mismatch(tmp_path, runner):
    src = _write(tmp_path / "in.tif", lamp_scene())
    out = _write(tmp_path / "out.tif", lamp_scene()[:, :200])
    res = runner("evaluate", out, "--input", src)
    assert res.exit_code == 2 and "input" in res.stderr
