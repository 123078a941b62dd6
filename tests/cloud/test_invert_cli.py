"""``airtrace cloud invert`` as a user runs it: files in, RESULT.json (and extras) out,
exit 2 with one line naming the bad cell."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from firmware_sim.world import World, rows_to_csv


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    d = tmp_path_factory.mktemp("district")
    w = World.generate(21, n_stations=64, n_sources=1, kinds={"reference": 0.15, "micro": 0.85},
                       source_kinds=("industrial",), rate_range_g_s=(3.0, 3.0),
                       sites_per_km2=2.0)
    hours = w.hour_starts([w.start + 3600 * (18 + i) for i in range(12)])
    (d / "OBS.csv").write_text(rows_to_csv(w.hourly_obs(hours)))
    (d / "MET.csv").write_text(rows_to_csv(w.hourly_met(hours)))
    (d / "SITES.csv").write_text(rows_to_csv(w.sites_csv_rows()))
    return d, w


def _domain(w: World) -> str:
    return ",".join(f"{v:g}" for v in w.domain)


@pytest.mark.slow
def test_invert_writes_the_contract_result_and_the_extras(cli, district) -> None:
    d, w = district
    r = cli("cloud", "invert", "--obs", str(d / "OBS.csv"), "--met", str(d / "MET.csv"),
            "--domain", _domain(w), "--sites", str(d / "SITES.csv"),
            "--out", str(d / "RESULT.json"))
    assert r.code == 0, r.stderr
    doc = json.loads((d / "RESULT.json").read_text())
    assert list(doc)[:3] == ["sources", "background_ug_m3", "residual_rms_ug_m3"]
    assert isinstance(doc["background_ug_m3"], float)
    rates = [s["rate_g_s"] for s in doc["sources"]]
    assert rates == sorted(rates, reverse=True)
    for s in doc["sources"]:
        for key in ("x_m", "y_m", "rate_g_s", "rate_sigma_g_s", "confidence"):
            assert isinstance(s[key], float)
        # positions are cell centres of the 100 m grid
        assert ((s["x_m"] - w.domain[0]) / 100.0 - 0.5) % 1 == pytest.approx(0.0)
        assert ((s["y_m"] - w.domain[1]) / 100.0 - 0.5) % 1 == pytest.approx(0.0)
    truth = w.truth(12)[0]
    best = min(doc["sources"], key=lambda s: math.hypot(s["x_m"] - truth.x_m,
                                                        s["y_m"] - truth.y_m))
    assert math.hypot(best["x_m"] - truth.x_m, best["y_m"] - truth.y_m) < 250
    assert best.get("site") == truth.site
    assert (d / doc["inventory_file"]).stat().st_size > 1000
    assert (d / doc["map_file"]).read_bytes()[:4] == b"\x89PNG"


def test_a_bad_cell_exits_2_with_one_line_naming_it(cli, district, tmp_path: Path) -> None:
    d, w = district
    lines = (d / "OBS.csv").read_text().splitlines()
    cells = lines[6].split(",")
    cells[5] = "12,5"  # a decimal comma: one cell too many
    lines[6] = ",".join(cells)
    bad = tmp_path / "OBS.csv"
    bad.write_text("\n".join(lines) + "\n")
    r = cli("cloud", "invert", "--obs", str(bad), "--met", str(d / "MET.csv"),
            "--domain", _domain(w), "--out", str(tmp_path / "R.json"))
    assert r.code == 2
    assert r.stderr.count("\n") == 1
    assert f"{bad}:7: 8 cells for 7 columns" in r.stderr
    assert not (tmp_path / "R.json").exists()

    cells[5:7] = ["lots"]
    lines[6] = ",".join(cells)
    bad.write_text("\n".join(lines) + "\n")
    r = cli("cloud", "invert", "--obs", str(bad), "--met", str(d / "MET.csv"),
            "--domain", _domain(w), "--out", str(tmp_path / "R.json"), "--no-extras")
    assert r.code == 2
    assert f"{bad}:7: column 'value': 'lots' is not a number" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--domain", "0,0,10"], "--domain"),
        (["--domain", "0,0,100,100", "--met", "/nonexistent/MET.csv"], "no such file"),
        (["--domain", "0,0,100,100", "--lat-lon", "north"], "--lat-lon"),
    ],
)
def test_bad_arguments_exit_2(cli, district, tmp_path: Path, args: list[str],
                              needle: str) -> None:
    d, _ = district
    base = {"--obs": str(d / "OBS.csv"), "--met": str(d / "MET.csv"),
            "--out": str(tmp_path / "R.json")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    r = cli("cloud", "invert", *[x for kv in base.items() for x in kv])
    assert r.code == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
