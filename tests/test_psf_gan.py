"""The PSF-explicit, clip-aware solver (psf-gan): data step, cores, solver, method, training."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from geo_ntl.deblur import cores  # noqa: E402
from geo_ntl.deblur.clip_rl import PSFOperator, clip_rl, pad_for_psf, unpad  # noqa: E402
from geo_ntl.deblur.psf_gan import resolve_psf, solve, solve_array  # noqa: E402
from geo_ntl.deblur.solver import SolverInputs, UnrolledSolver  # noqa: E402
from geo_ntl.deblur.weights import save_weights  # noqa: E402
from geo_ntl.exceptions import WeightsError  # noqa: E402
from geo_ntl.simulate.psf import gaussian_psf, moffat_psf  # noqa: E402
from geo_ntl.testing import make_scene  # noqa: E402


@pytest.fixture(scope="module")
def solver_weights(tmp_path_factory):
    """A small solver whose prior is trained for a few steps (not the identity)."""
    torch.manual_seed(0)
    model = UnrolledSolver(stages=2, iterations=3)
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("solver") / "solver.pt"
    return str(save_weights(model, path))


def _lamps(shape=(3, 160, 160), *, peak=600.0, seed=0, psf=None):
    """Isolated point lamps (a jittered 30 px grid) on a dim ground, blurred, noisy, uint8."""
    rng = np.random.default_rng(seed)
    sharp = np.full(shape, 3.0)
    for y in range(15, shape[1] - 12, 30):
        for x in range(15, shape[2] - 12, 30):
            dy, dx = rng.integers(-3, 4, 2)
            sharp[:, y + dy, x + dx] += peak * rng.uniform(0.3, 1.0)
    psf = gaussian_psf(15, sigma=1.6) if psf is None else psf
    blurred = np.stack([ndimage.convolve(b, psf, mode="reflect") for b in sharp])
    noisy = blurred + rng.normal(0, 0.5, blurred.shape)
    return sharp, np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- data step
def test_psf_operator__adjoint_is_the_transpose():
    rng = np.random.default_rng(0)
    k = torch.from_numpy(moffat_psf(9).astype(np.float32))[None, None]
    op = PSFOperator(k, (32, 40))
    x, y = torch.randn(1, 1, 32, 40), torch.randn(1, 1, 32, 40)
    lhs = float((op.forward(x) * y).sum())
    rhs = float((x * op.adjoint(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-4)
    del rng


def _unclipped_lamps_problem():
    """One band of dim unclipped lamps, padded, with its PSF operator: ``(y, padded, widths, op)``."""
    _, img = _lamps(peak=150.0)
    y = torch.from_numpy(img[:1].astype(np.float32))[None] + 0.1
    yp, widths = pad_for_psf(y, 16)
    k = torch.from_numpy(gaussian_psf(15, sigma=1.6).astype(np.float32))[None, None]
    return y, yp, widths, PSFOperator(k, tuple(yp.shape[-2:]))


def test_clip_rl__keeps_the_light_of_unclipped_data():
    y, yp, widths, op = _unclipped_lamps_problem()
    u = clip_rl(yp.clone(), yp, op, level=torch.tensor(float("inf")), sharpness=torch.tensor(1.0),
                iterations=10)  # fmt: skip
    assert float(u.sum() / yp.sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(unpad(u, widths).max()) > 1.5 * float(y.max())  # lamps sharpened


def test_clip_rl__a_clipped_lamp_may_exceed_full_scale_and_shrink():
    """Clipped pixels only say "at least full scale": the latent rises above it, the core shrinks."""
    psf = gaussian_psf(21, sigma=2.5)
    sharp = np.zeros((64, 64))
    sharp[32, 32] = 60000.0  # far above full scale once blurred
    blurred = ndimage.convolve(sharp, psf, mode="constant")
    data = np.minimum(blurred, 250.0) + 0.1
    y = torch.from_numpy(data.astype(np.float32))[None, None]
    k = torch.from_numpy(psf.astype(np.float32))[None, None]
    op = PSFOperator(k, (64, 64))
    kw = {"sharpness": torch.tensor(0.2), "iterations": 60}
    clip_aware = clip_rl(y.clone(), y, op, level=torch.tensor(250.0), **kw)[0, 0].numpy()
    plain = clip_rl(y.clone(), y, op, level=torch.tensor(float("inf")), **kw)[0, 0].numpy()
    assert clip_aware.max() > 2 * 250  # the lamp's light is allowed above full scale
    assert (clip_aware >= 250).sum() < (data >= 250).sum()  # its clipped core shrinks
    assert clip_aware.max() > plain.max()


def test_clip_rl__inference_path_matches_the_autograd_path():
    """Without autograd the data step runs scipy's FFT and in-place arithmetic: same result."""
    psf = gaussian_psf(21, sigma=2.5)
    sharp = np.zeros((2, 3, 48, 56))
    sharp[:, :, 20, 30] = 60000.0
    sharp[:, :, 30, 12] = 120.0
    data = np.minimum(np.stack([[ndimage.convolve(c, psf) for c in im] for im in sharp]), 250.0)
    y = torch.from_numpy(data.astype(np.float32)) + 0.1
    k = torch.from_numpy(psf.astype(np.float32))[None, None]
    valid = torch.ones(2, 1, 48, 56)
    valid[1, :, :5] = 0.0
    kw = {"level": torch.tensor(250.0), "sharpness": torch.tensor(0.2), "iterations": 12,
          "valid": valid}  # fmt: skip
    with torch.no_grad():
        fast = clip_rl(y.clone(), y, PSFOperator(k, (48, 56)), **kw)
    with torch.enable_grad():
        u0 = y.clone().requires_grad_(True)
        slow = clip_rl(u0, y, PSFOperator(k, (48, 56)), **kw).detach()
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-6 * float(slow.max()))
    assert float(fast.max()) > 500.0  # the clipped lamp rose above full scale in both


def test_clip_rl__extrapolation_gets_closer_to_the_fixed_point_and_keeps_the_light():
    """15 extrapolated updates land nearer where many plain updates go than 30 plain ones."""
    _, yp, _, op = _unclipped_lamps_problem()
    kw = {"level": torch.tensor(float("inf")), "sharpness": torch.tensor(1.0)}
    with torch.no_grad():
        far = clip_rl(yp.clone(), yp, op, iterations=80, **kw)
        plain = clip_rl(yp.clone(), yp, op, iterations=30, **kw)
        fast = clip_rl(yp.clone(), yp, op, iterations=15, accelerate=True, **kw)
    assert float((fast - far).norm()) < float((plain - far).norm())
    assert float(fast.sum() / yp.sum()) == pytest.approx(1.0, abs=1e-3)
    assert float(fast.min()) > 0.0


def test_pad_for_psf__fast_sizes_that_are_multiples_of_the_grid():
    from geo_ntl.deblur.clip_rl import fast_length

    x = torch.rand(1, 3, 2031, 97)
    padded, widths = pad_for_psf(x, 40, multiple=4)
    for n in padded.shape[-2:]:
        assert n % 4 == 0 and max(_prime_factors(n)) <= 5
    assert padded.shape[-2] == fast_length(2031 + 80, 4)
    assert torch.equal(unpad(padded, widths), x)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def test_solver__a_zero_prior_is_skipped_in_inference_and_trained_in_training():
    torch.manual_seed(0)
    model = UnrolledSolver(stages=2, iterations=3)
    assert model.prior_is_identity()
    _, img = _lamps(shape=(3, 64, 64))
    inputs = SolverInputs(
        data=torch.from_numpy(img.astype(np.float32))[None] + 0.1,
        kernels=torch.from_numpy(gaussian_psf(15, sigma=1.6).astype(np.float32))[None, None],
        level=torch.full((1, 3, 1, 1), 250.0), full_scale=torch.full((1, 3, 1, 1), 255.0),
        noise=torch.full((1, 1, 1, 1), 0.002), fwhm=torch.full((1, 1, 1, 1), 3.8),
    )  # fmt: skip
    with torch.no_grad():
        skipped = model(inputs)[0]
    calls = []
    model.prior.register_forward_hook(lambda *a: calls.append(1))
    out = model(inputs)[0]  # autograd on: the prior runs, so its zero last conv learns
    assert calls and torch.allclose(out.detach(), skipped, rtol=1e-4, atol=1e-3)
    out.sum().backward()
    assert float(model.prior.net[-1].weight.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- cores
def test_hold_cores__numpy_and_torch_agree_and_keep_cores_at_full_scale():
    _, img = _lamps(peak=40000.0)
    out = (img.astype(np.float32) * 0.5)[None]
    held_np = cores.hold_cores(out[0], img.astype(np.float32), level=255.0, fwhm=3.0)
    held_t = cores.hold_cores_torch(
        torch.from_numpy(out), torch.from_numpy(img[None].astype(np.float32)),
        level=torch.full((1, 3, 1, 1), 255.0), fwhm=torch.tensor([3.0]),
    )[0].numpy()  # fmt: skip
    core = cores.core_mask(img >= 250, 3.0)  # the criterion's cores (eroded by the HWHM)
    held = cores.core_mask(img >= 250, 3.0, radius=cores.hold_radius(3.0))  # what is held
    assert core.any() and (held_np[core] == 255).all() and (held >= core).all()
    np.testing.assert_array_equal(held_np, held_t)
    np.testing.assert_array_equal(held_np[~held], out[0][~held])


# -------------------------------------------------------------------------- solver
@pytest.mark.parametrize("start", ["data", "flat"])
def test_untrained_solver__is_clip_aware_richardson_lucy(start):
    """The prior's last convolution starts at zero: an untrained solver is the data step alone.

    ``start="flat"`` is Richardson-Lucy from any flat image below full scale (its first update
    is ``K^T y`` whatever the level).
    """
    _, img = _lamps()
    model = UnrolledSolver(stages=2, iterations=4, start=start)
    data = torch.from_numpy(img.astype(np.float32))[None] + 1e-3
    k = torch.from_numpy(gaussian_psf(15, sigma=1.6).astype(np.float32))[None, None]
    one = torch.ones(1, 1, 1, 1)
    inputs = SolverInputs(data=data, kernels=k, level=255 * one, full_scale=255 * one,
                          noise=0.002 * one, fwhm=3.8 * one)  # fmt: skip
    with torch.no_grad():
        out = model(inputs)[0]
        yp, widths = pad_for_psf(data, model.margin(15), multiple=4)
        op = PSFOperator(k, tuple(yp.shape[-2:]))
        first = yp if start == "data" else torch.full_like(yp, 7.0)
        ref = clip_rl(first, yp, op, level=255 * one, sharpness=0.2 * one, iterations=8)
    np.testing.assert_allclose(out.numpy(), unpad(ref, widths).numpy(), rtol=1e-3, atol=1e-3)


def test_untrained_solver__refuses_an_unknown_start():
    with pytest.raises(ValueError, match="start"):
        UnrolledSolver(start="blurred")


def test_solver_prior__inference_layout_gives_the_training_result():
    """Outside autograd the prior runs channels-last: the same correction, same layout out."""
    from geo_ntl.deblur.solver import SolverPrior

    torch.manual_seed(0)
    prior = SolverPrior(width=8, n_blocks=1)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(1, 10, 64, 48)
    with torch.enable_grad():
        trained = prior(x).detach()
    with torch.no_grad():
        fast = prior(x)
    assert fast.is_contiguous()
    assert torch.allclose(fast, trained, rtol=1e-5, atol=1e-5 * float(trained.abs().max()))


def test_solver__prior_reach_keeps_the_prior_beside_clipped_pixels():
    """``prior_reach``: far from every clipped pixel the estimate is the data step's alone."""
    torch.manual_seed(0)
    gated = UnrolledSolver(stages=1, iterations=2, prior_reach=1.0)
    with torch.no_grad():
        for p in gated.prior.parameters():
            p.add_(0.05 * torch.randn_like(p))
    free = UnrolledSolver(**{**gated.config, "prior_reach": None})
    free.load_state_dict(gated.state_dict())
    plain = UnrolledSolver(**{**gated.config, "prior_weight": 0.0})
    data = torch.full((1, 3, 64, 64), 20.0)
    data[..., 10:13, 10:13] = 255.0  # one clipped blob in the top-left corner
    one = torch.ones(1, 1, 1, 1)
    inputs = SolverInputs(data=data, kernels=torch.from_numpy(gaussian_psf(7, sigma=1.0).astype(
        np.float32))[None, None], level=255 * one, full_scale=255 * one, noise=0.002 * one,
        fwhm=3.0 * one)  # fmt: skip
    with torch.no_grad():
        out, loose, ref = (m(inputs)[0] for m in (gated, free, plain))
    far = (slice(None), slice(None), slice(30, None), slice(30, None))
    assert torch.allclose(out[far], ref[far])  # no prior far from the blob
    assert not torch.allclose(loose[far], ref[far])  # the ungated prior acts there
    assert not torch.allclose(out[..., 8:15, 8:15], ref[..., 8:15, 8:15])  # and beside it
    unclipped = replace(inputs, data=torch.full((1, 3, 64, 64), 20.0))
    with torch.no_grad():  # no clipped pixel: the confined prior is skipped, the data step kept
        torch.testing.assert_close(gated(unclipped)[0], plain(unclipped)[0], rtol=0, atol=0)


def test_shipped_solver__tiled_equals_whole_within_one_dn():
    """The shipped data step (flat start, extrapolated) is local: tiles agree with the whole."""
    _, img = _lamps((3, 200, 200), peak=900.0)  # clipped lamps too
    scene = make_scene((3, 200, 200), chunks=100).copy(data=img)
    kw = {"psf": gaussian_psf(15, sigma=1.6), "device": "cpu"}
    tiled = solve(scene, tile=64, **kw).values
    whole = solve_array(img, **kw)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


# -------------------------------------------------------------------------- method
@pytest.mark.parametrize("conserve", [True, False])
def test_solve__tiled_equals_whole_within_one_dn(solver_weights, conserve):
    _, img = _lamps((3, 200, 200))
    scene = make_scene((3, 200, 200), chunks=100)
    scene = scene.copy(data=img)
    psf = gaussian_psf(15, sigma=1.6)
    kw = {"psf": psf, "weights": solver_weights, "device": "cpu", "conserve": conserve}
    tiled = solve(scene, tile=64, **kw).values
    whole = solve_array(img, **kw)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_solve__keeps_grid_dtype_nodata_and_tags_its_psf(solver_weights):
    scene = make_scene((3, 96, 96), nodata=0)
    values = scene.values.copy()
    values[:, 10:30, 50:90] = 0
    scene = scene.copy(data=values)
    out = solve(scene, psf=moffat_psf(), weights=solver_weights, device="cpu", tile=48)
    assert out.dtype == scene.dtype and out.rio.crs == scene.rio.crs
    assert out.rio.transform() == scene.rio.transform() and out.rio.nodata == 0
    bad = (scene.values == 0).all(axis=0)
    assert (out.values[:, bad] == 0).all()
    assert json.loads(out.attrs["geo_ntl_psf"])["source"] == "given"


def test_solve__sharpens_lamps_and_keeps_the_light(solver_weights):
    sharp, img = _lamps((3, 192, 192), peak=2000.0, seed=3)
    out = solve_array(img, psf=gaussian_psf(15, sigma=1.6), weights=solver_weights, device="cpu")
    from geo_ntl.metrics import light

    lw_in = light.lamp_widths(img)
    lw_out = light.lamp_widths(out, positions=lw_in["positions"])
    assert lw_out["fwhm"] < 0.8 * lw_in["fwhm"]
    assert out.astype(float).sum() / img.astype(float).sum() == pytest.approx(1.0, abs=0.01)


def test_solve__saturated_cores_stay_at_full_scale(solver_weights):
    _, img = _lamps((3, 160, 160), peak=200000.0, seed=5)
    assert (img == 255).any()
    out = solve_array(img, psf=gaussian_psf(15, sigma=1.6), weights=solver_weights, device="cpu")
    core = cores.core_mask(img >= 250, 3.8)
    assert core.sum() > 20 and (out[core] == 255).all()


def test_solve__float_radiance_is_not_clipped_at_its_maximum(solver_weights):
    """Float data have no clip level unless one is given: no light removed near the maximum."""
    _, img = _lamps((3, 160, 160), peak=2000.0, seed=2)
    radiance = img.astype(np.float32) * 0.37
    out = solve_array(radiance, psf=gaussian_psf(15, sigma=1.6), weights=solver_weights,
                      device="cpu")  # fmt: skip
    assert out.dtype == np.float32
    assert float(out.sum() / radiance.sum()) == pytest.approx(1.0, abs=1e-3)


def test_resolve_psf__falls_back_loudly_when_no_lamp_is_found(caplog):
    flat = np.full((3, 96, 96), 10, dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="geo_ntl.deblur.psf_gan"):
        choice = resolve_psf(flat)
    assert choice.source == "fallback"
    assert "fallback PSF" in caplog.text and "--psf-json" in caplog.text
    assert json.loads(choice.to_tag())["source"] == "fallback"


def test_resolve_psf__refuses_a_measured_psf_wider_than_the_lamps(monkeypatch, caplog):
    """A kernel fit wider than the isolated lamps it blurs is impossible: the lamp widths win."""
    import geo_ntl.psf as psf_module

    _, img = _lamps((3, 320, 320), peak=2500.0)  # lamps blurred by a 3.8 px Gaussian
    wide = gaussian_psf(41, sigma=4.25)  # FWHM 10 px
    fake = psf_module.PSFEstimate(
        kernel=wide, band_kernels=np.repeat(wide[None], 3, axis=0), fwhm=(10.0,) * 3,
        radius=np.arange(3.0), profile=np.ones((3, 3)), wing_slope=(-5.0,) * 3, n_sources=9,
        method="saturated-edges",
    )  # fmt: skip
    monkeypatch.setattr(psf_module, "estimate_psf", lambda *a, **k: fake)
    with caplog.at_level(logging.WARNING, logger="geo_ntl.deblur.psf_gan"):
        choice = resolve_psf(img)
    assert choice.source == "lamp-widths"
    assert 2.0 < choice.fwhm < 5.0
    assert "wider than the median isolated lamp" in caplog.text
    # --method physics makes the same choice
    from geo_ntl.deblur.physics import scene_psf
    from geo_ntl.psf import profile_fwhm

    kernel = scene_psf(img)
    assert isinstance(kernel, np.ndarray) and profile_fwhm(kernel) == pytest.approx(choice.fwhm)
    monkeypatch.setattr(psf_module, "estimate_psf", lambda *a, **k: replace(fake, fwhm=(3.0,) * 3))
    assert scene_psf(img).fwhm == (3.0,) * 3  # a fit as narrow as the lamps is kept


def test_weights__each_method_refuses_the_other_architecture(solver_weights, tmp_path):
    from geo_ntl.deblur.inference import deblur_array as gan_deblur_array
    from geo_ntl.deblur.model import Generator

    img = np.zeros((3, 64, 64), np.uint8)
    with pytest.raises(WeightsError, match="psf-gan"):
        gan_deblur_array(img, weights=solver_weights, device="cpu")
    gen = save_weights(Generator(base=4, n_blocks=1), tmp_path / "g.pt")
    with pytest.raises(WeightsError, match="gan-direct"):
        solve_array(img, psf=moffat_psf(), weights=str(gen), device="cpu")


# ------------------------------------------------------------------------ training
def test_train_solver__resumes_exactly(tmp_path):
    from geo_ntl.deblur.solver_train import SolverTrainConfig, train_solver

    cfg = SolverTrainConfig(steps=4, n_scenes=2, scene_size=160, crop=96, batch=1,
                            refresh_every=2, checkpoint_every=2, stages=1, iterations=2)  # fmt: skip
    straight = train_solver(tmp_path / "a", cfg, threads=1)
    train_solver(tmp_path / "b", cfg, threads=1, until=3)  # stopped mid-pool, mid-schedule
    resumed = train_solver(tmp_path / "b", cfg, resume=True, threads=1)
    a = torch.load(straight, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_train_solver__a_branch_goes_on_from_its_parent_and_resumes_exactly(tmp_path):
    """A run started from another run's weights counts on from that run's step and time."""
    import json as _json

    from geo_ntl.deblur.solver_train import SolverTrainConfig, train_solver

    base = SolverTrainConfig(steps=2, n_scenes=2, scene_size=160, crop=96, batch=1,
                             refresh_every=2, checkpoint_every=2, stages=1, iterations=2)  # fmt: skip
    parent = train_solver(tmp_path / "parent", base, threads=1)
    parent_meta = torch.load(parent, weights_only=False)["meta"]["training"]
    cfg = replace(base, steps=5, init_from=str(parent), prior_reach=1.0, start="flat",
                  accelerate=True, adv_warmup=2)  # fmt: skip
    straight = train_solver(tmp_path / "a", cfg, threads=1, log_every=1)
    train_solver(tmp_path / "b", cfg, threads=1, until=4)
    resumed = train_solver(tmp_path / "b", cfg, resume=True, threads=1)
    first = _json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == parent_meta["steps"] + 1
    assert first["elapsed_s"] > parent_meta["seconds"]
    a, b = (torch.load(f, weights_only=False) for f in (straight, resumed))
    assert a["config"]["prior_reach"] == 1.0 and a["config"]["start"] == "flat"
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)


def _write_photos(folder, shades):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, shade in shades.items():
        img = np.clip(rng.normal(shade, 5, (64, 80, 3)), 0, 255).astype(np.uint8)
        img[20:24, 30:34] = 255  # a lamp
        Image.fromarray(img).save(folder / name)
    return folder


def test_training_photos__night_like_only_and_never_the_benchmark_ones(tmp_path):
    from geo_ntl.deblur.solver_pairs import training_photos

    folder = _write_photos(tmp_path / "p", {"01.jpg": 10, "02.jpg": 20, "03.jpg": 180})
    assert [p.name for p in training_photos(folder)] == ["02.jpg"]
    with pytest.raises(FileNotFoundError, match="night-like"):
        training_photos(_write_photos(tmp_path / "q", {"03.jpg": 180}))


def test_make_scene__photo_scenes_and_unchanged_simulator_scenes(tmp_path):
    from geo_ntl.deblur.solver_pairs import make_scene, training_photos

    photos = training_photos(_write_photos(tmp_path / "p", {"02.jpg": 20, "04.jpg": 30}))
    photo = make_scene(3, 96, photos=photos, photo_share=1.0)
    assert photo.meta["simulator"] == "photo" and photo.meta["photo"] in {"02.jpg", "04.jpg"}
    assert photo.truth.shape == photo.degraded.shape == (3, 96, 96)
    assert photo.truth.max() == 255  # this seed draws its lamp past full scale
    plain, none_drawn = make_scene(3, 96), make_scene(3, 96, photos=photos, photo_share=0.0)
    np.testing.assert_array_equal(plain.degraded, none_drawn.degraded)
    assert none_drawn.meta["photo"] is None


def test_solve__out_of_memory_names_the_tile(solver_weights, monkeypatch, tmp_path, runner):
    """A GPU out-of-memory error in the solver is an error line naming --tile, exit 2."""
    from geo_ntl.deblur import solver as solver_mod
    from geo_ntl.exceptions import DeviceMemoryError
    from geo_ntl.io import write_cog

    def oom(self, inputs, every_stage=False):
        raise torch.OutOfMemoryError("CUDA out of memory (forced)")

    monkeypatch.setattr(solver_mod.UnrolledSolver, "forward", oom)
    scene = make_scene((3, 64, 64), seed=5)
    with pytest.raises(DeviceMemoryError, match="psf-gan solver.*`tile`"):
        solve(scene, psf=moffat_psf(), weights=solver_weights, device="cpu", tile=32).compute()
    path = write_cog(scene, tmp_path / "scene.tif")
    res = runner("deblur", path, "--out", tmp_path / "out.tif", "--weights", solver_weights,
                 "--tile", "32", "--workers", "0")  # fmt: skip
    assert res.exit_code == 2 and "lower --tile" in res.stderr
    assert not (tmp_path / "out.tif").exists()


def test_solve__a_psf_wider_than_trained_is_solved_on_a_coarser_grid(solver_weights):
    """A 16 px PSF (beyond the prior's 12 px) runs on 2 x 2 block means: lamps narrow, light kept,
    tiles that cut the coarse grid alike give the whole image's result."""
    from geo_ntl.deblur.psf_gan import resample_factor
    from geo_ntl.metrics import light

    psf = gaussian_psf(81, sigma=7.0)
    assert resample_factor(2.3548 * 7.0) == 2
    rng = np.random.default_rng(4)
    sharp = np.full((3, 256, 256), 3.0)
    for y in range(32, 240, 64):
        for x in range(32, 240, 64):
            sharp[:, y, x] += rng.uniform(20000, 40000)
    blurred = np.stack([ndimage.convolve(b, psf, mode="reflect") for b in sharp])
    img = np.clip(np.round(blurred + rng.normal(0, 0.5, blurred.shape)), 0, 255).astype(np.uint8)
    out = solve_array(img, psf=psf, weights=solver_weights, device="cpu")
    lw_in = light.lamp_widths(img, sep=32)
    lw_out = light.lamp_widths(out, positions=lw_in["positions"], sep=32)
    assert lw_in["n"] >= 9 and lw_out["fwhm"] < 0.85 * lw_in["fwhm"]
    assert out.astype(float).sum() / img.astype(float).sum() == pytest.approx(1.0, abs=0.01)
    scene = make_scene(img.shape).copy(data=img)
    tiled = solve(scene, psf=psf, weights=solver_weights, device="cpu", tile=128).values
    assert np.abs(tiled.astype(int) - out.astype(int)).max() <= 1


def test_solve__light_of_lamps_sharpened_past_full_scale_stays_near_them(solver_weights):
    """No input pixel clipped, but sharpened lamps exceed 255: an 8-bit output spreads the excess
    around them (the flux projection runs after the clip), it does not lose it."""
    from geo_ntl.metrics import light

    _, img = _lamps((3, 216, 216), peak=3800.0, seed=8)
    assert img.max() < 250
    out = solve_array(img, psf=gaussian_psf(15, sigma=1.6), weights=solver_weights, device="cpu")
    assert out.max() == 255  # some lamps did sharpen past full scale
    assert out.astype(float).sum() / img.astype(float).sum() == pytest.approx(1.0, abs=0.01)
    cells = light.flux_ratio_stats(img, out)
    assert cells["within_10pct"] == 1.0
