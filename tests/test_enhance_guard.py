"""The night-light guard of the enhancer and the faithful/enhanced distinction of rasters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from geo_ntl.enhance import enhance, enhance_array
from geo_ntl.enhance.guard import guard_strength
from geo_ntl.io import write_cog
from geo_ntl.radiometry import EnhancedRasterError, check_faithful, rendition
from geo_ntl.testing import make_scene

FAST = {"iterations": 1, "m_sweeps": 2, "slic_iterations": 1}


def _night_scene(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(6, 2, (3, size, size)).clip(0, 255)
    img[:, 30:36, 40:46] = 255  # a saturated lamp
    img[0, 60:64, 20:24], img[1, 60:64, 20:24], img[2, 60:64, 20:24] = 250, 180, 90  # orange
    return img.astype(np.uint8)


def test_guard__saturated_and_lit_pixels_kept():
    img = _night_scene()
    out = enhance_array(img, device="cpu", params=FAST)
    saturated = (img >= 250).all(axis=0)
    assert (out[:, saturated] >= 240).all()
    lit = np.tensordot([0.299, 0.587, 0.114], img.astype(float), axes=1) >= 128
    assert (out.astype(int)[:, lit] >= img.astype(int)[:, lit] - 2).all()


def test_guard__dark_scene_still_brightened():
    img = _night_scene()
    out = enhance_array(img, device="cpu", params=FAST)
    assert out.mean() > 1.3 * img.mean()


def test_guard__bright_scene_left_as_it_is():
    rng = np.random.default_rng(3)
    img = rng.normal(150, 30, (3, 64, 64)).clip(0, 255).astype(np.uint8)
    out = enhance_array(img, device="cpu", params=FAST)
    np.testing.assert_array_equal(out, img)


def test_guard__normal_scene_barely_changed():
    rng = np.random.default_rng(3)
    img = rng.normal(105, 30, (3, 64, 64)).clip(0, 255).astype(np.uint8)
    out = enhance_array(img, device="cpu", params=FAST).astype(float)
    assert abs(out.mean() / img.mean() - 1) <= 0.10
    assert out.std() >= 0.9 * img.std()


def test_guard__noise_grows_slower_than_brightness():
    rng = np.random.default_rng(4)
    flat = np.full((3, 128, 128), 20.0) + rng.normal(0, 3, (3, 128, 128))
    img = flat.clip(0, 255).astype(np.uint8)
    out = enhance_array(img, device="cpu", params=FAST).astype(float)
    x = img.astype(float)
    gain = out.mean() / x.mean()
    noise_gain = out[:, 8:-8, 8:-8].std() / x[:, 8:-8, 8:-8].std()
    assert gain > 1.3
    assert noise_gain - 1 <= 0.5 * (gain - 1)


def test_guard__colour_brightens_with_the_luminance():
    # A dim brown wall brightened: its colour (band ratios of the smooth image) stays, rather
    # than turning grey as it did when the colour differences got only detail_gain.
    import torch

    from geo_ntl.enhance.guard import apply_guard

    rng = np.random.default_rng(5)
    wall = np.array([60.0, 36.0, 18.0])[:, None, None] + rng.normal(0, 1.5, (3, 96, 96))
    image = torch.from_numpy((wall / 255.0).astype(np.float32))
    out = apply_guard(
        image, image * 2.5, strength=1.0, black=0.0, detail_sigma=2.0, detail_gain=0.25
    ).numpy()
    inner = (slice(None), slice(24, -24), slice(24, -24))
    before, after = image.numpy()[inner].mean(axis=(1, 2)), out[inner].mean(axis=(1, 2))
    assert after[1] > 2.0 * before[1]  # brightened
    np.testing.assert_allclose(after / after[1], before / before[1], rtol=0.03)


def test_guard__tiled_equals_whole():
    img = _night_scene(size=160)
    scene = make_scene((3, 160, 160), chunks=64)
    scene = scene.copy(data=img)
    whole = enhance_array(img, device="cpu", params=FAST)
    tiled = enhance(scene.chunk({"y": 64, "x": 64}), tile=64, device="cpu", params=FAST).values
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_guard_strength__ramps_between_the_bounds():
    assert guard_strength(0.2, 0.3, 0.4, 0.5) == 1.0
    assert guard_strength(0.4, 0.3, 0.4, 0.5) == 0.2
    assert guard_strength(0.5, 0.3, 0.4, 0.5) == 0.0
    assert 0.2 < guard_strength(0.33, 0.3, 0.4, 0.5) < 1


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({}, "faithful"),
        ({"GEO_NTL_STAGE": "simulate-degraded"}, "faithful"),
        ({"GEO_NTL_STAGE": "enhance"}, "enhanced"),
        ({"GEO_NTL_STAGE": "deblur", "GEO_NTL_PARAMS": json.dumps({"enhance": True})}, "enhanced"),
        ({"GEO_NTL_STAGE": "deblur", "GEO_NTL_PARAMS": json.dumps({"enhance": False})}, "faithful"),
    ],
)
def test_rendition__from_tags(tags, expected):
    assert rendition(tags) == expected


def test_check_faithful__refuses_unless_allowed():
    tags = {"GEO_NTL_STAGE": "enhance"}
    with pytest.raises(EnhancedRasterError, match="allow_enhanced=True"):
        check_faithful(tags, source="x.tif", allow_enhanced=False)
    check_faithful(tags, source="x.tif", allow_enhanced=True)


def test_cluster_cli__refuses_enhanced_raster(tmp_path, runner):
    path = write_cog(make_scene((3, 64, 64)), tmp_path / "view.tif", stage="enhance")
    res = runner(
        "cluster",
        path,
        "--roads",
        tmp_path / "r.gpkg",
        "--permeable",
        tmp_path / "p.gpkg",
        "--out",
        tmp_path / "cells.gpkg",
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "--allow-enhanced" in res.stderr
    assert not (tmp_path / "cells.gpkg").exists()


def test_deblur_cli__default_output_is_faithful(tmp_path, runner):
    scene = write_cog(make_scene((3, 64, 64), seed=2), tmp_path / "s.tif")
    res = runner("deblur", scene, "--out", tmp_path / "o.tif", "--workers", "0")
    assert res.exit_code == 0, res.stderr
    with rasterio.open(tmp_path / "o.tif") as src:
        assert rendition(src.tags()) == "faithful"
