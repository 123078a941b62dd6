"""The inversion's files: readers that name the file, line and column of a bad cell."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cloud.inversion_types import FoundSource, Inventory, InversionResult
from cloud.invert_io import (
    iso,
    met_from_dicts,
    obs_from_dicts,
    parse_domain,
    read_inventory_csv,
    read_met,
    read_obs,
    read_sites,
    result_json,
    write_inventory,
    write_result,
)
from protocols.errors import InputError

OBS = """time,station,x_m,y_m,z_m,value,sigma,kind
2025-06-02T00:00:00Z,A,100,200,4,55.5,6,micro
2025-06-02T00:00:00+00:00,B,600,200,12,50.1,,reference
2025-06-02T09:00:00+08:00,C,100,700,3,70,,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_obs_are_read_with_optional_columns_and_offsets(tmp_path: Path) -> None:
    rows = read_obs(_write(tmp_path, "OBS.csv", OBS))
    assert [r.station for r in rows] == ["A", "B", "C"]
    assert {r.time for r in rows} == {1748822400, 1748822400 + 3600}  # +08:00 converted
    assert rows[0].sigma == 6.0 and rows[0].kind == "micro"
    assert rows[1].sigma is None and rows[1].kind == "reference"
    assert rows[2].kind is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2025-06-02T00:00:00Z,D,1,2,3,abc,,", "OBS.csv:5: column 'value': 'abc' is not a number"),
        ("2025-06-02T00:30:00Z,D,1,2,3,4,,", "OBS.csv:5: column 'time': '2025-06-02T00:30:00Z' "
                                             "is not the start of an hour"),
        ("yesterday,D,1,2,3,4,,", "OBS.csv:5: column 'time': 'yesterday' is not an ISO 8601"),
        ("2025-06-02T00:00:00Z,,1,2,3,4,,", "OBS.csv:5: column 'station': is empty"),
        ("2025-06-02T00:00:00Z,D,1,2,-3,4,,", "OBS.csv:5: column 'z_m': -3 is outside"),
        ("2025-06-02T00:00:00Z,D,1,2,3,4,0,", "OBS.csv:5: column 'sigma': 0 is outside"),
        ("2025-06-02T00:00:00Z,D,1,2,3,4,,drone", "OBS.csv:5: column 'kind': 'drone'"),
        ("2025-06-02T00:00:00Z,A,1,2,3,4,,", "OBS.csv:5: column 'station': 'A' already has"),
        ("2025-06-02T00:00:00Z,D,1,2,3,nan,,", "OBS.csv:5: column 'value': 'nan' is not a "
                                               "finite number"),
        ("2025-06-02T00:00:00Z,D,1,2,3,4,,,extra", "OBS.csv:5: 9 cells for 8 columns"),
    ],
)
def test_a_bad_obs_cell_is_named_by_file_line_and_column(tmp_path: Path, line: str,
                                                         message: str) -> None:
    path = _write(tmp_path, "OBS.csv", OBS + line + "\n")
    with pytest.raises(InputError) as err:
        read_obs(path)
    text = str(err.value)
    assert text.startswith(str(path.parent) + "/" + message.split(":", maxsplit=1)[0])
    assert message.split(":", 1)[1] in text
    assert "\n" not in text
    assert err.value.fields["line"] == 5


def test_missing_columns_empty_and_absent_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing column\(s\) value"):
        read_obs(_write(tmp_path, "a.csv", "time,station,x_m,y_m,z_m\n"))
    with pytest.raises(InputError, match="the file is empty"):
        read_obs(_write(tmp_path, "b.csv", ""))
    with pytest.raises(InputError, match="no observations"):
        read_obs(_write(tmp_path, "c.csv", "time,station,x_m,y_m,z_m,value\n"))
    with pytest.raises(InputError, match="no such file"):
        read_obs(tmp_path / "nope.csv")


def test_met_rows_and_their_checks(tmp_path: Path) -> None:
    text = ("time,wind_speed_ms,wind_dir_deg,stability,sigma_theta_deg\n"
            "2025-06-02T00:00:00Z,3.1,360,d,12\n"
            "2025-06-02T01:00:00Z,0.5,90,,\n")
    rows = read_met(_write(tmp_path, "MET.csv", text))
    assert rows[0].wind_dir_deg == 0.0 and rows[0].stability == "D"
    assert rows[0].sigma_theta_deg == 12.0
    assert rows[1].stability is None and rows[1].sigma_theta_deg is None
    with pytest.raises(InputError, match=re.escape("MET.csv:4: column 'stability': 'G'")):
        read_met(_write(tmp_path, "MET.csv", text + "2025-06-02T02:00:00Z,2,90,G,\n"))
    with pytest.raises(InputError, match=re.escape("MET.csv:4: column 'time': hour already given")):
        read_met(_write(tmp_path, "MET.csv", text + "2025-06-02T01:00:00Z,2,90,,\n"))
    bad = re.escape("MET.csv:4: column 'wind_dir_deg': 400 is outside")
    with pytest.raises(InputError, match=bad):
        read_met(_write(tmp_path, "MET.csv", text + "2025-06-02T02:00:00Z,2,400,,\n"))


def test_sites_need_a_known_kind(tmp_path: Path) -> None:
    ok = "site,x_m,y_m,h_m,kind\nC-1,10,20,,construction\nI-1,30,40,35,industrial\n"
    rows = read_sites(_write(tmp_path, "SITES.csv", ok))
    assert rows[0].h_m is None and rows[1].h_m == 35.0
    with pytest.raises(InputError, match=re.escape("SITES.csv:4: column 'kind': 'farm'")):
        read_sites(_write(tmp_path, "SITES.csv", ok + "F-1,1,1,,farm\n"))
    twice = re.escape("SITES.csv:4: column 'site': 'C-1' already listed")
    with pytest.raises(InputError, match=twice):
        read_sites(_write(tmp_path, "SITES.csv", ok + "C-1,1,1,,other\n"))


def test_rows_as_dicts_are_checked_the_same_way() -> None:
    good = {"time": "2025-06-02T00:00:00Z", "station": "A", "x_m": 1, "y_m": 2, "z_m": 3,
            "value": 4.5}
    assert obs_from_dicts([good])[0].value == 4.5
    with pytest.raises(InputError, match="obs:3: column 'value'"):
        obs_from_dicts([good, {**good, "station": "B", "value": "x"}])
    assert met_from_dicts([{"time": "2025-06-02T00:00:00Z", "wind_speed_ms": 2,
                            "wind_dir_deg": 90}])[0].wind_speed_ms == 2.0


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,-5,10", "0,0,10,0", "1,2,3,inf"])
def test_bad_domains(text: str) -> None:
    with pytest.raises(InputError, match="--domain"):
        parse_domain(text)


def test_domain() -> None:
    assert parse_domain(" 0, -10,500.5,1e3") == (0.0, -10.0, 500.5, 1000.0)


def _result() -> InversionResult:
    return InversionResult(
        sources=(FoundSource(450.0, 550.0, 1.23456789, 0.2, 0.87, site="C-1", cell=54),),
        background_ug_m3=42.123456, residual_rms_ug_m3=3.3, hours_used=(1748822400,),
        background_by_hour=((1748822400, 42.1),), grid=(0.0, 0.0, 1000.0, 1000.0, 100.0))


def test_result_json_has_the_contract_keys_first(tmp_path: Path) -> None:
    doc = result_json(_result(), inventory_file="r.inventory.csv")
    assert list(doc)[:3] == ["sources", "background_ug_m3", "residual_rms_ug_m3"]
    src = doc["sources"][0]
    assert {"x_m", "y_m", "rate_g_s", "rate_sigma_g_s", "confidence", "site"} <= set(src)
    assert doc["inventory_file"] == "r.inventory.csv"
    assert doc["hours_used"] == ["2025-06-02T00:00:00Z"]
    out = tmp_path / "RESULT.json"
    write_result(out, _result())
    assert json.loads(out.read_text())["sources"][0]["site"] == "C-1"
    assert iso(1748822400) == "2025-06-02T00:00:00Z"


def test_inventory_files_round_trip(tmp_path: Path) -> None:
    mean = np.arange(6.0).reshape(2, 3) / 10
    inv = Inventory(nx=3, ny=2, x0=0.0, y0=0.0, cell=100.0, mean=mean, sigma=mean + 1,
                    prior_mean=np.zeros((2, 3)), prior_sigma=np.ones((2, 3)))
    write_inventory(tmp_path / "inv.csv", inv)
    rows = read_inventory_csv(tmp_path / "inv.csv")
    assert len(rows) == 6
    assert rows[4] == {"x_m": 150.0, "y_m": 150.0, "rate_g_s": 0.4, "sigma_g_s": 1.4,
                       "prior_g_s": 0.0, "prior_sigma_g_s": 1.0}
    write_inventory(tmp_path / "inv.npz", inv)
    with np.load(tmp_path / "inv.npz") as z:
        np.testing.assert_array_equal(z["mean_g_s"], mean)
        assert float(z["cell_m"]) == 100.0
