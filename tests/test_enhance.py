"""Tests of the ASM enhancer (geo_ntl.enhance) and the ``geo-ntl enhance`` command."""

from __future__ import annotations

import numpy as np
import pytest

from geo_ntl.enhance import ASMParams, enhance, enhance_array, halo_depth
from geo_ntl.exceptions import (
    AllNoDataError,
    DimensionError,
    ParameterError,
    TilingError,
    UnsupportedRasterError,
)
from geo_ntl.testing import make_scene

#: Cheaper parameters for tests that only check plumbing (smaller halo, fewer steps).
FAST = {"slic_iterations": 1, "superpixel_size": 8, "m_sweeps": 2, "iterations": 1}


def dark_rgb(shape=(3, 48, 40), seed=0, dtype="uint8", top=50):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    base = top * (0.3 + 0.7 * (xx / shape[2]))[None] * np.array([1.0, 0.8, 0.6])[:, None, None]
    return np.clip(base + rng.normal(0, 2, shape), 0, None).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"], ids=["u8", "u16", "f32"])
def test_enhance_array__keeps_shape_and_dtype(dtype):
    img = dark_rgb(dtype=dtype)
    out = enhance_array(img, device="cpu", params=FAST)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.isfinite(out.astype(np.float64)).all()


def test_enhance_array__brightens_dark_image_without_colour_cast():
    img = dark_rgb()
    out = enhance_array(img, device="cpu")
    assert out.mean() > 1.5 * img.mean()
    ratio_in = img[0].mean() / img[2].mean()
    ratio_out = out[0].astype(float).mean() / out[2].astype(float).mean()
    assert abs(np.log(ratio_out / ratio_in)) < 0.35  # channel order kept, no strong cast


def test_enhance_array__single_band_2d_and_float32_output():
    img = dark_rgb()[0]
    out = enhance_array(img, device="cpu", params=FAST, dtype="float32")
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


def test_enhance_array__uint16_full_range():
    img = dark_rgb(dtype="uint16", top=50)
    img[0, 0, 0] = 65535
    out = enhance_array(img, device="cpu", params=FAST)
    assert out.dtype == np.uint16 and int(out.max()) <= 65535 and np.isfinite(out).all()


@pytest.mark.parametrize("value", [0, 255, 77], ids=["black", "white", "constant"])
def test_enhance_array__flat_images_stay_flat(value):
    img = np.full((3, 20, 24), value, dtype=np.uint8)
    out = enhance_array(img, device="cpu", params=FAST)
    assert out.dtype == np.uint8
    assert np.ptp(out.astype(int), axis=(1, 2)).max() <= 1  # uniform in, uniform out


def test_enhance_array__one_pixel():
    out = enhance_array(np.array([[[40]], [[30]], [[20]]], dtype=np.uint8), device="cpu")
    assert out.shape == (3, 1, 1) and out.dtype == np.uint8


def test_enhance_array__nan_and_inf_are_nodata():
    img = dark_rgb(dtype="float32") / 255.0
    img[:, 5, 5] = np.nan
    img[1, 10, 10] = np.inf
    out = enhance_array(img.astype(np.float32), device="cpu", params=FAST)
    assert np.isnan(out[:, 5, 5]).all() and np.isnan(out[:, 10, 10]).all()
    assert np.isfinite(np.delete(out.reshape(3, -1), [5 * 40 + 5, 10 * 40 + 10], axis=1)).all()


def test_enhance_array__nodata_kept():
    img = dark_rgb()
    img[:, :6, :6] = 0
    out = enhance_array(img, device="cpu", params=FAST, nodata=0)
    assert (out[:, :6, :6] == 0).all() and (out[:, 6:, 6:] > 0).mean() > 0.99


def test_enhance_array__all_nodata_error():
    with pytest.raises(AllNoDataError, match="no valid pixel"):
        enhance_array(np.full((3, 8, 8), np.nan, dtype=np.float32), device="cpu")


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((5, 8, 8), np.uint8), DimensionError, "1 to 4 bands"),
        (np.zeros((8,), np.uint8), DimensionError, "expected a"),
        (np.zeros((3, 0, 8), np.uint8), DimensionError, "empty"),
        (np.zeros((3, 8, 8), bool), UnsupportedRasterError, "bool"),
    ],
    ids=["five-bands", "1d", "empty", "bool"],
)
def test_enhance_array__bad_input(image, error, match):
    with pytest.raises(error, match=match):
        enhance_array(image, device="cpu")


def test_asm_params__defaults_are_the_papers():
    p = ASMParams()
    assert (p.lambda1, p.lambda2, p.lambda3, p.lambda4) == (1.0, 1.0, 0.5, 0.3)
    assert (p.mu1, p.mu2, p.mu3, p.iterations) == (3.0, 3.0, 3.0, 3)
    assert (p.alpha, p.b, p.sigma, p.alpha1, p.p, p.epsilon) == (0.1, 0.5, 0.3, 0.1, 0.15, 0.5)
    assert p.asd_fraction == pytest.approx(1 / 50)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"nope": 1}, "unknown ASM parameter 'nope'"),
        ({"sigma": -1.0}, "sigma"),
        ({"iterations": 2.5}, "iterations"),
        ({"mu1": 0}, "mu1"),
        ({"superpixel_size": 10}, "multiple"),
    ],
    ids=["unknown", "negative", "non-integer", "zero", "not-multiple"],
)
def test_asm_params__validation(values, match):
    with pytest.raises(ParameterError, match=match):
        ASMParams.from_mapping(values)


def test_halo_depth__covers_support_and_is_rounded():
    assert halo_depth(ASMParams()) % 16 == 0
    assert halo_depth(ASMParams.from_mapping(FAST)) < halo_depth(ASMParams())


def test_enhance__tiled_matches_whole():
    scene = make_scene((3, 300, 260), seed=1, chunks=128)
    tiled = enhance(scene, tile=128, device="cpu").values
    whole = enhance_array(scene.values, device="cpu")
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and diff.mean() <= 0.1


def test_enhance__tiled_matches_whole_when_tiles_are_much_smaller_than_scene():
    params = ASMParams.from_mapping(FAST)
    depth = halo_depth(params)
    scene = make_scene((3, 4 * depth, 3 * depth + 20), seed=3, chunks=depth)
    tiled = enhance(scene, tile=depth, device="cpu", params=params).values
    whole = enhance_array(scene.values, device="cpu", params=params)
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and diff.mean() <= 0.1


def test_enhance__keeps_crs_transform_and_nodata():
    scene = make_scene((3, 40, 36), seed=4, nodata=0, chunks=20)
    data = scene.values.copy()
    data[:, :5, :5] = 0
    scene = scene.copy(data=data)
    out = enhance(scene, tile=32, device="cpu", params=FAST)
    assert out.rio.crs == scene.rio.crs and out.rio.transform() == scene.rio.transform()
    assert out.rio.nodata == 0 and out.dtype == scene.dtype and out.dims == scene.dims
    values = out.values
    assert (values[:, :5, :5] == 0).all() and (values[:, 5:, 5:] > 0).mean() > 0.99


def test_enhance__float32_output_2d_scene():
    scene = make_scene((40, 36), seed=5, chunks=20)
    out = enhance(scene, tile=32, device="cpu", params=FAST, dtype="float32")
    assert out.dims == ("y", "x") and out.dtype == np.float32 and np.isfinite(out.values).all()


def test_enhance__bad_tile():
    with pytest.raises(ParameterError, match="tile"):
        enhance(make_scene((3, 16, 16)), tile=4, device="cpu")


def test_cli_enhance__writes_cog(tmp_path, rgb_scene_file, runner):
    from geo_ntl.io import open_scene

    out = tmp_path / "bright.tif"
    res = runner(
        "enhance",
        rgb_scene_file,
        "--out",
        out,
        "--param",
        "iterations=1",
        "--tile",
        "32",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.stderr
    src, dst = open_scene(rgb_scene_file), open_scene(out)
    assert dst.shape == src.shape and dst.dtype == src.dtype and dst.rio.crs == src.rio.crs
    assert float(dst.mean()) > float(src.mean())


def test_cli_enhance__error_lines(tmp_path, rgb_scene_file, runner):
    res = runner("enhance", rgb_scene_file, "--out", tmp_path / "o.tif", "--param", "bogus=1")
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "bogus" in res.stderr
    (tmp_path / "exists.tif").write_bytes(b"x")
    res = runner("enhance", rgb_scene_file, "--out", tmp_path / "exists.tif")
    assert res.exit_code == 2 and "--overwrite" in res.stderr


def test_enhance__halo_option():
    scene = make_scene((3, 64, 64), seed=6, chunks=32)
    out = enhance(scene, tile=32, device="cpu", params=FAST, halo=8)
    assert out.shape == scene.shape and out.dtype == scene.dtype
    with pytest.raises(ParameterError, match="halo"):
        enhance(scene, tile=32, device="cpu", halo=-1)


@pytest.mark.parametrize("cell", [2, 3, 4])
@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 1), (2, 16, 33)], ids=["7x5", "1x1", "16x33"])
def test_upsample__matches_torch_bilinear(cell, shape):
    import torch
    import torch.nn.functional as F

    from geo_ntl.enhance._ops import upsample

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x[None], scale_factor=cell, mode="bilinear", align_corners=False)[0]
    assert torch.allclose(upsample(x, cell), ref, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.6, 1.25, 2.5])
def test_gaussian__matches_convolution_of_symmetric_padding(sigma):
    import torch
    import torch.nn.functional as F

    from geo_ntl.enhance._ops import gaussian, gaussian_radius, gaussian_weights, sym_pad

    x = torch.rand((2, 13, 11), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    r = gaussian_radius(sigma)
    k = torch.tensor(gaussian_weights(sigma), dtype=torch.float64)
    ref = F.conv2d(sym_pad(x[:, None], r, r), (k[:, None] * k[None, :])[None, None])[:, 0]
    assert torch.allclose(gaussian(x, sigma), ref, atol=1e-12)


@pytest.mark.parametrize("radius", [1, 3, 9])  # slices (<= BOX_SLICE_MAX) and cumsum paths
def test_box__is_the_window_mean(radius):
    import torch
    import torch.nn.functional as F

    from geo_ntl.enhance._ops import box, sym_pad

    x = torch.rand((1, 12, 10), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    size = 2 * radius + 1
    ref = F.avg_pool2d(sym_pad(x, radius, radius)[None], size, stride=1)[0]
    assert torch.allclose(box(x, radius), ref, atol=1e-12)


@pytest.mark.parametrize("with_nan", [False, True], ids=["finite", "nan"])
def test_block_nanmean__matches_numpy(with_nan):
    import warnings

    from geo_ntl.enhance.stats import _block_nanmean_np

    rng = np.random.default_rng(3)
    x = rng.random((3, 37, 41)).astype(np.float32)
    if with_nan:
        x[:, :6, :8] = np.nan  # one whole block empty
        x[1, -1, -1] = np.nan
    by, bx = 6, 8
    ny, nx = -(-37 // by), -(-41 // bx)
    xp = np.pad(x, [(0, 0), (0, ny * by - 37), (0, nx * bx - 41)], constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmean(xp.reshape(3, ny, by, nx, bx), axis=(-3, -1))
    np.testing.assert_allclose(_block_nanmean_np(x, by, bx), ref, atol=1e-6)


def test_chebyshev__solves_the_hr_system():
    import torch

    from geo_ntl.enhance._ops import laplacian
    from geo_ntl.enhance.solver import chebyshev

    p = ASMParams()
    h, w = 6, 5
    gen = torch.Generator().manual_seed(4)
    b = torch.rand((h, w), dtype=torch.float64, generator=gen)

    def apply_a(v):
        return p.lambda1 * v + p.mu3 * laplacian(v)

    eye = torch.eye(h * w, dtype=torch.float64)
    dense = torch.stack([apply_a(e.view(h, w)).reshape(-1) for e in eye], 1)
    exact = torch.linalg.solve(dense, b.reshape(-1)).view(h, w)
    x = torch.zeros_like(b)
    x = chebyshev(apply_a, b - apply_a(x), x, lo=p.lambda1, hi=p.lambda1 + 8 * p.mu3, steps=60)
    assert torch.allclose(x, exact, atol=1e-8)


def test_hqs__bands_are_independent():
    import torch

    from geo_ntl.enhance.solver import hqs

    gen = torch.Generator().manual_seed(5)
    t = torch.rand((3, 20, 24), generator=gen) * 0.5
    u = t * 0.7
    z = torch.rand((3, 20, 24), generator=gen)
    h0 = 1 + 0.2 * torch.rand((20, 24), generator=gen)
    r0 = (t / h0).clamp(0, 1)
    both = hqs(t, u, z, h0, r0, ASMParams())
    one = hqs(t[1:2], u[1:2], z[1:2], h0, r0[1:2], ASMParams())
    assert torch.allclose(both[1:2], one, atol=1e-6)
    assert both.min() >= 0 and both.max() <= 1 and not torch.equal(both, t.clamp(0, 1))


def test_enhance_block__region_matches_whole_block_inside_region():
    import torch

    from geo_ntl.enhance.api import _to_float
    from geo_ntl.enhance.core import enhance_block
    from geo_ntl.enhance.stats import global_stats

    params = ASMParams.from_mapping(FAST)
    img = _to_float(dark_rgb(shape=(3, 72, 80), seed=2), None)
    cpu = torch.device("cpu")
    stats = global_stats(img, dtype=np.dtype("uint8"), params=params, device=cpu)
    full = enhance_block(img, origin=(0, 0), stats=stats, params=params, device=cpu)
    region = (20, 50, 24, 56)
    part = enhance_block(img, origin=(0, 0), stats=stats, params=params, device=cpu, region=region)
    inside = (slice(None), slice(20, 50), slice(24, 56))
    np.testing.assert_allclose(part[inside], full[inside], atol=1e-3)
    assert (part[:, :20] == 0).all() and (part[:, 50:] == 0).all()


@pytest.mark.parametrize("region", [None, (20, 50, 24, 56)])
def test_enhance_block__solver_and_guard_pieces_give_the_values_of_one_call(monkeypatch, region):
    import torch

    import geo_ntl.enhance.core as core
    from geo_ntl.enhance.api import _to_float
    from geo_ntl.enhance.stats import global_stats

    params = ASMParams.from_mapping(FAST)
    img = _to_float(dark_rgb(shape=(3, 72, 80), seed=3), None)
    cpu = torch.device("cpu")
    stats = global_stats(img, dtype=np.dtype("uint8"), params=params, device=cpu)
    results = {}
    for piece in (None, 16, 7):
        monkeypatch.setattr(core, "CPU_SOLVER_PIECE", piece)
        results[piece] = core.enhance_block(
            img, origin=(0, 0), stats=stats, params=params, device=cpu, region=region
        )
    assert np.array_equal(results[16], results[None])
    assert np.array_equal(results[7], results[None])


def test_enhance_block__region_outside_the_block_is_refused():
    import torch

    from geo_ntl.enhance.api import _to_float
    from geo_ntl.enhance.core import enhance_block
    from geo_ntl.enhance.stats import global_stats

    params = ASMParams.from_mapping(FAST)
    img = _to_float(dark_rgb(shape=(3, 24, 20)), None)
    cpu = torch.device("cpu")
    stats = global_stats(img, dtype=np.dtype("uint8"), params=params, device=cpu)
    with pytest.raises(TilingError, match="not inside the block"):
        enhance_block(
            img, origin=(0, 0), stats=stats, params=params, device=cpu, region=(5, 30, 0, 8)
        )


def test_enhance_block__does_not_modify_its_input():
    import torch

    from geo_ntl.enhance.api import _to_float
    from geo_ntl.enhance.core import enhance_block
    from geo_ntl.enhance.stats import global_stats

    params = ASMParams.from_mapping(FAST)
    img = _to_float(dark_rgb(shape=(3, 24, 20)), None)
    img[:, 3, 4] = np.nan
    before = img.copy()
    cpu = torch.device("cpu")
    stats = global_stats(img, dtype=np.dtype("uint8"), params=params, device=cpu)
    enhance_block(img, origin=(0, 0), stats=stats, params=params, device=cpu)
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("dtype, passes", [("uint8", 1), ("uint16", 2)])
def test_global_stats__lazy_scene_read_once_when_white_level_is_known(dtype, passes):
    import dask.array as dsa
    import torch

    from geo_ntl.enhance.api import _to_float
    from geo_ntl.enhance.stats import global_stats

    params = ASMParams.from_mapping(FAST)
    img = _to_float(dark_rgb(shape=(3, 96, 80), seed=4), None)
    reads = []

    def read(block: np.ndarray) -> np.ndarray:
        if block.size:  # dask also calls it once on an empty array for its meta
            reads.append(block.shape)
        return block

    lazy = dsa.from_array(img, chunks=(3, 32, 40)).map_blocks(read, dtype=img.dtype)
    n_chunks = 3 * 2
    cpu = torch.device("cpu")
    eager = global_stats(img, dtype=np.dtype(dtype), params=params, device=cpu)
    streamed = global_stats(lazy, dtype=np.dtype(dtype), params=params, device=cpu)
    assert len(reads) == passes * n_chunks
    assert streamed.scale == eager.scale and streamed.fill == pytest.approx(eager.fill, rel=1e-5)
    np.testing.assert_allclose(streamed.asd, eager.asd, atol=1e-5)


def test_enhance__out_of_device_memory_is_an_error_naming_the_tile(monkeypatch, tmp_path, runner):
    import torch

    from geo_ntl.enhance import api
    from geo_ntl.exceptions import DeviceMemoryError
    from geo_ntl.io import write_cog

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(api, "enhance_block", out_of_memory)
    scene = make_scene((3, 64, 64), seed=5, chunks=32)
    with pytest.raises(DeviceMemoryError, match="tile of the enhancer.*lower `tile`"):
        api.enhance(scene, device="cpu", tile=32).compute()
    path = write_cog(scene, tmp_path / "scene.tif")
    res = runner("enhance", path, "--out", tmp_path / "out.tif", "--workers", "0")
    assert res.exit_code == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: the device ran out of memory") and "lower --tile" in line
    assert not (tmp_path / "out.tif").exists()


def test_enhance__tiles_take_turns_on_one_gpu_under_the_threaded_scheduler(monkeypatch):
    # dask's threaded scheduler runs one tile per core; on one GPU each would take gigabytes.
    import dask
    import torch

    from geo_ntl import _device
    from geo_ntl.enhance import api
    from geo_ntl.testing import AtOnce

    probe = AtOnce()

    def block(pixels, **kwargs):
        assert kwargs["device"].type == "cuda"  # resolved where the tile runs
        probe.visit()
        return pixels

    resolve = _device.resolve_device
    monkeypatch.setattr(api, "enhance_block", block)
    monkeypatch.setattr(
        _device,
        "resolve_device",
        lambda d="auto": torch.device("cuda") if d == "cuda" else resolve(d),
    )
    monkeypatch.setattr(_device, "plan_device", lambda d="auto": _device.DevicePlan("cuda", "fp32"))
    stats = api.global_stats  # the scene-wide pass in this process: on the CPU here
    monkeypatch.setattr(
        api, "global_stats", lambda x, **k: stats(x, **{**k, "device": resolve("cpu")})
    )
    scene = make_scene((3, 96, 96), seed=5, chunks=32)
    with dask.config.set(scheduler="threads", num_workers=4):
        api.enhance(scene, tile=32, halo=0, device="cuda").compute()
    assert probe.most == 1
