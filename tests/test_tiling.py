"""The tiled engine reproduces the whole-image result exactly."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from geo_ntl.exceptions import DimensionError, TilingError
from geo_ntl.testing import make_scene
from geo_ntl.tiling import TilePlacement, apply_tiled, apply_whole, rechunk_for_halo


def _local_operator(halo: int, seed: int):
    """A random correlation kernel of radius `halo` plus a max filter: support exactly `halo`."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(1, 2 * halo + 1, 2 * halo + 1))

    def func(block: np.ndarray) -> np.ndarray:
        values = block.astype(np.float64)
        return ndimage.correlate(values, kernel, mode="constant") + ndimage.maximum_filter(
            values, size=(1, 2 * halo + 1, 2 * halo + 1), mode="constant"
        )

    return func


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    bands=st.sampled_from([1, 3]),
    chunk_y=st.integers(1, 40),
    chunk_x=st.integers(1, 40),
    halo=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_apply_tiled__equals_whole_image(height, width, bands, chunk_y, chunk_x, halo, seed):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (bands, height, width)).astype("uint8")
    scene = make_scene((bands, height, width))
    scene = scene.copy(data=dsa.from_array(array, chunks=(bands, chunk_y, chunk_x)))
    func = _local_operator(halo, seed)
    tiled = apply_tiled(scene, func, halo=halo, dtype="float64").values
    whole = apply_whole(array, func, halo=halo)
    np.testing.assert_array_equal(tiled, whole)


@settings(max_examples=20, deadline=None)
@given(
    height=st.integers(1, 60),
    width=st.integers(1, 60),
    chunk=st.integers(1, 25),
    halo=st.integers(0, 7),
)
def test_apply_tiled__placement_locates_every_block(height, width, chunk, halo):
    scene = make_scene((1, height, width), chunks=chunk)

    def scene_position(block: np.ndarray, placement: TilePlacement) -> np.ndarray:
        rows, cols = np.indices(block.shape[1:])
        return np.stack([rows + placement.origin[0], cols + placement.origin[1]])

    for boundary in ("reflect", "none"):
        out = apply_tiled(
            scene,
            scene_position,
            halo=halo,
            dtype="int64",
            bands_out=2,
            placement=True,
            boundary=boundary,
        ).values
        np.testing.assert_array_equal(out, np.indices((height, width)))


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    chunk_y=st.integers(1, 40),
    chunk_x=st.integers(1, 40),
    halo=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_apply_tiled__no_boundary_equals_func_on_whole_image(
    height, width, chunk_y, chunk_x, halo, seed
):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (3, height, width)).astype("uint8")
    scene = make_scene((3, height, width))
    scene = scene.copy(data=dsa.from_array(array, chunks=(3, chunk_y, chunk_x)))
    func = _local_operator(halo, seed)
    seen: list[tuple[int, ...]] = []

    def recording(block: np.ndarray, placement: TilePlacement) -> np.ndarray:
        seen.append((block.shape[1], block.shape[2]))
        return func(block)

    tiled = apply_tiled(
        scene, recording, halo=halo, dtype="float64", boundary="none", placement=True
    ).values
    np.testing.assert_array_equal(tiled, func(array))
    np.testing.assert_array_equal(tiled, apply_whole(array, func, halo=halo, boundary="none"))
    # Nothing beyond the scene is computed: the blocks cover the scene plus interior halos only.
    assert all(h <= height and w <= width for h, w in seen)


def test_apply_tiled__one_task_per_tile():
    # The halo is cut from the neighbouring chunks inside the tile's own task: no slicing and
    # concatenation tasks (each costs a scheduler round trip on dask.distributed).
    scene = make_scene((3, 96, 80), chunks=32)
    out = apply_tiled(scene, lambda b: b, halo=5, name="probe").data
    own_tasks = [key for key in dict(out.dask) if str(key[0]).startswith("probe")]
    assert len(own_tasks) == 3 * 3
    assert len(dict(out.dask)) == len(dict(scene.data.dask)) + 3 * 3


def test_apply_tiled__keeps_georeferencing(rgb_scene_any):
    out = apply_tiled(rgb_scene_any, lambda b: b // 2, halo=3)
    assert out.rio.crs == rgb_scene_any.rio.crs
    assert out.rio.transform() == rgb_scene_any.rio.transform()
    xr.testing.assert_equal(out.x, rgb_scene_any.x)
    np.testing.assert_array_equal(out.values, rgb_scene_any.values // 2)


def test_apply_tiled__is_lazy():
    calls = []
    scene = make_scene((3, 64, 64), chunks=32)
    out = apply_tiled(scene, lambda b: calls.append(1) or b, halo=2)
    assert calls == [] and isinstance(out.data, dsa.Array)


def test_apply_tiled__changes_band_count_and_dtype():
    scene = make_scene((3, 50, 40), chunks=16)
    out = apply_tiled(
        scene, lambda b: b.mean(axis=0, keepdims=True), halo=1, bands_out=1, dtype="float32"
    )
    assert out.shape == (1, 50, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out.values[0], scene.values.mean(axis=0), rtol=1e-6)


def test_apply_tiled__nodata_stays_nodata():
    scene = make_scene((3, 40, 40), nodata=0, chunks=16)
    data = scene.values.copy()
    data[:, 5:9, 10:30] = 0
    scene = scene.copy(data=data)
    out = apply_tiled(scene, lambda b: np.full_like(b, 9), halo=4).values
    assert (out[:, 5:9, 10:30] == 0).all()
    assert (out[:, 20:, :] == 9).all()


def test_apply_tiled__two_dimensional_input():
    scene = make_scene((30, 20), chunks=8)
    out = apply_tiled(scene, lambda b: b + 1, halo=2)
    assert out.dims == ("y", "x")
    np.testing.assert_array_equal(out.values, scene.values + 1)


def test_apply_tiled__tile_smaller_than_halo_one_pixel():
    scene = make_scene((3, 1, 1))
    out = apply_tiled(scene, lambda b: ndimage.uniform_filter(b.astype(float), (1, 9, 9)), halo=4)
    np.testing.assert_allclose(out.values, scene.values.astype(float))


def test_apply_tiled__func_must_keep_shape():
    scene = make_scene((3, 32, 32), chunks=16)
    with pytest.raises(TilingError, match="keep the spatial shape"):
        apply_tiled(scene, lambda b: b[:, 1:, :], halo=2).compute()


@pytest.mark.parametrize("halo", [-1, 1.5, True])
def test_apply_tiled__bad_halo(halo):
    with pytest.raises(TilingError, match="non-negative integer"):
        apply_tiled(make_scene((3, 8, 8)), lambda b: b, halo=halo)
    with pytest.raises(TilingError, match="non-negative integer"):
        apply_whole(np.zeros((3, 8, 8)), lambda b: b, halo=halo, boundary="none")


def test_apply_tiled__bad_boundary():
    with pytest.raises(TilingError, match="boundary"):
        apply_tiled(make_scene((3, 8, 8)), lambda b: b, halo=1, boundary="wrap")


def test_apply_tiled__bad_dims():
    scene = make_scene((3, 8, 8)).transpose("y", "x", "band")
    with pytest.raises(DimensionError, match="transpose"):
        apply_tiled(scene, lambda b: b, halo=1)


def test_rechunk_for_halo__merges_small_chunks():
    data = dsa.zeros((3, 25, 25), chunks=(1, (10, 10, 3, 2), (25,)))
    out = rechunk_for_halo(data, 5)
    assert out.chunks == ((3,), (10, 10, 5), (25,))
    assert rechunk_for_halo(dsa.zeros((1, 9, 4), chunks=(1, 1, 1)), 5).chunks == ((1,), (9,), (4,))


def test_apply_tiled__depth_is_a_deprecated_alias_of_halo():
    scene = make_scene((3, 40, 40), chunks=16)
    func = lambda b: ndimage.uniform_filter(b.astype(float), (1, 5, 5))  # noqa: E731
    with pytest.warns(DeprecationWarning, match="halo="):
        old = apply_tiled(scene, func, depth=2, dtype="float64").values
    np.testing.assert_array_equal(old, apply_tiled(scene, func, halo=2, dtype="float64").values)
    array = scene.values.astype(float)
    with pytest.warns(DeprecationWarning, match="halo="):
        whole = apply_whole(array, func, depth=2)
    np.testing.assert_array_equal(whole, apply_whole(array, func, halo=2))
    with pytest.raises(TilingError, match="halo only"):
        apply_tiled(scene, func, halo=2, depth=2)
    with pytest.raises(TypeError, match="halo"):
        apply_whole(array, func)
