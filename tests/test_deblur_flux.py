"""Flux conservation of the deblooming stage (geo_ntl.deblur.flux)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_deblur import _tiny_generator

from geo_ntl.deblur import flux
from geo_ntl.deblur.flux import CLIP_RADIUS, FLUX_SIGMA, conserve_flux, flux_halo
from geo_ntl.deblur.inference import deblur, deblur_array  # the standalone GAN
from geo_ntl.testing import make_scene
from geo_ntl.tiling import apply_tiled, apply_whole


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from geo_ntl.deblur.weights import save_weights

    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(_tiny_generator(), path, meta={"note": "test"})
    return path


def _interior_sum(a: np.ndarray, margin: int) -> float:
    return float(a[:, margin:-margin, margin:-margin].sum(dtype=np.float64))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    gain=st.floats(0.0, 3.0),
    shift=st.integers(-6, 6),
)
def test_conserve_flux__random_corrections_keep_light(seed, gain, shift):
    # Any "restoration" -- scaled, shifted, noisy -- of an unsaturated scene keeps the
    # scene's light over a window much wider than FLUX_SIGMA.
    rng = np.random.default_rng(seed)
    scene = rng.gamma(1.5, 20.0, (3, 160, 160)).astype(np.float32).clip(0, 240)
    restored = np.roll(scene * gain, shift, axis=2) + rng.normal(0, 5, scene.shape)
    out = conserve_flux(scene, restored, full_scale=255)
    margin = 3 * int(FLUX_SIGMA)
    ratio = _interior_sum(out, margin) / _interior_sum(scene, margin)
    assert abs(ratio - 1) < 0.03


def test_conserve_flux__light_moves_within_sigma():
    # A correction that gathers a halo back into its lamp is kept: it moves light only.
    scene = np.zeros((1, 128, 128), np.float32)
    scene[0, 60:69, 60:69] = 10.0
    restored = np.zeros_like(scene)
    restored[0, 64, 64] = scene.sum()
    out = conserve_flux(scene, restored, full_scale=255)
    assert out[0, 64, 64] > 0.9 * scene.sum()
    assert abs(out.sum() - scene.sum()) < 1e-3 * scene.sum()


def test_conserve_flux__clipped_light_may_be_removed():
    # Beside a saturated lamp the excess spread by blooming may go; far from it, it may not.
    scene = np.full((3, 200, 200), 20.0, np.float32)
    scene[:, 40:44, 40:44] = 255.0
    restored = np.full_like(scene, 10.0)  # halves the light everywhere
    out = conserve_flux(scene, restored, full_scale=255)
    assert out[:, 42, 50].mean() < 12  # within CLIP_RADIUS of the saturated pixels
    assert abs(out[:, 170, 170].mean() - 20) < 0.5  # far away: the light is restored
    assert CLIP_RADIUS < 170 - 44


def test_deblur_array__keeps_light_of_unsaturated_scene(tiny_weights):
    scene = make_scene((3, 128, 128), seed=3).values // 2  # no saturated pixels
    out = deblur_array(scene, weights=tiny_weights, device="cpu")
    bare = deblur_array(scene, weights=tiny_weights, device="cpu", conserve=False)
    total = float(scene.sum(dtype=np.float64))
    err = abs(out.sum(dtype=np.float64) / total - 1)
    bare_err = abs(bare.sum(dtype=np.float64) / total - 1)
    assert err < 0.01  # the dithered rounding keeps the dim light too
    assert bare_err > 0.5  # the untrained network deletes most of it


def test_ordered_dither__rounds_without_bias():
    from geo_ntl.deblur.flux import ordered_dither

    values = np.random.default_rng(1).uniform(0, 3, (96, 80)).astype(np.float32)
    smooth = np.full((96, 80), 0.3, np.float32)
    for v in (values, smooth):
        rounded = np.floor(v + ordered_dither(v.shape, (5, -3)))
        assert abs(rounded.mean() - v.mean()) < 0.01
    assert np.rint(smooth).mean() == 0  # what plain rounding does to a smooth 0.3


def test_flux_pass__tiled_equals_whole():
    rng = np.random.default_rng(5)
    scene = rng.gamma(1.2, 25.0, (3, 300, 340)).clip(0, 255).astype(np.uint8)
    scene[:, 120:125, 130:136] = 255
    restored = (scene * 0.6).astype(np.uint8)
    stacked = np.concatenate([scene, restored])
    halo = flux_halo()

    def func(block: np.ndarray, placement=None) -> np.ndarray:
        origin = (-halo, -halo) if placement is None else placement.origin
        return conserve_flux(block[:3], block[3:], full_scale=255, origin=origin)

    whole = apply_whole(stacked.astype(np.float32), func, halo=halo, bands_out=3)
    # 130 px tiles (at least the halo, or the engine makes the scene one tile): their origins
    # are not on the coarse grid's 4 px cells
    assert 130 >= halo and 130 % 4
    da = make_scene((6, 300, 340), dtype="float32", chunks=130)
    da = da.copy(data=da.data.map_blocks(lambda b: b * 0) + stacked.astype(np.float32))
    tiled = apply_tiled(da, func, halo=halo, bands_out=3, placement=True).values
    np.testing.assert_allclose(tiled, whole, atol=1e-3)


@pytest.mark.parametrize("conserve", [True, False])
def test_deblur__tiled_equals_whole_with_flux_pass(tiny_weights, conserve):
    scene = make_scene((3, 96, 112), seed=9)
    whole = deblur_array(scene.values, weights=tiny_weights, device="cpu", conserve=conserve)
    tiled = deblur(
        scene.chunk({"y": 48, "x": 48}),
        weights=tiny_weights,
        device="cpu",
        tile=48,
        conserve=conserve,
    ).values
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_conserve_flux__no_bright_ring_beyond_clipped_light():
    # A restoration that removes the bloom around a saturated lamp: the light it takes away
    # near the lamp is not put back just outside the clipped-light neighbourhood.
    yy, xx = np.mgrid[:241, :241]
    r = np.hypot(yy - 120, xx - 120)
    scene = np.repeat((10 + 200 * np.exp(-r / 15.0))[None], 3, axis=0).astype(np.float32)
    scene[:, r < 6] = 255.0
    restored = np.where(r < 6, 255.0, 10.0)[None].repeat(3, axis=0).astype(np.float32)
    out = conserve_flux(scene, restored, full_scale=255)
    ring = (r > CLIP_RADIUS + 14) & (r < CLIP_RADIUS + 40)
    assert (out[:, ring] <= scene[:, ring] + 0.5).all()


@pytest.mark.parametrize("sigma", [8.0, 16.0, 24.0])
def test_low_pass__normalised_almost_gaussian(sigma):
    impulse = np.zeros((1, 257, 257), np.float32)
    impulse[0, 128, 128] = 1.0
    kernel = flux.low_pass(impulse, sigma)[0]
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    offsets = np.arange(257) - 128
    variance = float((kernel.sum(axis=0) * offsets**2).sum())
    assert math.sqrt(variance) == pytest.approx(sigma, rel=0.03)
    support = np.flatnonzero(kernel[128] > 0)
    assert support[-1] - 128 == flux._radius(sigma) <= 3 * sigma


def test_conserve_flux_torch__equals_numpy_projection_and_is_differentiable():
    import torch

    rng = np.random.default_rng(3)
    scene = rng.uniform(0, 0.5, (2, 3, 112, 112)).astype(np.float32)
    scene[0, :, 50:54, 50:54] = 1.0  # clipped light in the first image only
    restored = scene * rng.uniform(0, 2, scene.shape).astype(np.float32)
    expected = np.stack(
        [conserve_flux(s, r, full_scale=1.0) for s, r in zip(scene, restored, strict=True)]
    )
    pred = torch.from_numpy(restored).requires_grad_(True)
    out = flux.conserve_flux_torch(torch.from_numpy(scene), pred)
    assert np.abs(out.detach().numpy() - expected).max() < 1e-5
    out.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_train__project_flux_trains_through_the_projection(tmp_path, monkeypatch):
    import json

    import torch
    from test_deblur import TINY, _tiny_run_config

    from geo_ntl.deblur import train as train_mod
    from geo_ntl.deblur.model import Generator

    monkeypatch.setattr(train_mod, "Generator", lambda: Generator(**TINY))
    calls = []
    real = flux.conserve_flux_torch

    def spy(scene, restored, **kwargs):
        calls.append(tuple(scene.shape))
        return real(scene, restored, **kwargs)

    monkeypatch.setattr(flux, "conserve_flux_torch", spy)
    cfg = _tiny_run_config(train_mod, steps=3, n_critic=1, project_flux=True)
    train_mod.train(tmp_path / "run", config=cfg, device="cpu", progress=False)
    assert calls and all(shape[1] == 3 for shape in calls)  # critic batch and generator update
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["project_flux"] is True
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # the raw output is anchored too (a black pair gives 0)
    assert any(r["raw_l1"] > 0 for r in log)
    assert torch.is_tensor(real(torch.zeros(1, 3, 96, 96), torch.ones(1, 3, 96, 96)))


def test_deblur_array__keeps_light_next_to_nodata(tiny_weights):
    """A scene that is mostly nodata keeps its valid pixels' light (#26: it lost 8 %)."""
    rng = np.random.default_rng(7)
    scene = np.zeros((3, 192, 192), np.uint8)  # nodata 0 everywhere ...
    lit = rng.gamma(2.0, 6.0, (3, 44, 44)).clip(1, 38).astype(np.uint8)
    scene[:, 74:118, 74:118] = lit  # ... but a 44 px square: 5 % valid, dim, none saturated
    out = deblur_array(scene, weights=tiny_weights, device="cpu", nodata=0)
    valid = (scene != 0).all(axis=0)
    assert ((out == 0).all(axis=0) == ~valid).all()
    kept = out[:, valid].sum(dtype=np.float64) / scene[:, valid].sum(dtype=np.float64)
    assert abs(kept - 1) < 0.01


def _radiance_with_one_bright_pixel():
    """VIIRS-like float radiance: a smooth dim city, one bright pixel, a nodata border."""
    rng = np.random.default_rng(11)
    scene = rng.gamma(2.0, 3.0, (1, 160, 160)).astype(np.float32)
    scene[0, 80, 80] = 355.0  # the scene maximum: not a clipped pixel
    scene[:, :8, :] = np.nan
    return scene


@pytest.mark.parametrize("given", [None, "scale", "saturation", "tag"])
def test_deblur__float_radiance_loses_light_only_at_a_given_saturation(tiny_weights, given):
    """Float data: the scene maximum is not full scale; light near it is kept (#26)."""
    scene = _radiance_with_one_bright_pixel()
    da = make_scene((1, 160, 160), dtype="float32").copy(data=scene)
    kwargs = {"scale": {"scale": 355.0}, "saturation": {"saturation": 350.0}}.get(given, {})
    if given == "tag":
        da.attrs["SATURATION"] = "350"
    out = deblur(
        da.chunk({"y": 80, "x": 80}), weights=tiny_weights, device="cpu", tile=80, **kwargs
    ).values
    near = np.s_[:, 80 - 40 : 80 + 41, 80 - 40 : 80 + 41]
    kept = np.nansum(out[near], dtype=np.float64) / np.nansum(scene[near], dtype=np.float64)
    if given is None:
        assert abs(kept - 1) < 0.01  # nothing was clipped: no light may go
    else:
        assert kept < 0.95  # a stated saturation lets the flux pass remove the spread light


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lamps=st.integers(1, 30), peak=st.floats(300.0, 5000.0))
def test_fill_range__keeps_light_and_range(seed, lamps, peak):
    # Lamps sharpened above full scale and a projection dipping below 0: the values end in
    # [0, 255] and the interior's light is kept (what lies outside moves, it is not clipped).
    rng = np.random.default_rng(seed)
    img = rng.gamma(1.2, 25.0, (3, 160, 160)).astype(np.float32)
    ys, xs = rng.integers(40, 120, (2, lamps))
    img[:, ys, xs] += np.float32(peak)
    img[:, 10:20, 10:20] -= 30.0  # a dip below 0, away from the lamps
    out = flux.fill_range(img, low=0.0, high=255.0)
    assert out.min() >= 0.0 and out.max() <= 255.0
    # the lamps' light stays around them; the whole interior keeps its light
    assert float(out[:, 40:120, 40:120].sum()) + 1e-3 * float(img.sum()) >= float(
        np.clip(img, 0, 255)[:, 40:120, 40:120].sum()
    )
    assert _interior_sum(out, 8) == pytest.approx(_interior_sum(img, 8), rel=2e-3)


def test_fill_range__moves_excess_to_the_nearest_room_first():
    img = np.full((1, 161, 161), 100.0, np.float32)
    img[0, 80, 80] = 900.0
    out = flux.fill_range(img, high=255.0)
    assert out[0, 80, 80] == 255.0
    ring = out[0, 79:82, 79:82].sum() - out[0, 80, 80]
    far = out[0, 60, 60]
    assert ring > 8 * 150.0 and far == pytest.approx(100.0, abs=0.5)
    assert float(out.sum(dtype=np.float64)) == pytest.approx(
        float(img.sum(dtype=np.float64)), rel=1e-6
    )


def test_fill_range__tiled_equals_whole():
    rng = np.random.default_rng(3)
    img = rng.gamma(1.2, 40.0, (3, 200, 232)).astype(np.float32)
    img[:, rng.integers(0, 200, 60), rng.integers(0, 232, 60)] += 2000.0
    whole = flux.fill_range(img, high=255.0)
    tiled = apply_tiled(make_scene(img.shape, chunks=64).copy(data=img),
                        lambda b: flux.fill_range(b, high=255.0), halo=flux.fill_halo(),
                        dtype=np.float32).values  # fmt: skip
    assert np.abs(tiled - whole).max() < 1e-3


def test_conserve_flux__near_clipped_light_removes_no_more_than_is_removable():
    # A restoration darkens the bloom around a clipped lamp. Without a bound (the GAN's rule)
    # that light may go; with ``removable`` it goes only as far as the bound allows.
    scene = np.full((1, 160, 160), 5.0, np.float32)
    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80)
    scene[0] += np.where(r <= 3, 250.0, 200.0 * np.exp(-(((r - 3) / 3) ** 2))).astype(np.float32)
    scene = np.minimum(scene, 255.0)
    restored = np.where(r <= 3, 255.0, 5.0)[None].astype(np.float32)  # the bloom removed
    removed = float(scene.sum() - restored.sum())
    free = conserve_flux(scene, restored, full_scale=255, clip_radius=12)
    none = conserve_flux(scene, restored, full_scale=255, clip_radius=12,
                         removable=np.zeros_like(scene))  # fmt: skip
    half = np.zeros_like(scene)
    half[0, 80, 80] = removed / 2
    some = conserve_flux(scene, restored, full_scale=255, clip_radius=12, removable=half)
    lost = {k: float(scene.sum() - v.sum()) for k, v in {"free": free, "none": none,
                                                          "some": some}.items()}  # fmt: skip
    assert lost["free"] > 0.5 * removed  # the unbounded rule lets most of it go
    assert abs(lost["none"]) < 0.01 * removed  # nothing removable: all of it kept
    assert 0.3 * removed < lost["some"] <= 0.5 * removed + 1.0
