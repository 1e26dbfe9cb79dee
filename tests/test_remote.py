"""Remote inputs (URLs, GDAL /vsi... paths): every command that reads a raster takes them.

No network: scenes are served by a local HTTP server on 127.0.0.1 (read by GDAL's curl)
or written into GDAL's in-memory file system (/vsimem/, this process only).
"""

from __future__ import annotations

import functools
import http.server
import json
import threading

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from geo_ntl import batch
from geo_ntl._remote import is_remote, scene_name, scene_stem
from geo_ntl.exceptions import SceneNotFoundError
from geo_ntl.io import open_scene, write_cog
from geo_ntl.testing import make_scene

FAST = ("--param", "iterations=1", "--tile", "32", "--device", "cpu", "--workers", "0")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - keep the test output clean
        pass


def _lamp_scene():
    """Isolated blurred lamps on a dark noisy ground: a scene `geo-ntl psf` can measure."""
    from scipy import signal

    from geo_ntl.simulate.psf import gaussian_psf

    rng = np.random.default_rng(5)
    kernel = gaussian_psf(15, sigma=1.6)
    img = np.zeros((160, 160))
    img[rng.integers(4, 156, 50), rng.integers(4, 156, 50)] = rng.uniform(0.3, 1.0, 50) * 150
    img = signal.fftconvolve(img / kernel.max(), kernel, mode="same")
    pixels = np.stack([img] * 3) + 6 + rng.normal(0, 1.0, (3, 160, 160))
    pixels = np.clip(np.round(pixels), 0, 255).astype("uint8")
    return make_scene(pixels.shape).copy(data=pixels)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two overlapping scenes on disk and the base URL that serves their folder."""
    folder = tmp_path_factory.mktemp("served")
    big = make_scene((3, 60, 100), seed=9)
    write_cog(big.isel(x=slice(0, 60)), folder / "a.tif")
    write_cog(big.isel(x=slice(40, 100)), folder / "b.tif")
    write_cog(_lamp_scene(), folder / "lamps.tif")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.fixture(autouse=True)
def _no_sidecar_listing(monkeypatch):
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")


@pytest.fixture
def vsimem_scene():
    """A small scene in GDAL's in-memory file system, removed after the test."""
    path = "/vsimem/geo_ntl_test/mem scene.tif"
    da = make_scene((3, 48, 48), seed=4)
    profile = dict(
        driver="GTiff",
        width=48,
        height=48,
        count=3,
        dtype="uint8",
        crs=da.rio.crs,
        transform=da.rio.transform(),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(da.values)
    yield path
    rasterio.shutil.delete(path)


def _pixels(path):
    with rasterio.open(path) as src:
        return src.read()


# --- naming and planning -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "remote"),
    [
        ("https://example.com/a/scene.tif", True),
        ("http://127.0.0.1:8000/scene.tif", True),
        ("s3://bucket/key/scene.tif", True),
        ("gs://bucket/scene.tif", True),
        ("az://container/scene.tif", True),
        ("/vsicurl/https://example.com/scene.tif", True),
        ("/vsis3/bucket/scene.tif", True),
        ("/vsimem/scene.tif", True),
        ("/vsizip//data/scenes.zip/scene.tif", True),
        ("scenes/scene.tif", False),
        ("/data/vsi/scene.tif", False),
        ("scenes/*.tif", False),
    ],
)
def test_is_remote__urls_and_gdal_paths_but_not_local_paths(text, remote):
    assert is_remote(text) is remote


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("https://example.com/city/scene.tif?X-Amz-Signature=abc&x=1", "scene.tif"),
        ("https://example.com/city/scene.tif#frag", "scene.tif"),
        ("/vsicurl/https://example.com/city/scene.tif", "scene.tif"),
        ("/vsis3/bucket/2024/03/scene.tif", "scene.tif"),
        ("/vsizip//data/scenes.zip/inner/scene.tif", "scene.tif"),
        ("local/dir/scene.tif", "scene.tif"),
    ],
)
def test_scene_name__last_path_component_without_query(text, name):
    assert scene_name(text) == name
    assert scene_stem(text) == "scene"


def test_expand_scenes__remote_is_one_scene_taken_as_given(tmp_path):
    local = write_cog(make_scene((3, 16, 16)), tmp_path / "local.tif")
    items = ["https://example.com/a/*.tif", str(local), "/vsimem/x/[ab].tif",
             "https://example.com/a/*.tif"]  # fmt: skip
    # Neither globbed, listed nor checked (opening them is), de-duplicated, order kept.
    assert batch.expand_scenes(items) == [
        "https://example.com/a/*.tif",
        local.absolute(),
        "/vsimem/x/[ab].tif",
    ]


def test_input_identity__remote_is_url_and_header(vsimem_scene):
    identity = batch.input_identity(vsimem_scene)
    assert identity["url"] == vsimem_scene
    assert identity["header"]["width"] == 48 and identity["header"]["dtypes"] == ["uint8"] * 3
    assert json.loads(json.dumps(identity)) == identity
    signature = batch.job_signature(vsimem_scene, "enhance", {"p": 0.2})
    assert batch.job_signature(vsimem_scene, "enhance", {"p": 0.2}) == signature
    with pytest.raises(SceneNotFoundError, match="cannot be opened"):
        batch.input_identity("/vsimem/geo_ntl_test/missing.tif")


def test_plan_jobs__remote_output_named_after_the_url(vsimem_scene, tmp_path):
    jobs = batch.plan_jobs(
        batch.expand_scenes([vsimem_scene]),
        out_dir=tmp_path,
        suffix="_clean",
        stage="deblur",
        params={},
    )
    assert [job.out.name for job in jobs] == ["mem scene_clean.tif"]
    assert jobs[0].scene == vsimem_scene and not jobs[0].done


# --- commands ----------------------------------------------------------------------------


def test_enhance__remote_scenes_match_local_and_resume(runner, served, tmp_path):
    folder, base = served
    local_dir, remote_dir = tmp_path / "local", tmp_path / "remote"
    local_dir.mkdir()
    remote_dir.mkdir()
    urls = [f"{base}/a.tif", f"/vsicurl/{base}/b.tif?ignored=1"]
    assert runner("enhance", folder, "--out-dir", local_dir, *FAST).exit_code == 0
    # With the progress display on: it names each scene after its URL's last component too.
    result = runner("enhance", *urls, "--out-dir", remote_dir, "--progress", *FAST)
    assert result.exit_code == 0, result.stderr
    outs = sorted(p.name for p in remote_dir.glob("*.tif"))
    assert outs == ["a_enhanced.tif", "b_enhanced.tif"]
    for name in outs:
        np.testing.assert_array_equal(_pixels(remote_dir / name), _pixels(local_dir / name))
    with rasterio.open(remote_dir / "b_enhanced.tif") as src:
        assert src.tags()["GEO_NTL_SOURCE"] == "b.tif"
        assert json.loads(src.tags()["GEO_NTL_INPUT"])[0]["url"] == urls[1]
    stamps = {p: p.stat().st_mtime_ns for p in remote_dir.glob("*.tif")}
    again = runner("enhance", *urls, "--out-dir", remote_dir, *FAST)
    assert again.exit_code == 0 and "kept 2 of 2" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in remote_dir.glob("*.tif")} == stamps


def test_deblur__vsimem_scene_matches_local(runner, vsimem_scene, tmp_path):
    torch = pytest.importorskip("torch")
    from geo_ntl.deblur.model import Generator
    from geo_ntl.deblur.weights import save_weights

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_weights(Generator(base=4, n_blocks=1).eval(), weights, meta={"note": "test"})
    local = tmp_path / "scene.tif"
    with rasterio.open(vsimem_scene) as src:
        profile = src.profile
        data = src.read()
    with rasterio.open(local, "w", **profile) as dst:
        dst.write(data)
    opts = ("--method", "gan-direct", "--weights", weights, "--tile", "32", "--device", "cpu")
    assert runner("deblur", local, "--out", tmp_path / "local.tif", *opts).exit_code == 0
    result = runner("deblur", vsimem_scene, "--out", tmp_path / "remote.tif", *opts)
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(_pixels(tmp_path / "remote.tif"), _pixels(tmp_path / "local.tif"))


def test_enhance__missing_remote_scene_is_one_error_line(runner, tmp_path):
    out = tmp_path / "o.tif"
    result = runner("enhance", "/vsimem/geo_ntl_test/missing.tif", "--out", out, *FAST)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.tif" in lines[0]
    assert not out.exists()


def test_psf_evaluate_info__remote_scene_like_local(runner, served):
    folder, base = served
    lamps = f"{base}/lamps.tif"
    local = json.loads(runner("psf", folder / "lamps.tif", "--json").stdout)
    remote = runner("psf", lamps, "--json")
    assert remote.exit_code == 0, remote.stderr
    remote_psf = json.loads(remote.stdout)
    assert remote_psf.pop("scene") == lamps
    local.pop("scene")
    assert remote_psf == local
    url = f"{base}/a.tif"
    local_eval = json.loads(runner("evaluate", folder / "a.tif", "--json").stdout)
    remote_eval = runner("evaluate", url, "--reference", f"/vsicurl/{url}", "--json")
    assert remote_eval.exit_code == 0, remote_eval.stderr
    metrics = json.loads(remote_eval.stdout)["metrics"]
    assert metrics["psnr"] == "inf"
    assert {k: metrics[k] for k in local_eval["metrics"]} == local_eval["metrics"]
    info = runner("info", url, "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["width"] == 60


def test_mosaic__remote_scenes_match_local(runner, served, tmp_path):
    folder, base = served
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    assert runner("mosaic", folder / "a.tif", folder / "b.tif", "--out", local,
                  "--workers", "0").exit_code == 0  # fmt: skip
    result = runner("mosaic", f"{base}/a.tif", f"{base}/b.tif", "--out", remote, "--workers", "0")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(_pixels(remote), _pixels(local))
    again = runner("mosaic", f"{base}/a.tif", f"{base}/b.tif", "--out", remote, "--workers", "0")
    assert again.exit_code == 0 and "kept" in again.stderr


def test_cluster__remote_raster_matches_local(runner, served, tmp_path):
    folder, base = served
    da = open_scene(folder / "a.tif")
    x0, y0 = da.rio.transform().c, da.rio.transform().f
    roads = [shapely.LineString([(x0 + v, y0 - 2), (x0 + v, y0 - 50)]) for v in range(5, 50, 9)]
    gpd.GeoDataFrame({"highway": ["residential"] * len(roads)}, geometry=roads,
                     crs=da.rio.crs).to_file(tmp_path / "roads.gpkg")  # fmt: skip
    parks = [shapely.box(x0 + 30, y0 - 50, x0 + 50, y0 - 30)]
    gpd.GeoDataFrame(geometry=parks, crs=da.rio.crs).to_file(tmp_path / "parks.gpkg")
    common = ("--roads", tmp_path / "roads.gpkg", "--permeable", tmp_path / "parks.gpkg",
              "--cell-size", 8, "--permutations", 9, "--json")  # fmt: skip
    local = runner("cluster", folder / "a.tif", "--out", tmp_path / "local.gpkg", *common)
    assert local.exit_code == 0, local.stderr
    remote = runner("cluster", f"{base}/a.tif", "--out", tmp_path / "remote.gpkg", *common)
    assert remote.exit_code == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    cells = [gpd.read_file(tmp_path / f"{name}.gpkg") for name in ("local", "remote")]
    assert cells[0].equals(cells[1])
