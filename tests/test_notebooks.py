"""Execute the analysis notebooks with nbclient, from outside the source tree, and check them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import geo_ntl

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "spatial_clustering.ipynb"
SAMPLE = ROOT / "geo_ntl" / "data" / "sample_aoi" / "helsinki"


def _tagged_output(nb, tag: str) -> str:
    for cell in nb.cells:
        if tag in cell.get("metadata", {}).get("tags", []):
            texts = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    texts.append(out["text"])
                elif "data" in out:
                    texts.append(
                        out["data"].get("text/markdown") or out["data"].get("text/plain", "")
                    )
            return "".join(texts)
    raise AssertionError(f"no cell tagged {tag!r}")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run as a user runs it: its kernel in an empty folder outside the checkout."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for maps_dependency in ("splot", "folium"):
        pytest.importorskip(maps_dependency)
    if not all(
        (SAMPLE / name).exists()
        for name in ("truth.tif", "scene.tif", "roads.gpkg", "permeable.gpkg")
    ):
        pytest.skip("the sample AOI is not present")
    outside = tmp_path_factory.mktemp("notebook_cwd")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(outside)}},
    )
    # The kernel imports the geo_ntl under test (not another install), found by PYTHONPATH only.
    package_root = str(Path(geo_ntl.__file__).resolve().parents[1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
        client.execute()
    assert not any(outside.iterdir()), "the notebook left files in its working folder"
    return nb


def test_spatial_clustering_notebook__summary(executed):
    summary = json.loads(_tagged_output(executed, "summary"))
    assert summary["n_cells"] > 100 and summary["permutations"] == 999
    for group in ("tests", "truth_tests", "degraded_tests"):
        assert set(summary[group]) == {
            "moran_ntl",
            "moran_road_density",
            "moran_permeable_fraction",
            "moran_bv_ntl_road_density",
            "moran_bv_ntl_permeable_fraction",
        }
        for test in summary[group].values():
            assert all(math.isfinite(test[k]) for k in ("I", "expected_I", "z", "p_sim"))
            assert 0 < test["p_sim"] <= 1
    for counts in summary["lisa"].values():
        assert set(counts) == {"HH", "LL", "HL", "LH", "ns"}
        assert sum(counts.values()) == summary["n_cells"]
    assert summary["lisa"]["ntl"]["HH"] > 0 and summary["lisa"]["ntl"]["LL"] > 0
    assert summary["tests"]["moran_ntl"]["I"] > 0 and summary["tests"]["moran_ntl"]["p_sim"] <= 0.01
    assert summary["analysis_crs"] == "EPSG:3067"
    for scene in ("degraded", "deblurred"):
        assert set(summary["lisa_agreement"][scene]) == set(summary["lisa"])
        assert all(0 <= v <= 1 for v in summary["lisa_agreement"][scene].values())
    # the deblurred scene is analysed, not the truth or the degraded one
    assert summary["tests"] != summary["truth_tests"]
    assert summary["tests"] != summary["degraded_tests"]


def test_spatial_clustering_notebook__deblurs_with_the_default_method(executed):
    code = "\n".join(cell.source for cell in executed.cells if cell.cell_type == "code")
    assert "from geo_ntl.deblur import deblur" in code
    assert "deblur(degraded)" in code and "method" not in code and "weights=" not in code
    text = _tagged_output(executed, "interpretation")
    assert "after deblurring" in text


def test_spatial_clustering_notebook__interactive_map(executed):
    cell = next(c for c in executed.cells if "map" in c.get("metadata", {}).get("tags", []))
    html = "".join(o["data"].get("text/html", "") for o in cell.outputs if "data" in o)
    assert "folium" in html or "leaflet" in html.lower()


def test_spatial_clustering_notebook__prose_matches_numbers(executed):
    summary = json.loads(_tagged_output(executed, "summary"))
    text = _tagged_output(executed, "interpretation")
    for key, what in (
        ("moran_bv_ntl_road_density", "road density (bivariate)"),
        ("moran_bv_ntl_permeable_fraction", "permeable fraction (bivariate)"),
    ):
        test = summary["tests"][key]
        line = next(ln for ln in text.splitlines() if what in ln)
        assert f"I = {test['I']:+.3f}" in line
        assert ("positive" if test["I"] > 0 else "negative") in line
        assert ("not significant" in line) == (test["p_sim"] >= 0.05)


def test_spatial_clustering_notebook__finds_data_through_the_package(executed):
    first_code = next(cell for cell in executed.cells if cell.cell_type == "code")
    assert "geo_ntl.sample_aoi_path()" in first_code.source
    assert 'sample_aoi"' not in first_code.source and "parents" not in first_code.source
