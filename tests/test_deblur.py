"""Tests of the deblooming GAN: architecture, losses, weights, inference, training, CLI.

Everything runs on CPU with tiny, seeded, untrained networks (``base=4``, one
residual block) except the checks of the shipped weights file.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio

torch = pytest.importorskip("torch")

from geo_ntl.deblur import losses  # noqa: E402
from geo_ntl.deblur.inference import deblur, deblur_array  # noqa: E402  (the standalone GAN)
from geo_ntl.deblur.model import (  # noqa: E402
    Discriminator,
    Generator,
    count_parameters,
    receptive_field,
    theoretical_receptive_radius,
)
from geo_ntl.deblur.weights import (  # noqa: E402
    DEFAULT_WEIGHTS,
    get_model,
    list_models,
    load_generator,
    save_weights,
    sha256sum,
)
from geo_ntl.exceptions import (  # noqa: E402
    InputError,
    OutputExistsError,
    ParameterError,
    UnsupportedRasterError,
    WeightsError,
    WeightsNotFoundError,
)
from geo_ntl.io import write_cog  # noqa: E402
from geo_ntl.testing import make_scene  # noqa: E402

SEED = 0
TINY = {"base": 4, "n_blocks": 1}
#: Theoretical receptive radius of the tiny generator (one residual block).
TINY_RADIUS = theoretical_receptive_radius(n_blocks=1)
TINY_HALO = 76  # multiple of 4, >= TINY_RADIUS


def _tiny_generator(seed: int = SEED) -> Generator:
    torch.manual_seed(seed)
    gen = Generator(**TINY)
    gen_rng = torch.Generator().manual_seed(seed)
    for m in gen.modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen_rng) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen_rng) + 0.5)
    return gen.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # Tiny networks gain nothing from threads, and on a busy CPU they lose a lot.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(_tiny_generator(), path, meta={"note": "test"})
    return path


# --- architecture ------------------------------------------------------------------------


def test_generator__parameter_count_and_shape():
    gen = Generator()
    assert 3.6e6 < count_parameters(gen) < 3.8e6  # the paper's ~3.7 M
    assert count_parameters(gen) == 3_705_987
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        y = gen.eval()(x)
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1.0


def test_generator__instance_norm_tracks_running_stats():
    norms = [m for m in Generator().modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 5 + 3 * 3 * 3  # head, 2 down, 2 up + 3 per branch
    assert all(m.track_running_stats and m.affine for m in norms)


def test_discriminator__critic_map_shape():
    critic = Discriminator()
    out = critic(torch.rand(2, 3, 96, 96))
    assert out.shape == (2, 1, 2, 2)
    assert 100_000 < count_parameters(critic) < 200_000


def test_theoretical_receptive_radius__three_blocks():
    # 3 blocks x (6 + 3 + 6) quarter-res px x 4 + 12 px of full-res layers
    assert theoretical_receptive_radius() == 192
    assert TINY_RADIUS == 72


def test_receptive_field__within_theoretical_radius():
    rf = receptive_field(_tiny_generator(), size=160, n_samples=1)
    assert rf["support_radius"] <= TINY_RADIUS
    assert 0 < rf["effective_radius"] <= rf["support_radius"]


def test_generator__eval_mode_is_tile_independent():
    gen = _tiny_generator()
    rng = np.random.default_rng(SEED)
    x = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32))
    y0, x0, size = 80, 76, 64  # multiples of 4: same sampling grid
    with torch.no_grad():
        whole = gen(x)[..., y0 : y0 + size, x0 : x0 + size]
        crop = x[
            ..., y0 - TINY_HALO : y0 + size + TINY_HALO, x0 - TINY_HALO : x0 + size + TINY_HALO
        ]
        tiled = gen(crop)[..., TINY_HALO:-TINY_HALO, TINY_HALO:-TINY_HALO]
        assert torch.allclose(whole, tiled, atol=1e-5)
        gen.train()  # per-instance statistics: depends on the crop
        for m in gen.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        whole_t = gen(x)[..., y0 : y0 + size, x0 : x0 + size]
        tiled_t = gen(crop)[..., TINY_HALO:-TINY_HALO, TINY_HALO:-TINY_HALO]
        assert not torch.allclose(whole_t, tiled_t, atol=1e-3)


# --- losses ------------------------------------------------------------------------------


def test_hsi_loss__zero_for_identical_and_positive_otherwise():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert float(losses.hsi_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(losses.hsi_loss(x, x.flip(-1))) > 1e-3


def _rgb_from_hue(deg: float, sat: float = 0.6, inten: float = 0.5) -> torch.Tensor:
    h = math.radians(deg)
    c = torch.tensor([math.cos(h), math.cos(h - 2 * math.pi / 3), math.cos(h + 2 * math.pi / 3)])
    rgb = inten * (1 + sat * c)
    return (rgb * 2 - 1).view(1, 3, 1, 1)


def test_hsi_loss__hue_is_circular():
    near = losses.hsi_loss(_rgb_from_hue(359.0), _rgb_from_hue(1.0))
    far = losses.hsi_loss(_rgb_from_hue(179.0), _rgb_from_hue(1.0))
    assert float(near) < 1e-3 < float(far)


def test_hsi_loss__hue_ignored_for_grey():
    grey = torch.full((1, 3, 4, 4), 0.2)
    dark = torch.full((1, 3, 4, 4), -1.0)
    hsi = losses.rgb_to_hsi((dark + 1) / 2)
    assert float(hsi["s"].abs().max()) == 0.0
    assert float(losses.hsi_loss(grey, grey)) == pytest.approx(0.0, abs=1e-7)


class _LinearCritic(torch.nn.Module):
    def __init__(self, norm: float):
        super().__init__()
        w = torch.ones(1, 3, 4, 4)
        self.w = w / w.norm() * norm

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2, 3))


@pytest.mark.parametrize("norm,expected", [(1.0, 0.0), (2.0, 10.0), (0.5, 2.5)])
def test_gradient_penalty__linear_critic(norm, expected):
    real, fake = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    gp = losses.gradient_penalty(_LinearCritic(norm), real, fake)
    assert float(gp) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_perceptual_substitute__zero_for_identical():
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    sub = losses.make_perceptual(None)
    assert float(sub(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(sub(x, torch.zeros_like(x))) > 0.1


def test_vgg_perceptual__loads_torchvision_format(tmp_path):
    from geo_ntl.deblur.vgg import build_vgg_features

    feats = build_vgg_features("vgg13")
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry a classifier
    torch.save(state, tmp_path / "vgg13.pth")
    loss = losses.make_perceptual(tmp_path / "vgg13.pth")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="vgg13"):
        losses.make_perceptual(tmp_path / "bad.pth")


def test_flux_loss__sees_created_light_not_moved_light():
    dark = torch.full((1, 3, 48, 48), -1.0)
    lamp = dark.clone()
    lamp[..., 10, 10] = 1.0
    moved = dark.clone()
    moved[..., 13, 14] = 1.0  # same 24 px block
    halo = lamp.clone()
    halo[..., 5:16, 5:16] += 0.1  # a faint halo adds light
    assert float(losses.flux_loss(lamp, lamp)) == 0.0
    assert float(losses.flux_loss(moved, lamp)) == pytest.approx(0.0, abs=1e-7)
    assert float(losses.flux_loss(halo, lamp)) > 10 * float((moved - lamp).abs().mean()) / 100
    # the pixel L1 is larger for the moved lamp than for the faint halo, the flux loss is not
    assert float((moved - lamp).abs().mean()) > 0
    with pytest.raises(ValueError, match="smaller than cell"):
        losses.flux_loss(dark[..., :16, :16], dark[..., :16, :16])


def test_lamp_loss__sees_wide_lamps_and_rings_not_background():
    dark = torch.full((1, 3, 48, 48), -1.0)
    lamp = dark.clone()
    lamp[..., 20:23, 20:23] = 1.0
    wide = dark.clone()
    wide[..., 18:25, 18:25] = 1.0  # same lamp left 7 px wide
    lit = lamp + 0.2 * (lamp < 0)  # a lamp on a lit background, and the same with a dark ring
    dug = lit.clone()
    dug[..., 17:26, 17:26] = torch.where(lit[..., 17:26, 17:26] < 0, -1.0, 1.0)
    far = lamp.clone()
    far[..., 40:, 40:] = 0.0  # wrong background far from the lamp
    assert float(losses.lamp_loss(lamp, lamp)) == 0.0
    assert float(losses.lamp_loss(far, lamp)) == 0.0
    # the wide lamp costs about its extra area over the 17 x 17 lamp region, not over 48 x 48
    assert float(losses.lamp_loss(wide, lamp)) == pytest.approx(40 / 17**2, rel=1e-5)
    assert float(losses.lamp_loss(wide, lamp)) > 5 * float((wide - lamp).abs().mean() / 2)
    assert float(losses.lamp_loss(dug, lit)) > 0
    assert float(losses.lamp_loss(lamp, dark)) == 0.0  # no lamp in the target: nothing to compare


def test_training_steps__reduce_content_loss():
    from geo_ntl.deblur.blur_transfer import physical_blur

    rng = np.random.default_rng(SEED)
    sharp = np.full((2, 3, 32, 32), 10, np.uint8)
    for img in sharp:
        ys, xs = rng.integers(4, 28, 6), rng.integers(4, 28, 6)
        img[:, ys, xs] = 250
    blurred = np.stack([physical_blur(s_, seed=i) for i, s_ in enumerate(sharp)])
    x, y = (torch.from_numpy(a.astype(np.float32) / 127.5 - 1) for a in (blurred, sharp))
    torch.manual_seed(SEED)
    gen = Generator(**TINY)
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3, betas=(0.5, 0.999))

    def loss() -> torch.Tensor:
        p = gen(x)
        return (p - y).abs().mean() + 2 * losses.hsi_loss(p, y)

    with torch.no_grad():
        first = float(loss())
    for _ in range(8):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.8 * first


# --- blur transfer -----------------------------------------------------------------------


def test_make_pool__pairs_and_black_fraction():
    from geo_ntl.deblur.blur_transfer import make_pool
    from geo_ntl.deblur.real_stats import load_shipped_stats

    pool = make_pool(n_cities=4, size=64, seed=SEED, stats=load_shipped_stats())
    assert pool.blurred.shape == pool.sharp.shape == (5, 3, 64, 64)
    assert pool.n_black == 1 and pool.sharp[-1].max() == 0
    # blooming moves light locally: the pairs differ pixel by pixel but agree once smoothed
    from scipy import ndimage

    blurred, sharp = pool.blurred[:4].astype(float), pool.sharp[:4].astype(float)
    smooth = lambda a: ndimage.gaussian_filter(a, (0, 0, 4, 4))  # noqa: E731
    raw_diff = np.abs(blurred - sharp).mean()
    assert raw_diff > 2.0
    corr_raw = np.corrcoef(blurred.ravel(), sharp.ravel())[0, 1]
    corr_smooth = np.corrcoef(smooth(blurred).ravel(), smooth(sharp).ravel())[0, 1]
    # (0.87 here: the training PSFs reach FWHM 10 px in windows up to 61 px, so part of the light
    # moves farther than the 4 px smoothing, and clipped lamps keep their spread light.)
    assert corr_smooth > 0.85 and corr_smooth > corr_raw + 0.1


def test_halo_kernel__normalised_and_widening():
    from geo_ntl.deblur.blur_transfer import halo_kernel
    from geo_ntl.deblur.real_stats import load_shipped_stats

    prof = load_shipped_stats()["halo_profile"]
    k1, k2 = halo_kernel(prof), halo_kernel(prof, scale=1.4)
    assert k1.sum() == pytest.approx(1.0, abs=1e-5) and k1.min() >= 0
    assert k2.shape[0] > k1.shape[0]


def test_measure_blooming_stats__synthetic_lamps():
    from scipy import signal

    from geo_ntl.deblur.real_stats import measure_blooming_stats
    from geo_ntl.simulate.psf import moffat_psf

    img = np.zeros((256, 256), np.float32)
    img[64:192:32, 64:192:32] = 400.0
    blurred = np.clip(signal.fftconvolve(img, moffat_psf(15, alpha=3.0, beta=2.0), "same"), 0, 1)
    rgb = np.stack([blurred] * 3) + np.random.default_rng(0).normal(0, 0.01, (3, 256, 256))
    stats = measure_blooming_stats(np.clip(rgb, 0, 1).astype(np.float32))
    prof = np.asarray(stats["halo_profile"])
    assert stats["n_blobs"] == 16
    assert prof[0] == pytest.approx(1.0) and np.all(np.diff(prof[:6]) < 0)
    with pytest.raises(InputError, match="saturated"):
        measure_blooming_stats(np.zeros((3, 64, 64), np.float32))


# --- weights registry ----------------------------------------------------------------------


def test_weights__missing_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="neither an existing file"):
        get_model(tmp_path / "nope.pt")


def test_weights__corrupt_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_generator(bad)


def test_weights__foreign_architecture(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"arch": "resnet18", "state_dict": {}}, foreign)
    with pytest.raises(WeightsError, match="ntl-db-net-generator-v1"):
        load_generator(foreign)
    plain = tmp_path / "plain.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), plain)
    with pytest.raises(WeightsError, match="not a geo_ntl weights file"):
        load_generator(plain)


def test_weights__mismatched_shapes(tmp_path, tiny_weights):
    obj = torch.load(tiny_weights, weights_only=True)
    obj["config"] = {"base": 8, "n_blocks": 1}
    path = tmp_path / "wrong.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match="does not fit"):
        load_generator(path)


def test_weights__checksum_mismatch(tiny_weights):
    with pytest.raises(WeightsError, match="SHA-256"):
        load_generator(tiny_weights, sha256="0" * 64)
    assert load_generator(tiny_weights, sha256=sha256sum(tiny_weights)).config == {
        "in_channels": 3,
        "out_channels": 3,
        "residual": True,
        **TINY,
    }


def test_weights__fp16_round_trip(tmp_path):
    gen = _tiny_generator()
    path = save_weights(gen, tmp_path / "half.pt", half=True)
    back = load_generator(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(gen(x), back(x), atol=2e-2)
    with pytest.raises(OutputExistsError):
        save_weights(gen, path)


def test_list_models__shipped_entry_with_meta():
    models = list_models()
    assert DEFAULT_WEIGHTS in models
    entry = models[DEFAULT_WEIGHTS]
    assert len(entry["sha256"]) == 64
    for key in ("bands", "sensor", "training", "licence", "paper"):
        assert key in entry["meta"]
    assert "geo-ntl train" in entry["meta"]["training"]["command"]


def test_default_halo__covers_shipped_effective_receptive_field():
    from geo_ntl.deblur import DEFAULT_HALO

    rf = receptive_field(get_model(DEFAULT_WEIGHTS), size=224, n_samples=1, mass=0.99)
    assert rf["effective_radius"] <= DEFAULT_HALO < rf["theoretical_radius"]
    assert DEFAULT_HALO % 4 == 0


def test_get_model__shipped_weights_load_and_are_cached():
    gen = get_model(DEFAULT_WEIGHTS)
    assert not gen.training and count_parameters(gen) == 0  # frozen
    assert get_model() is gen


# --- inference -----------------------------------------------------------------------------


def test_deblur__keeps_grid_dtype_and_matches_whole(tiny_weights):
    scene = make_scene((3, 100, 84), seed=3, chunks=40)
    out = deblur(
        scene,
        weights=tiny_weights,
        device="cpu",
        tile=32,
        halo=TINY_HALO,
        batch_size=3,
    )
    assert out.shape == scene.shape and out.dtype == scene.dtype
    assert out.rio.crs == scene.rio.crs and out.rio.transform() == scene.rio.transform()
    whole = deblur_array(scene.values, weights=tiny_weights, device="cpu", halo=TINY_HALO)
    diff = np.abs(out.values.astype(int) - whole.astype(int))
    assert diff.max() <= 1


def test_deblur__one_band_replicated_and_merged(tiny_weights):
    scene = make_scene((1, 48, 48), seed=4)
    rgb = np.repeat(scene.values, 3, axis=0)
    for conserve, atol in ((False, 1.0), (True, 2.0)):
        # With the flux pass, each of the three bands is dither-rounded on its own (<= 1 DN
        # each) before their mean is taken; the one band is rounded once.
        out = deblur(
            scene.isel(band=0, drop=True),
            weights=tiny_weights,
            device="cpu",
            tile=32,
            conserve=conserve,
        )
        ref = deblur_array(rgb, weights=tiny_weights, device="cpu", conserve=conserve)
        assert out.dims == ("y", "x")
        assert np.abs(out.values - ref.astype(float).mean(axis=0)).max() <= atol


@pytest.mark.parametrize("bands", [2, 4])
def test_deblur__two_or_four_bands_refused(tiny_weights, bands):
    scene = make_scene((bands, 32, 32), seed=5)
    with pytest.raises(UnsupportedRasterError, match="1 .panchromatic. or 3"):
        deblur(scene, weights=tiny_weights, device="cpu")


def test_deblur__nodata_and_nan_kept(tiny_weights):
    scene = make_scene((3, 48, 48), dtype="float32", seed=6, nodata=-1.0)
    values = scene.values.copy()
    values[:, :8, :8] = -1.0
    values[0, 20, 20] = np.nan
    scene = scene.copy(data=values)
    out = deblur(scene, weights=tiny_weights, device="cpu", tile=32).values
    assert np.all(out[:, :8, :8] == -1.0)
    assert np.all(out[:, 20, 20] == -1.0)
    assert np.isfinite(out).all()
    valid = out[:, 8:, 8:].reshape(3, -1)
    assert (valid == -1.0).all(axis=0).sum() == 1  # only the NaN pixel became nodata
    assert valid[:, valid[0] != -1.0].min() >= 0


def test_deblur__scene_smaller_than_halo(tiny_weights):
    scene = make_scene((3, 12, 20), seed=7)
    out = deblur(scene, weights=tiny_weights, device="cpu", tile=16, halo=64)
    assert out.values.shape == (3, 12, 20)


def test_deblur__all_black_stays_dark():
    scene = make_scene((3, 64, 64), seed=8)
    black = scene.copy(data=np.zeros(scene.shape, np.uint8))
    out = deblur(black, device="cpu", tile=64).values
    assert out.max() <= 8


# --- training API --------------------------------------------------------------------------


def _tiny_run_config(train_mod, **options):
    """A training run of one 96 px city and one crop per step (the smallest the critic takes)."""
    return train_mod.TrainConfig(
        **{"crop": 96, "batch": 1, "n_cities": 1, "city_size": 96, **options}
    )


def test_train__resume_and_existing_run(tmp_path, monkeypatch):
    from geo_ntl.deblur import train as train_mod

    monkeypatch.setattr(train_mod, "CALIBRATION_BATCHES", 2)
    monkeypatch.setattr(train_mod, "Generator", lambda: Generator(**TINY))
    cfg = _tiny_run_config(
        train_mod, steps=2, n_critic=1, norm_freeze=0.5, checkpoint_every=1, flux_weight=50.0
    )
    with pytest.raises(InputError, match="does not exist"):
        train_mod.train(tmp_path / "run", config=cfg, device="cpu", resume=True, progress=False)
    summary = train_mod.train(tmp_path / "run", config=cfg, device="cpu", progress=False)
    assert summary["steps"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and log[1]["norm_frozen"]
    assert any(r["flux"] > 0 for r in log)  # a black pair can give exactly 0
    with pytest.raises(OutputExistsError, match="resume=True") as refused:
        train_mod.train(tmp_path / "run", config=cfg, device="cpu", progress=False)
    from geo_ntl.cli._flags import cli_message

    assert "pass --resume to continue it or choose another --out-dir" in cli_message(refused.value)
    cfg3 = train_mod.TrainConfig(**{**cfg.__dict__, "steps": 3})
    summary = train_mod.train(
        tmp_path / "run", config=cfg3, device="cpu", resume=True, progress=False
    )
    assert summary["steps"] == 3
    gen = load_generator(tmp_path / "run" / "generator.pt")
    assert gen.config["base"] == 4


def test_train__fine_tunes_from_init_weights(tmp_path, monkeypatch):
    from geo_ntl.deblur import train as train_mod

    monkeypatch.setattr(train_mod, "Generator", lambda: Generator(**TINY))
    torch.manual_seed(SEED + 1)
    start = Generator(**TINY)
    for m in start.modules():  # stored norm statistics that calibration would overwrite
        if isinstance(m, torch.nn.InstanceNorm2d) and m.running_mean is not None:
            m.running_mean.fill_(0.25)
    save_weights(start, tmp_path / "start.pt", meta={})
    cfg = _tiny_run_config(
        train_mod,
        steps=1,
        adv_weight=0.0,
        lamp_weight=100.0,
        init_weights=str(tmp_path / "start.pt"),
    )
    train_mod.train(tmp_path / "run", config=cfg, device="cpu", progress=False)
    tuned = load_generator(tmp_path / "run" / "generator.pt")
    before, after = start.state_dict(), tuned.state_dict()
    means = [k for k in after if k.endswith("running_mean")]
    assert means and all(torch.equal(after[k], before[k]) for k in means)  # kept, frozen
    weights = [k for k in after if k.endswith("weight")]
    # one small step from the start: close to it, far closer than a fresh random init
    fresh = Generator(**TINY).state_dict()
    moved = sum(float((after[k] - before[k]).abs().sum()) for k in weights)
    spread = sum(float((fresh[k] - before[k]).abs().sum()) for k in weights)
    assert 0 < moved < 0.05 * spread
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert "lamp" in log
    with pytest.raises(ParameterError, match="lamp_weight"):
        train_mod.TrainConfig(lamp_weight=-1.0).check()


# --- command line --------------------------------------------------------------------------


@pytest.fixture
def scene_file(tmp_path):
    return write_cog(make_scene((3, 48, 48), seed=9), tmp_path / "scene.tif")


def test_cli_deblur__writes_cog(runner, scene_file, tiny_weights, tmp_path):
    out = tmp_path / "out.tif"
    res = runner(
        "deblur",
        scene_file,
        "--out",
        out,
        "--method",
        "gan-direct",
        "--weights",
        tiny_weights,
        "--no-enhance",
        "--tile",
        "32",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst, rasterio.open(scene_file) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.dtypes == src.dtypes and dst.shape == src.shape
        assert dst.tags()["GEO_NTL_STAGE"] == "deblur"
    res = runner(
        "deblur",
        scene_file,
        "--out",
        out,
        "--method",
        "gan-direct",
        "--weights",
        tiny_weights,
        "--no-enhance",
    )
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "--overwrite" in res.stderr


def test_cli_deblur__missing_weights(runner, scene_file, tmp_path):
    res = runner(
        "deblur", scene_file, "--out", tmp_path / "o.tif", "--weights", tmp_path / "missing.pt"
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error:") and "missing.pt" in res.stderr
    assert not (tmp_path / "o.tif").exists()


def test_cli_deblur__corrupt_weights(runner, scene_file, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    res = runner(
        "deblur",
        scene_file,
        "--out",
        tmp_path / "o.tif",
        "--method",
        "gan-direct",
        "--weights",
        bad,
    )
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "corrupt" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_deblur__two_band_scene(runner, tmp_path, tiny_weights):
    path = write_cog(make_scene((2, 32, 32), seed=10), tmp_path / "two.tif")
    res = runner(
        "deblur",
        path,
        "--out",
        tmp_path / "o.tif",
        "--method",
        "gan-direct",
        "--weights",
        tiny_weights,
    )
    assert res.exit_code == 2 and "got 2" in res.stderr
    assert not (tmp_path / "o.tif").exists()


def test_cli_train__resume_without_checkpoint(runner, tmp_path):
    res = runner("train", "--out-dir", tmp_path / "run", "--resume", "--no-progress")
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "--resume" in res.stderr


def test_cli_train__missing_init_weights_fails_before_making_pairs(runner, tmp_path):
    run = tmp_path / "run"
    res = runner("train", "--out-dir", run, "--init-weights", tmp_path / "no.pt", "--no-progress")
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "no.pt" in res.stderr
    assert not (run / "pool.npz").exists()


def test_cli_deblur__enhanced_output_matches_library_and_gan_runs_once(
    runner, scene_file, tiny_weights, tmp_path, monkeypatch
):
    """The command stages the GAN output on disk: the enhancer's two passes do not rerun the GAN."""
    import geo_ntl.deblur.inference as inference
    from geo_ntl.io import open_scene

    expected = deblur(open_scene(scene_file), weights=tiny_weights, device="cpu", tile=32).values
    calls = []
    original = inference._Runner.__call__

    def counting(self, block, placement=None):
        calls.append(block.shape)
        return original(self, block, placement)

    monkeypatch.setattr(inference._Runner, "__call__", counting)
    out = tmp_path / "clean.tif"
    res = runner(
        "deblur", scene_file, "--out", out, "--method", "gan-direct", "--weights", tiny_weights, "--tile", "32",
        "--device", "cpu", "--workers", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    # the scene is smaller than the halo: one block, run once (not once per enhancer pass)
    assert len(calls) == 1
    got = open_scene(out).values
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not list(tmp_path.glob(".geo_ntl-gan-*"))  # the staging folder is gone


def test_cli_deblur__other_weights_under_the_same_name_are_another_job(
    runner, scene_file, tmp_path
):
    from geo_ntl.deblur.weights import sha256sum

    weights, out = tmp_path / "generator.pt", tmp_path / "out.tif"
    args = ("deblur", scene_file, "--out", out, "--method", "gan-direct", "--weights", weights, "--no-enhance",
            "--tile", "32", "--device", "cpu", "--workers", "0")  # fmt: skip
    save_weights(_tiny_generator(seed=1), weights)
    assert runner(*args).exit_code == 0
    before = out.stat().st_mtime_ns
    kept = runner(*args)
    assert kept.exit_code == 0 and "kept 1 of 1" in kept.stderr
    assert out.stat().st_mtime_ns == before
    save_weights(_tiny_generator(seed=2), weights, overwrite=True)  # retrained, same file name
    refused = runner(*args)
    assert refused.exit_code == 2 and "other parameters (weights_sha256)" in refused.stderr
    assert out.stat().st_mtime_ns == before
    redone = runner(*args, "--overwrite")
    assert redone.exit_code == 0, redone.stderr
    with rasterio.open(out) as src:
        assert src.tags()["GEO_NTL_WEIGHTS_SHA256"] == sha256sum(weights)
    assert out.stat().st_mtime_ns != before


def test_cli_deblur__output_that_is_the_weights_file(runner, scene_file, tiny_weights, tmp_path):
    # A weights file whose name passes the output-suffix check, given under another spelling.
    weights = tmp_path / "model.tif"
    weights.write_bytes(tiny_weights.read_bytes())
    alias = tmp_path / ".." / tmp_path.name / weights.name
    res = runner("deblur", scene_file, "--out", alias, "--method", "gan-direct", "--weights", weights, "--overwrite",
                 "--no-enhance", "--device", "cpu")  # fmt: skip
    assert res.exit_code == 2 and "is the weights file" in res.stderr
    assert weights.read_bytes() == tiny_weights.read_bytes()


def test_refresh_pool__replaces_a_quarter_round_robin_and_repeats():
    from geo_ntl.deblur import blur_transfer
    from geo_ntl.deblur.train import TrainConfig, _load_stats

    stats = _load_stats(TrainConfig())
    pool = blur_transfer.make_pool(n_cities=4, size=96, seed=3, stats=stats)
    one = blur_transfer.refresh_pool(pool, 1, size=96, seed=3, stats=stats)
    two = blur_transfer.refresh_pool(one, 2, size=96, seed=3, stats=stats)
    changed = [
        i for i in range(len(pool.blurred)) if not np.array_equal(one.blurred[i], pool.blurred[i])
    ]
    assert changed == [0] and one.generation == 1  # a quarter of 4 cities; black pairs kept
    assert np.array_equal(two.blurred[0], one.blurred[0]) and not np.array_equal(
        two.sharp[1], one.sharp[1]
    )
    again = blur_transfer.refresh_pool(pool, 1, size=96, seed=3, stats=stats)
    assert np.array_equal(again.blurred, one.blurred) and np.array_equal(again.sharp, one.sharp)


def test_train__refreshed_pool_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    from geo_ntl.deblur import train as train_mod
    from geo_ntl.deblur.blur_transfer import PairPool

    monkeypatch.setattr(train_mod, "Generator", lambda: Generator(**TINY))
    options = {"n_cities": 4, "n_critic": 1, "adv_weight": 0.0, "norm_freeze": 0.0}
    cfg = _tiny_run_config(train_mod, steps=5, checkpoint_every=1, refresh_every=2, **options)
    train_mod.train(tmp_path / "whole", config=cfg, device="cpu", progress=False)
    assert PairPool.load(tmp_path / "whole" / "pool.npz").generation == 2  # at steps 2 and 4

    save = train_mod._save_checkpoint

    def stop_after_step_2(run, path):  # killed after the checkpoint, before the refresh
        save(run, path)
        if run.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save_checkpoint", stop_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tmp_path / "split", config=cfg, device="cpu", progress=False)
    assert PairPool.load(tmp_path / "split" / "pool.npz").generation == 0
    monkeypatch.setattr(train_mod, "_save_checkpoint", save)
    train_mod.train(tmp_path / "split", config=cfg, device="cpu", resume=True, progress=False)
    a = load_generator(tmp_path / "whole" / "generator.pt").state_dict()
    b = load_generator(tmp_path / "split" / "generator.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # without refreshes the pool stays as it was made, and training differs
    fixed = train_mod.TrainConfig(**{**cfg.__dict__, "refresh_every": 0})
    train_mod.train(tmp_path / "fixed", config=fixed, device="cpu", progress=False)
    c = load_generator(tmp_path / "fixed" / "generator.pt").state_dict()
    assert PairPool.load(tmp_path / "fixed" / "pool.npz").generation == 0
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_read_run_config__runs_from_before_refreshes_keep_a_fixed_pool(tmp_path):
    from dataclasses import asdict

    from geo_ntl.deblur import train as train_mod

    stored = asdict(train_mod.TrainConfig())
    del stored["refresh_every"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert train_mod.read_run_config(tmp_path).refresh_every == 0


def test_make_pool__half_the_cities_jpeg_compressed_from_their_own_stream():
    from geo_ntl.deblur import blur_transfer
    from geo_ntl.deblur.real_stats import load_shipped_stats

    qualities = [blur_transfer._jpeg_quality(SEED * 100_000 + i) for i in range(200)]
    compressed = [q for q in qualities if q is not None]
    assert 0.4 < len(compressed) / 200 < 0.6
    assert min(compressed) >= 60 and max(compressed) <= 95
    pool = blur_transfer.make_pool(n_cities=4, size=64, seed=SEED, stats=load_shipped_stats())
    assert [m["jpeg_quality"] for m in pool.meta[:4]] == qualities[:4]
    # a round trip at quality 60 changes the pixels a little; None leaves the image alone
    img = pool.sharp[0]
    jpeg = blur_transfer.jpeg_roundtrip(img, 60)
    assert blur_transfer.jpeg_roundtrip(img, None) is img
    assert 0 < np.abs(jpeg.astype(int) - img).mean() < 10


@pytest.mark.parametrize("kind", ["mosaic", "msk", "alpha"])
def test_cli_deblur__masked_pixels_stay_nodata(runner, tiny_weights, tmp_path, kind):
    """The gaps of a masked scene (geo_ntl's own mosaics among them) are not black pixels."""
    from conftest import write_masked_scene

    from geo_ntl._raster import invalid_pixels

    scene, hidden = write_masked_scene(tmp_path / "masked.tif", kind, shape=(64, 64))
    out = tmp_path / "out.tif"
    res = runner("deblur", scene, "--out", out, "--method", "gan-direct", "--weights", tiny_weights, "--no-enhance",
                 "--tile", "32", "--device", "cpu", "--workers", "0")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst:
        assert dst.count == 3
        values, nodata = dst.read(), dst.nodata
    assert nodata is not None
    np.testing.assert_array_equal(invalid_pixels(values, nodata), hidden)


def test_cli_deblur__saturation_is_a_parameter_of_the_job(runner, tiny_weights, tmp_path):
    scene = write_cog(make_scene((1, 48, 48), dtype="float32", seed=9), tmp_path / "rad.tif")
    out = tmp_path / "out.tif"
    fast = (
        "--method",
        "gan-direct",
        "--weights",
        tiny_weights,
        "--tile",
        "32",
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    res = runner("deblur", scene, "--out", out, "--saturation", "300", *fast)
    assert res.exit_code == 0, res.stderr
    with rasterio.open(out) as dst:
        assert json.loads(dst.tags()["GEO_NTL_PARAMS"])["saturation"] == 300.0
    physics = runner("deblur", scene, "--out", tmp_path / "p.tif", "--method", "physics",
                     "--saturation", "300")  # fmt: skip
    assert physics.exit_code == 2 and "--saturation" in physics.stderr


# --- out of device memory ------------------------------------------------------------------


class _FitsBatchesOf(torch.nn.Module):
    """Stand-in generator: the identity, out of memory on batches larger than ``most``."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most, self.batches = most, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if x.shape[0] > self.most:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")
        return x


def _stand_in(monkeypatch, model):
    from geo_ntl.deblur import inference, weights

    monkeypatch.setattr(weights, "get_model", lambda *a, **k: model)
    monkeypatch.setattr(inference, "_FITTING", {})


def test_deblur_array__out_of_memory_retries_in_smaller_batches(monkeypatch):
    image = make_scene((3, 64, 64), seed=5).values
    model = _FitsBatchesOf(most=1)
    _stand_in(monkeypatch, model)
    out = deblur_array(image, device="cpu", tile=16, halo=0, batch_size=4, conserve=False)
    np.testing.assert_array_equal(out, image)  # every tile computed, once, in place
    # 16 tiles: the first batch of 4 ran out, then halves; the next batches start at what fitted.
    assert model.batches[:3] == [4, 2, 1] and set(model.batches[3:]) == {1}
    assert sum(b for b in model.batches if b <= 1) == 16


def test_deblur__out_of_memory_on_one_window_names_the_tile(monkeypatch, tmp_path, runner):
    from geo_ntl.exceptions import DeviceMemoryError

    _stand_in(monkeypatch, _FitsBatchesOf(most=0))
    scene = make_scene((3, 64, 64), seed=5, chunks=32)
    with pytest.raises(DeviceMemoryError, match="out of memory on one 32 x 32 px window.*`tile`"):
        deblur(scene, device="cpu", tile=32, halo=0).compute()
    path = write_cog(scene, tmp_path / "scene.tif")
    res = runner("deblur", path, "--out", tmp_path / "out.tif", "--tile", "32", "--workers", "0",
                 "--method", "gan-direct")  # fmt: skip
    assert res.exit_code == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: the device ran out of memory") and "lower --tile" in line
    assert "unexpected" not in line
    assert not (tmp_path / "out.tif").exists()


# --- checkpoints written on a GPU -------------------------------------------------------------


def test_restore_checkpoint__random_states_of_a_checkpoint_mapped_to_another_device(
    tmp_path, monkeypatch
):
    # A checkpoint loaded with map_location=<the GPU> had its RNG states moved there, and
    # torch.set_rng_state refused them ("corrupt checkpoint"). The meta device stands in for
    # the GPU here: the states must come back as CPU byte tensors whatever the device.
    from geo_ntl.deblur import train as train_mod

    monkeypatch.setattr(train_mod, "Generator", lambda: Generator(**TINY))
    cfg = _tiny_run_config(train_mod)
    cpu = torch.device("cpu")
    run = train_mod._new_run(cfg, cpu, None)
    run.rng.random(3)
    run.step = 7
    torch.manual_seed(123)
    path = tmp_path / "checkpoint.pt"
    train_mod._save_checkpoint(run, path)
    expected = (torch.rand(4), torch.rand(2, generator=run.gp_gen), run.rng.random(2))

    resumed = train_mod._new_run(cfg, cpu, None)
    torch.manual_seed(0)
    train_mod._restore_checkpoint(resumed, path, torch.device("meta"))
    assert resumed.step == 7
    got = (torch.rand(4), torch.rand(2, generator=resumed.gp_gen), resumed.rng.random(2))
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    np.testing.assert_array_equal(got[2], expected[2])
    for a, b in zip(resumed.gen.state_dict().values(), run.gen.state_dict().values(), strict=True):
        assert a.device == cpu
        torch.testing.assert_close(a, b)
