"""The registry: CSV and GeoJSON imports in the domain's local frame, and its commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.config import DomainConfig
from cloud.registry import Registry
from cloud.store import Store, open_store
from cloud.store.types import Batch, PackRows
from protocols.errors import InputError
from protocols.geo import Origin, to_latlon
from tests.cloud.conftest import make_pack

DOMAIN = DomainConfig(origin_lat=34.8, origin_lon=113.5)
ORIGIN = Origin(34.8, 113.5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/r.db") as s:
        yield s


def test_stations_csv_in_lat_lon_or_local_metres(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "stations.csv"
    f.write_text(
        "station,kind,lat,lon,x_m,y_m,inlet_height_m,hj212_mn,hj212_pw\n"
        "R1,reference,34.81,113.51,,,4.0,,\n"
        "D1,dust,,,250,-100,3.0,88888880000001,123456\n"
    )
    reg = Registry(store, DOMAIN)
    assert reg.import_file(f).stations == 2
    r1, d1 = store.get_station("R1"), store.get_station("D1")
    assert (r1.kind, r1.status, r1.inlet_height_m) == ("reference", "confirmed", 4.0)
    assert (d1.lat, d1.lon) == pytest.approx(to_latlon(250, -100, ORIGIN))
    assert reg.station_view(d1)["x_m"] == pytest.approx(250, abs=0.01)
    assert store.station_by_mn("88888880000001").id == "D1"


def test_importing_keeps_what_the_station_reported(store: Store, tmp_path: Path) -> None:
    store.commit(Batch(packs=[PackRows.from_pack(make_pack("M1", [1]))], received=1.0))
    f = tmp_path / "s.csv"
    f.write_text("station,kind,lat,lon\nM1,micro,34.8,113.5\n")
    Registry(store, DOMAIN).import_file(f)
    m1 = store.get_station("M1")
    assert (m1.status, m1.kind, m1.first_seen) == ("confirmed", "micro", 1.0)


def test_a_re_import_keeps_what_its_file_has_no_column_for(store: Store, tmp_path: Path) -> None:
    """A second file with fewer columns updates what it has and keeps the rest: a station
    list without the HJ 212 columns must not unpair the dust monitor's logger. An empty
    cell clears its field."""
    reg = Registry(store, DOMAIN)
    full = tmp_path / "full.csv"
    full.write_text("station,kind,name,lat,lon,inlet_height_m,hj212_mn,hj212_pw\n"
                    "D1,dust,Gate 3,34.81,113.51,3.5,88888880000001,pw1\n")
    reg.import_file(full)
    (tmp_path / "names.csv").write_text("station,name\nD1,North gate\n")
    reg.import_file(tmp_path / "names.csv")
    d1 = store.get_station("D1")
    assert (d1.name, d1.kind, d1.lat, d1.lon, d1.inlet_height_m) == (
        "North gate", "dust", 34.81, 113.51, 3.5)
    assert (d1.hj212_mn, d1.hj212_pw) == ("88888880000001", "pw1")
    assert store.station_by_mn("88888880000001").id == "D1"
    (tmp_path / "clear.csv").write_text("station,inlet_height_m\nD1,\n")
    reg.import_file(tmp_path / "clear.csv")
    assert store.get_station("D1").inlet_height_m is None
    (tmp_path / "sites.csv").write_text(
        "site,kind,name,lat,lon,h_m,enterprise\nS1,industrial,Works,34.8,113.5,30,ACME\n")
    reg.import_file(tmp_path / "sites.csv")
    (tmp_path / "sites2.csv").write_text("site,name\nS1,Works 2\n")
    reg.import_file(tmp_path / "sites2.csv")
    s1 = store.get_site("S1")
    assert (s1.name, s1.kind, s1.h_m, s1.enterprise, s1.lat) == (
        "Works 2", "industrial", 30.0, "ACME", 34.8)


def test_sites_then_persons_and_the_sites_csv(store: Store, tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_text(
        "site,x_m,y_m,h_m,kind,name\nC-7,1200,800,2.0,construction,Block 7\nF-1,0,0,,industrial,\n"
    )
    (tmp_path / "persons.csv").write_text(
        "site,name,role,phone\nC-7,Li Wei,manager,+86 100\nC-7,Wang,inspector,\n"
    )
    reg = Registry(store, DOMAIN)
    assert reg.import_file(tmp_path / "sites.csv").sites == 2
    assert reg.import_file(tmp_path / "persons.csv").persons == 2
    site = store.get_site("C-7")
    assert [p.name for p in site.persons] == ["Li Wei", "Wang"]
    lines = reg.sites_csv().splitlines()
    assert lines[0] == "site,x_m,y_m,h_m,kind"
    assert lines[1] == "C-7,1200.0,800.0,2.0,construction"
    assert lines[2] == "F-1,0.0,0.0,,industrial"


def test_geojson_brings_stations_sites_and_areas(store: Store, tmp_path: Path) -> None:
    def feature(geometry: dict, properties: dict, **extra: object) -> dict:
        return {"type": "Feature", "geometry": geometry, "properties": properties, **extra}

    ring = [[113.5, 34.8], [113.6, 34.8], [113.6, 34.9], [113.5, 34.8]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            feature(
                {"type": "Point", "coordinates": [113.51, 34.81]},
                {"station": "R9", "kind": "reference"},
            ),
            feature(
                {"type": "Point", "coordinates": [113.52, 34.8]},
                {"site": "Y-1", "kind": "restaurant"},
            ),
            feature(
                {"type": "Polygon", "coordinates": [ring]},
                {"name": "Zone 1", "kind": "control"},
                id="Z1",
            ),
        ],
    }
    f = tmp_path / "city.geojson"
    f.write_text(json.dumps(doc))
    got = Registry(store, DOMAIN).import_file(f)
    assert (got.stations, got.sites, got.areas) == (1, 1, 1)
    assert store.get_station("R9").lat == 34.81
    assert store.get_area("Z1").kind == "control"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("station,kind,lat,lon\nR1,reference,95,113\n", "line 2: lat 95.0 out of range"),
        ("station,kind,x_m\nR1,micro,10\n", "x_m and y_m go together"),
        ("station,kind\nR1,spaceship\n", "kind must be one of"),
        ("name,value\na,1\n", "cannot tell what the file holds"),
    ],
)
def test_bad_rows_are_refused_with_the_line(
    store: Store, tmp_path: Path, text: str, says: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(InputError, match=None) as err:
        Registry(store, DOMAIN).import_file(f)
    assert says in str(err.value)


def test_local_positions_need_the_domain_origin(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text("site,x_m,y_m,kind\nA,1,2,other\n")
    with pytest.raises(InputError, match="origin_lat"):
        Registry(store, DomainConfig()).import_file(f)


def test_registry_commands(tmp_path: Path, cli) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/c.db"\n[ingest]\nenabled = false\n'
        "[domain]\norigin_lat = 34.8\norigin_lon = 113.5\n"
    )
    (tmp_path / "st.csv").write_text("station,kind,lat,lon,status\nP1,micro,34.8,113.5,pending\n")
    r = cli("cloud", "registry", "import", "--config", str(cfg), str(tmp_path / "st.csv"))
    assert (r.code, r.stdout.strip()) == (0, "1 stations")
    r = cli("cloud", "registry", "list", "--config", str(cfg), "--status", "pending", "--json")
    assert json.loads(r.stdout)["id"] == "P1"
    r = cli("cloud", "registry", "confirm", "--config", str(cfg), "P1")
    assert r.code == 0
    assert r.stdout.startswith("P1 confirmed")
    r = cli("cloud", "registry", "confirm", "--config", str(cfg), "NOPE")
    assert r.code == 2
    assert "NOPE" in r.stderr
    r = cli("cloud", "gaps", "--config", str(cfg))
    assert (r.code, r.stdout) == (0, "")
    # `registry add` on a known station changes what is given, keeps the rest
    r = cli("cloud", "registry", "add", "--config", str(cfg), "D7", "--kind", "dust",
            "--lat", "34.8", "--lon", "113.5", "--mn", "MN7", "--pw", "pw7")
    assert r.code == 0, r.stderr
    r = cli("cloud", "registry", "add", "--config", str(cfg), "D7", "--name", "East gate")
    assert r.code == 0, r.stderr
    r = cli("cloud", "registry", "list", "--config", str(cfg), "--json")
    d7 = next(json.loads(line) for line in r.stdout.splitlines() if '"D7"' in line)
    assert (d7["name"], d7["kind"], d7["hj212_mn"], d7["hj212_pw_set"]) == (
        "East gate", "dust", "MN7", True)
