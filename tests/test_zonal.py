"""Tests of geo_ntl.spatial.zones (zonal statistics with exactextract) and ``geo-ntl zonal``."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

import geo_ntl
from geo_ntl.cli.main import main
from geo_ntl.exceptions import ParameterError, VectorDataError
from geo_ntl.radiometry import Calibration
from geo_ntl.spatial import zonal

LON0, LAT0, DLON, DLAT = 24.90, 60.20, 0.00025, 0.000125  # about 14 x 14 m pixels at 60°N
H, W = 400, 600


def write_lonlat(path, values, *, nodata=-1.0, tags=None, mask=None):
    """An EPSG:4326 float32 GeoTIFF (band, y, x) with optional nodata, tags and mask band."""
    values = np.atleast_3d(values) if values.ndim == 3 else values[None]
    count, height, width = values.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(LON0, LAT0, DLON, DLAT),
        nodata=nodata,
    ) as dst:
        dst.write(values.astype("float32"))
        if tags:
            dst.update_tags(**tags)
        if mask is not None:
            dst.write_mask(np.where(mask, 0, 255).astype("uint8"))
    return path


def centres():
    cols, rows = np.arange(W), np.arange(H)
    return LON0 + (cols + 0.5) * DLON, LAT0 - (rows + 0.5) * DLAT


def districts():
    return gpd.GeoDataFrame(
        {"name": ["Kallio", "Kamppi", "Töölö"]},
        geometry=[
            shapely.box(24.9102, 60.1601, 24.9498, 60.1899),
            shapely.box(24.9501, 60.1702, 25.0397, 60.1948),
            shapely.Point(24.93, 60.195).buffer(0.004),
        ],
        crs="EPSG:4326",
    )


@pytest.fixture
def lonlat_scene(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 40, size=(H, W)).astype("float32")
    values[300:340, 80:120] = -1.0  # nodata across the edge of Kallio
    path = write_lonlat(
        tmp_path / "viirs.tif", values, tags={"TIFFTAG_DATETIME": "2024:03:01 22:10:00"}
    )
    return path, values


def test_zonal__sums_equal_direct_count_on_large_polygons(lonlat_scene):
    path, values = lonlat_scene
    table = zonal(path, zones=districts(), id_column="name")
    xs, ys = centres()
    X, Y = np.meshgrid(xs, ys)
    valid = values != -1.0
    for name, geom in zip(districts()["name"], districts().geometry, strict=True):
        inside = shapely.contains_xy(geom, X, Y) & valid
        row = table.set_index("zone").loc[name]
        assert row["sum"] == pytest.approx(values[inside].sum(), rel=0.01)
        assert row["count"] == pytest.approx(inside.sum(), rel=0.01)
        assert row["mean"] == pytest.approx(values[inside].mean(), rel=0.01)
    kallio = table.set_index("zone").loc["Kallio"]
    zone_px = districts().geometry[0].area / (DLON * DLAT)
    nodata_px = ((LAT0 - 60.1601) / DLAT - 300) * 40  # the zone ends inside the block
    assert kallio["coverage"] == pytest.approx((zone_px - nodata_px) / zone_px, rel=1e-6)
    assert table["unit"].eq("DN").all() and table["band"].eq(1).all()
    assert table["date"].eq(pd.Timestamp("2024-03-01 22:10:00")).all()
    assert list(table.columns[:2]) == ["zone", "scene"] and table.crs == "EPSG:4326"


def test_zonal__edge_pixels_weighted_by_coverage(tmp_path):
    # 1 m pixels whose value is their column; the polygon cuts columns 2 and 12 in half
    values = np.tile(np.arange(20, dtype="float32"), (10, 1))
    path = tmp_path / "ramp.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=20, height=10, count=1, dtype="float32",
        crs="EPSG:3067", transform=from_origin(385_000, 6_672_000, 1.0, 1.0),
    ) as dst:  # fmt: skip
        dst.write(values[None])
    zone = shapely.box(385_002.5, 6_671_992.0, 385_012.5, 6_671_998.0)  # 10 x 6 m
    table = zonal(path, zones=gpd.GeoSeries([zone], crs="EPSG:3067"))
    expected_row = 0.5 * 2 + sum(range(3, 12)) + 0.5 * 12
    assert table["sum"].iloc[0] == pytest.approx(6 * expected_row)
    assert table["count"].iloc[0] == pytest.approx(60.0)
    assert table["coverage"].iloc[0] == pytest.approx(1.0)


def test_zonal__mask_band_and_nodata_respected(tmp_path):
    values = np.full((H, W), 2.0, dtype="float32")
    values[0:80, :] = -1.0
    values[200, 300] = np.nan
    mask = np.zeros((H, W), dtype=bool)
    mask[:, :200] = True  # masked by the GDAL mask band, whatever the value
    path = write_lonlat(tmp_path / "masked.tif", values, mask=mask)
    zone = gpd.GeoSeries([shapely.box(LON0, LAT0 - H * DLAT, LON0 + W * DLON, LAT0)], crs=4326)
    row = zonal(path, zones=zone).iloc[0]
    valid = 320 * 400 - 1
    assert row["count"] == pytest.approx(valid)
    assert row["sum"] == pytest.approx(2.0 * valid)
    assert row["coverage"] == pytest.approx(valid / (H * W))


def test_zonal__many_scenes_one_tidy_table(tmp_path, lonlat_scene):
    path, values = lonlat_scene
    later = write_lonlat(
        tmp_path / "later.tif", np.where(values >= 0, values * 2, -1.0),
        tags={"ACQUISITION_DATE": "2024-04-01"},
    )  # fmt: skip
    table = zonal([path, later], zones=districts(), id_column="name")
    assert len(table) == 3 * 2
    wide = table.pivot_table(index="zone", columns="date", values="sum")
    ratio = wide[pd.Timestamp("2024-04-01")] / wide[pd.Timestamp("2024-03-01 22:10:00")]
    assert np.allclose(ratio, 2.0)


def test_zonal__calibration_per_pixel_before_summing(lonlat_scene):
    path, values = lonlat_scene
    cal = Calibration(gain=0.5, offset=1.0, exponent=1.5, unit="nW cm-2 sr-1")
    table = zonal(path, zones=districts(), id_column="name", calibration=cal)
    raw = zonal(path, zones=districts(), id_column="name")
    assert table["unit"].eq("nW cm-2 sr-1").all()
    # a non-linear calibration: the radiance sum is not the calibrated DN sum
    assert not np.allclose(table["sum"], cal.to_radiance(raw["sum"]))
    xs, ys = centres()
    X, Y = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(districts().geometry[1], X, Y) & (values != -1.0)
    kamppi = table.set_index("zone").loc["Kamppi", "sum"]
    assert kamppi == pytest.approx(cal.to_radiance(values[inside]).sum(), rel=0.01)


def test_zonal__rgb_scene_per_band_and_top_level_name(tmp_path):
    values = np.stack([np.full((H, W), v, dtype="float32") for v in (1.0, 2.0, 3.0)])
    path = write_lonlat(tmp_path / "rgb.tif", values)
    table = geo_ntl.zonal(path, zones=districts())
    assert sorted(table["band"].unique()) == [1, 2, 3]
    by_band = table.groupby("band")["mean"].mean()
    assert np.allclose(by_band.to_numpy(), [1.0, 2.0, 3.0])
    assert table["zone"].tolist()[:3] == [0, 0, 0] and "name" in table


def test_zonal__refusals(tmp_path, lonlat_scene):
    path, _ = lonlat_scene
    far = gpd.GeoSeries([shapely.box(10, 50, 10.1, 50.1)], crs=4326)
    with pytest.raises(VectorDataError, match="zones layer does not overlap"):
        zonal(path, zones=far)
    lines = gpd.GeoSeries([shapely.LineString([(24.91, 60.17), (24.95, 60.18)])], crs=4326)
    with pytest.raises(VectorDataError, match="holds no polygons"):
        zonal(path, zones=lines)
    with pytest.raises(ParameterError, match="no column 'district'"):
        zonal(path, zones=districts(), id_column="district")
    dup = districts().assign(name=["a", "a", "b"])
    with pytest.raises(ParameterError, match="not unique"):
        zonal(path, zones=dup, id_column="name")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".gpkg"])
def test_zonal_cli__writes_each_format(tmp_path, lonlat_scene, capsys, suffix):
    path, _ = lonlat_scene
    zones = tmp_path / "districts.gpkg"
    districts().to_file(zones)
    out = tmp_path / f"light{suffix}"
    assert (
        main(["zonal", str(path), "--zones", str(zones), "--id-column", "name", "--out", str(out)])
        == 0
    )
    if suffix == ".csv":
        table = pd.read_csv(out)
    elif suffix == ".parquet":
        table = gpd.read_parquet(out)
    else:
        table = gpd.read_file(out, layer="zonal")
    assert sorted(table["zone"]) == ["Kallio", "Kamppi", "Töölö"]
    assert {"scene", "date", "band", "sum", "mean", "count", "coverage", "unit"} <= set(table)
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "case,message",
    [
        ("no_overlap", "zones layer does not overlap"),
        ("lines", "holds no polygons"),
        ("bad_suffix", "cannot tell the format"),
        ("exists", "exists"),
    ],
)
def test_zonal_cli__bad_input_exit_2_nothing_written(tmp_path, lonlat_scene, capsys, case, message):
    path, _ = lonlat_scene
    zones = tmp_path / "zones.gpkg"
    out = tmp_path / ("light.txt" if case == "bad_suffix" else "light.csv")
    if case == "no_overlap":
        gpd.GeoSeries([shapely.box(10, 50, 10.1, 50.1)], crs=4326).to_file(zones)
    elif case == "lines":
        gpd.GeoSeries([shapely.LineString([(24.91, 60.17), (24.95, 60.18)])], crs=4326).to_file(
            zones
        )
    else:
        districts().to_file(zones)
    if case == "exists":
        out.write_text("keep me")
    assert main(["zonal", str(path), "--zones", str(zones), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    if case == "exists":
        assert out.read_text() == "keep me"
    else:
        assert not out.exists()


def test_zonal__dataarray_in_memory_equals_the_file(tmp_path):
    from geo_ntl.io import open_scene, write_cog
    from geo_ntl.testing import make_scene

    da = make_scene((3, 200, 300), dtype="uint16", nodata=0, crs="EPSG:32635", resolution=10.0,
                    origin=(385_000.0, 6_672_000.0))  # fmt: skip
    values = da.values.copy()
    values[:, :50, :50] = 0  # nodata
    da = da.copy(data=values)
    write_cog(da, tmp_path / "s.tif")
    zones = gpd.GeoSeries(
        [
            shapely.box(385_100, 6_670_500, 386_500, 6_671_900),
            shapely.box(386_000, 6_670_100, 387_900, 6_671_000),
        ],
        crs="EPSG:32635",
    ).to_crs(4326)  # zones in another CRS than the scene
    from_file = zonal(tmp_path / "s.tif", zones=zones)
    in_memory = zonal(open_scene(tmp_path / "s.tif").chunk({"y": 64, "x": 64}), zones=zones)
    cols = ["zone", "band", "sum", "mean", "count", "coverage"]
    pd.testing.assert_frame_equal(from_file[cols], in_memory[cols])
    first = from_file[(from_file["zone"] == 0) & (from_file["band"] == 1)].iloc[0]
    assert first["count"] == pytest.approx(140 * 140 - 40 * 40, rel=1e-3)  # 40 x 40 px of nodata


def test_zonal_cli__json_records(tmp_path, lonlat_scene, capsys):
    import json

    path, _ = lonlat_scene
    zones = tmp_path / "districts.gpkg"
    districts().to_file(zones)
    out = tmp_path / "light.csv"
    args = ["zonal", str(path), "--zones", str(zones), "--id-column", "name", "--out", str(out)]
    assert main([*args, "--json", "--calibration", "gain=2,unit=nW cm-2 sr-1"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["zone"] for r in records} == {"Kallio", "Kamppi", "Töölö"}
    assert {r["unit"] for r in records} == {"nW cm-2 sr-1"}
    assert records[0]["date"].startswith("2024-03-01T22:10")
    assert pd.read_csv(out)["sum"].tolist() == pytest.approx([r["sum"] for r in records])


def test_zonal_cli__folder_of_scenes(tmp_path, capsys):
    folder = tmp_path / "series"
    folder.mkdir()
    for month, level in (("01", 1.0), ("02", 3.0)):
        write_lonlat(
            folder / f"2024-{month}.tif",
            np.full((H, W), level, dtype="float32"),
            tags={"ACQUISITION_DATE": f"2024-{month}-15"},
        )
    zones = tmp_path / "districts.gpkg"
    districts().to_file(zones)
    out = tmp_path / "series.csv"
    assert (
        main(
            ["zonal", str(folder), "--zones", str(zones), "--id-column", "name", "--out", str(out)]
        )
        == 0
    )
    table = pd.read_csv(out, parse_dates=["date"])
    means = table.groupby("date")["mean"].mean()
    assert means.to_dict() == pytest.approx(
        {pd.Timestamp("2024-01-15"): 1.0, pd.Timestamp("2024-02-15"): 3.0}
    )
    assert "scenes: 2" in capsys.readouterr().out
