"""DN and radiance: the user-given calibration, and the units cluster outputs are labelled in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geo_ntl.exceptions import ParameterError
from geo_ntl.radiometry import (
    DN_UNIT,
    Calibration,
    parse_calibration,
    to_radiance,
    value_unit,
)


def test_to_radiance__gain_power_offset():
    cal = Calibration(gain=0.5, offset=-1.0, exponent=2.0, unit="W m-2 sr-1 um-1")
    dn = np.array([[0, 1], [10, 255]], dtype=np.uint8)
    expected = 0.5 * dn.astype(np.float64) ** 2 - 1.0
    np.testing.assert_allclose(to_radiance(dn, cal), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cal.to_radiance(dn), to_radiance(dn, cal))
    assert to_radiance(dn, cal).dtype == np.float64 and to_radiance(dn, cal).shape == (2, 2)


def test_to_radiance__linear_by_default_and_exact_for_floats():
    cal = Calibration(gain=3.0, unit="nW cm-2 sr-1")
    assert (cal.offset, cal.exponent) == (0.0, 1.0)
    dn = np.array([0.25, 1.0, 300.5])  # float DN (deblur --float32) keep their fractions
    np.testing.assert_array_equal(to_radiance(dn, cal), 3.0 * dn)
    assert float(Calibration(gain=1e-3, exponent=1.5, unit="u").to_radiance(100)) == 1.0


def test_parse_calibration__all_keys_any_order_and_defaults():
    cal = parse_calibration(" unit=W m-2 sr-1 um-1 , exponent=1.5,offset=-2,gain=1e-3")
    assert cal == Calibration(gain=1e-3, offset=-2.0, exponent=1.5, unit="W m-2 sr-1 um-1")
    assert parse_calibration("gain=2,unit=DN2") == Calibration(gain=2.0, unit="DN2")
    assert cal.to_dict() == {
        "gain": 1e-3,
        "unit": "W m-2 sr-1 um-1",
        "offset": -2.0,
        "exponent": 1.5,
    }


@pytest.mark.parametrize(
    "text,message",
    [
        ("gain=2", "lacks unit: geo_ntl has no default calibration"),
        ("unit=W", "lacks gain"),
        ("gain=x,unit=W", "calibration gain must be a number, got 'x'"),
        ("gain=1,unit=W,scale=2", "expected KEY=VALUE items"),
        ("gain=1,gain=2,unit=W", "gives gain twice"),
        ("gain=0,unit=W", "gain must be positive"),
        ("gain=-1,unit=W", "gain must be positive"),
        ("gain=1,exponent=-1,unit=W", "exponent must be > 0"),
        ("gain=nan,unit=W", "gain must be finite"),
        ("gain=1,unit= ", "unit must be named"),
    ],
)
def test_parse_calibration__bad_text(text, message):
    with pytest.raises(ParameterError, match=message):
        parse_calibration(text)


def test_value_unit__dn_unless_calibrated():
    assert value_unit(None) == DN_UNIT == "DN"
    assert value_unit(Calibration(gain=1.0, unit="nW cm-2 sr-1")) == "nW cm-2 sr-1"


# --------------------------------------------------------------------------- in cluster outputs


def _planted(tmp_path):
    from test_spatial import planted

    return planted(tmp_path)


def test_cluster__values_and_unit_follow_the_calibration(tmp_path):
    from geo_ntl.spatial import cluster

    ntl, roads, parks = _planted(tmp_path)
    opts = {"roads": roads, "permeable": parks, "cell_size": 8, "permutations": 9}
    plain = cluster(ntl, **opts)
    cal = Calibration(gain=0.25, offset=1.0, exponent=1.0, unit="W m-2 sr-1 um-1")
    calibrated = cluster(ntl, calibration=cal, **opts)
    assert plain.report["ntl_unit"] == "DN" and plain.report["parameters"]["calibration"] is None
    assert calibrated.report["ntl_unit"] == "W m-2 sr-1 um-1"
    assert calibrated.report["parameters"]["calibration"] == cal.to_dict()
    np.testing.assert_allclose(
        calibrated.cells["ntl_mean"], 0.25 * plain.cells["ntl_mean"] + 1.0, rtol=1e-12
    )
    # a linear calibration leaves Moran's I as it is (I does not depend on scale or offset)
    for key, stat in plain.global_stats.items():
        assert calibrated.global_stats[key].I == pytest.approx(stat.I, rel=1e-9)
    power = cluster(ntl, calibration=Calibration(gain=1.0, exponent=2.0, unit="u"), **opts)
    assert (power.cells["ntl_mean"] >= plain.cells["ntl_mean"] ** 2 - 1e-9).all()  # per pixel


def test_cli_cluster__unit_in_json_and_text(tmp_path):
    from test_spatial import run_cli

    ntl, roads, parks = _planted(tmp_path)
    base = ["cluster", ntl, "--roads", roads, "--permeable", parks, "--cell-size", 8]
    base += ["--permutations", 9, "--overwrite", "--out", tmp_path / "c.gpkg"]
    code, stdout, _ = run_cli(*base, "--json")
    assert code == 0 and json.loads(stdout)["ntl_unit"] == "DN"
    code, stdout, _ = run_cli(*base, "--calibration", "gain=0.5,unit=nW cm-2 sr-1", "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["ntl_unit"] == "nW cm-2 sr-1"
    assert summary["parameters"]["calibration"]["gain"] == 0.5
    code, stdout, _ = run_cli(*base)
    assert code == 0 and "night light in DN" in stdout


@pytest.mark.parametrize(
    "text",
    [
        "gain=2",
        "gain=abc,unit=W",
        "exponent=1",
        "gain=1;unit=W",
        "gain=1,exponent=0,unit=W",
        "gain=-1,unit=W",  # would flip the sign of the bivariate Moran's I (#26)
        "gain=1,exponent=400,unit=W",  # overflows float64: was "ntl is constant (0)" (#26)
    ],
)
def test_cli_cluster__bad_calibration_is_error_exit_2(tmp_path, text):
    from test_spatial import run_cli

    ntl, roads, parks = _planted(tmp_path)
    out = tmp_path / "c.gpkg"
    code, stdout, err = run_cli(
        "cluster", ntl, "--roads", roads, "--permeable", parks, "--out", out,
        "--cell-size", 4, "--permutations", 9, "--calibration", text,
    )  # fmt: skip
    assert code == 2 and err.startswith("error: ") and "--calibration" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
