"""The store's one interface, run on both back ends (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.store import NotFound, open_store, parse_store_url
from cloud.store.migrations import LATEST
from cloud.store.types import (
    AckUpdate,
    Area,
    Batch,
    Calibration,
    CommandRecord,
    Health,
    PackRows,
    Person,
    Quarantined,
    Site,
    Station,
    StatusUpdate,
)
from protocols.errors import ConfigError, InputError
from protocols.telemetry import Ack, Pack, Record, Status
from tests.cloud.conftest import T0, make_pack


def rows(station: str, ids, **kw) -> PackRows:
    return PackRows.from_pack(make_pack(station, ids, **kw))


def commit(store, *packs: PackRows, received: float = T0 + 5):
    return store.commit(Batch(packs=packs, received=received))


# --------------------------------------------------------------------------- urls


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("sqlite:///var/lib/airtrace/cloud.db", "sqlite", "/var/lib/airtrace/cloud.db"),
        ("sqlite:////tmp/x.db", "sqlite", "/tmp/x.db"),
        ("sqlite:relative.db", "sqlite", "relative.db"),
        ("sqlite://relative.db", "sqlite", "relative.db"),
        ("data/cloud.db", "sqlite", "data/cloud.db"),
        ("/abs/cloud.db", "sqlite", "/abs/cloud.db"),
        ("postgresql://u@h/db", "postgres", "postgresql://u@h/db"),
        ("postgres://u@h:5433/db", "postgres", "postgres://u@h:5433/db"),
    ],
)
def test_store_urls(url: str, kind: str, where: str) -> None:
    parsed = parse_store_url(url)
    assert parsed.kind == kind
    assert str(parsed.path if kind == "sqlite" else parsed.dsn) == where


@pytest.mark.parametrize("url", ["", "mysql://x/y", "sqlite:", "sqlite:///", "postgresql:db"])
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_store_url(url)


def test_sqlite_creates_parent_and_relative_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:sub/dir/c.db") as s:
        assert s.schema_version() == LATEST
    assert (tmp_path / "sub" / "dir" / "c.db").is_file()


# --------------------------------------------------------------------------- readings


def test_migrations_are_idempotent(store_url: str) -> None:
    for _ in range(2):
        with open_store(store_url) as s:
            assert s.schema_version() == LATEST


def test_resend_is_a_no_op_and_every_field_is_kept(store) -> None:
    pack = Pack(
        station="S1",
        epoch="ep",
        records=(
            Record(1, "pm25", "ug/m3", T0, 12.5, raw=13.0, flag="N", cal=3, sensor="pm"),
            Record(2, "pm25", "ug/m3", T0 + 10, None, raw=None, flag="D", cal="v2", why="fault"),
        ),
    )
    first = commit(store, PackRows.from_pack(pack), received=T0 + 1)
    assert (first.new, first.duplicates) == (2, 0)
    again = commit(store, PackRows.from_pack(pack), received=T0 + 99)
    assert (again.new, again.duplicates) == (0, 2)
    got = list(store.iter_readings())
    assert [(r.station, r.epoch, r.id) for r in got] == [("S1", "ep", 1), ("S1", "ep", 2)]
    a, b = got
    assert (a.quantity, a.ts, a.value, a.raw, a.unit, a.q, a.cal, a.sensor, a.why) == (
        "pm25", T0, 12.5, 13.0, "ug/m3", "N", "3", "pm", None,
    )  # fmt: skip
    assert (b.value, b.raw, b.q, b.cal, b.why) == (None, None, "D", "v2", "fault")
    assert a.received == T0 + 1  # the first copy stands
    assert store.reading_count("S1") == 2


def test_a_big_batch_with_resends_inside_counts_and_keeps_each_reading_once(store) -> None:
    """Several thousand rows (SQLite's multi-row INSERT chunks, PostgreSQL's COPY), two
    stations, a resend of part of the batch inside the same batch and one of an earlier one;
    then text that a text-format COPY would have to escape."""
    commit(store, rows("B", range(1, 101)))
    batch = [rows("A", range(1, 2346)), rows("B", range(50, 1301)), rows("A", range(2000, 2400))]
    got = commit(store, *batch)
    assert (got.new, got.duplicates) == (2399 + 1200, (2345 + 400 - 2399) + 51)
    assert store.reading_count("A") == 2399
    assert store.reading_count("B") == 1300
    assert [r.id for r in store.iter_readings(station="A")] == list(range(1, 2400))
    odd = "tab\there, new\nline, back\\slash, \u00b5g/m\u00b3, quote ' \" and \u2603"
    row = (7, "pm25", T0, -0.0, None, "\u00b5g/m\u00b3", "D", "x", None, odd)
    commit(store, PackRows("C", "e1", [row]))
    (c7,) = store.iter_readings(station="C")
    assert (c7.id, c7.value, c7.raw, c7.unit, c7.q, c7.cal, c7.why) == (7, 0.0, *row[4:8], odd)


def test_sqlite_keeps_within_a_build_with_few_bound_variables(tmp_path: Path) -> None:
    """A SQLite built with SQLITE_MAX_VARIABLE_NUMBER = 999 (before 3.32) takes 99 rows a
    statement, never more."""
    import sqlite3

    with open_store(f"sqlite:///{tmp_path}/few.db") as store:
        store._conn().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        got = commit(store, rows("A", range(1, 1235)), rows("A", range(1200, 1301)))
        assert (got.new, got.duplicates) == (1300, 35)
        assert [r.id for r in store.iter_readings(station="A")] == list(range(1, 1301))


def test_epochs_keep_restarted_counts_apart(store) -> None:
    commit(store, rows("S1", [1, 2, 3], epoch="old"))
    commit(store, rows("S1", [1, 2], epoch="new"))
    assert store.reading_count() == 5
    assert [c.epoch for c in store.custody("S1")] == ["new", "old"]


def test_readings_of_an_unknown_station_register_it_pending(store) -> None:
    commit(store, rows("NEW-1", [1]))
    st = store.get_station("NEW-1")
    assert st is not None
    assert (st.status, st.kind, st.lat) == ("pending", "other", None)


def test_iter_readings_orders_filters_and_pages(store) -> None:
    commit(store, rows("B", [3, 1, 2]), rows("A", [2, 1], epoch="z"), rows("A", [1], epoch="y"))
    keys = [(r.station, r.epoch, r.id) for r in store.iter_readings(chunk=2)]
    assert keys == [
        ("A", "y", 1), ("A", "z", 1), ("A", "z", 2), ("B", "e1", 1), ("B", "e1", 2), ("B", "e1", 3),
    ]  # fmt: skip
    assert [r.id for r in store.iter_readings(station="B", since=T0 + 20, until=T0 + 30)] == [2]
    assert store.series("B", "pm25", T0, T0 + 100)[0][0] == T0 + 10


def test_streams_track_what_each_station_measures(store) -> None:
    commit(store, rows("A", [1, 2]), rows("A", [3], quantity="pm10"))
    assert [(s[1], s[3]) for s in store.streams("A")] == [("pm10", T0 + 30), ("pm25", T0 + 20)]
    assert [r.id for r in store.latest_readings("A", "pm25", limit=1)] == [2]


def test_concurrent_overlapping_commits_store_each_reading_once(store) -> None:
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for k in range(10):
                ids = range(1 + k * 20, 41 + k * 20)  # overlaps the other worker and itself
                commit(store, rows("S2", ids), rows("S1", ids[offset:]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.reading_count("S2") == 220
    assert len(list(store.iter_readings(station="S1"))) == 220


# --------------------------------------------------------------------------- custody


def test_watermark_stops_at_a_hole_and_moves_when_it_is_filled(store) -> None:
    commit(store, rows("S", [1, 2, 3, 5, 6]))
    custody, gaps = store.advance_custody("S", "e1", T0)
    assert (custody.upto, gaps) == (3, [])
    commit(store, rows("S", [4]))
    custody, gaps = store.advance_custody("S", "e1", T0)
    assert (custody.upto, gaps) == (6, [])


def test_ids_below_the_floor_are_counted_lost_not_waited_for(store) -> None:
    commit(store, rows("S", [1, 2, 6, 7]))
    assert store.advance_custody("S", "e1", T0)[0].upto == 2
    commit(store, rows("S", [8], floor=5))  # ids < 5 are gone from the gateway for good
    custody, gaps = store.advance_custody("S", "e1", T0 + 1)
    assert custody.upto == 4  # 5 is still in the gateway's outbox: wait for it
    assert [(g.first_id, g.last_id) for g in gaps] == [(3, 4)]
    commit(store, rows("S", [9], floor=7))
    custody, gaps = store.advance_custody("S", "e1", T0 + 2)
    assert custody.upto == 9
    assert [(g.first_id, g.last_id) for g in gaps] == [(5, 5)]
    assert custody.lost == 3
    assert [(g.first_id, g.last_id, g.missing) for g in store.gaps("S")] == [(3, 4, 2), (5, 5, 1)]
    commit(store, rows("S", [4]))  # a late copy of a lost reading is still kept
    assert [g.missing for g in store.gaps("S")] == [1, 1]
    assert store.advance_custody("S", "e1", T0 + 3)[0].upto == 9  # never moves back


def test_a_floor_beyond_everything_stored_moves_the_watermark_to_it(store) -> None:
    commit(store, rows("S", [10, 11], floor=10))
    custody, gaps = store.advance_custody("S", "e1", T0)
    assert custody.upto == 11
    assert [(g.first_id, g.last_id) for g in gaps] == [(1, 9)]


def test_watermark_walks_a_long_backlog_in_chunks(store) -> None:
    commit(store, rows("S", range(1, 25_001)))
    assert store.advance_custody("S", "e1", T0)[0].upto == 25_000


def test_watermark_walks_past_a_long_contiguous_run_to_a_hole(store) -> None:
    commit(store, rows("S", [*range(1, 12_001), *range(12_003, 12_010)]))
    assert store.advance_custody("S", "e1", T0)[0].upto == 12_000  # the walk, not the count
    commit(store, rows("S", [12_001, 12_002]))
    assert store.advance_custody("S", "e1", T0)[0].upto == 12_009  # the count alone


def _model_advance(stored: set[int], upto: int, floor: int) -> tuple[int, int]:
    """DESIGN 4.2 by the letter: the largest N with every id <= N stored or below the floor
    (never moving back); returns (N, how many ids it passed over as lost)."""
    lost = 0
    while upto + 1 in stored or upto + 1 < floor:
        lost += upto + 1 not in stored
        upto += 1
    return upto, lost


_station_n = iter(range(10**9))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrivals=st.lists(
        st.tuples(st.sets(st.integers(1, 60), min_size=1, max_size=25), st.integers(0, 70)),
        min_size=1,
        max_size=6,
    )
)
def test_the_watermark_is_every_id_stored_or_forgiven(
    store, arrivals: list[tuple[set[int], int]]
) -> None:
    """Whether the engine's count or the walk moves it, the watermark and the lost count
    follow the contract exactly, resends and packs out of order included. One store serves
    every example; each gets a station of its own."""
    station = f"H{next(_station_n)}"
    stored: set[int] = set()
    upto = floor = lost = 0
    for ids, pack_floor in arrivals:
        commit(store, rows(station, sorted(ids), floor=pack_floor or None))
        stored |= ids
        floor = max(floor, pack_floor)
        upto, passed = _model_advance(stored, upto, floor)
        lost += passed
        custody, _ = store.advance_custody(station, "e1", T0)
        assert (custody.upto, custody.lost) == (upto, lost)


# --------------------------------------------------------------------------- statuses, acks


def test_online_status_registers_a_pending_station_and_offline_marks_it(store) -> None:
    online = Status(
        state="online",
        kind="micro",
        lat=34.81,
        lon=113.55,
        inlet_height_m=3.5,
        sensors=({"name": "pm", "profile": "rs-pm-n01"},),
        version="0.1.0",
        epoch="ep1",
    )
    store.commit(Batch(statuses=[StatusUpdate("GX-1", online, T0)]))
    st = store.get_station("GX-1")
    assert (st.status, st.kind, st.lat, st.lon, st.inlet_height_m, st.state) == (
        "pending", "micro", 34.81, 113.55, 3.5, "online",
    )  # fmt: skip
    assert st.sensors[0]["profile"] == "rs-pm-n01"
    assert (st.gateway, st.epoch) == ("0.1.0", "ep1")
    store.commit(Batch(statuses=[StatusUpdate("GX-1", Status(state="offline"), T0 + 10)]))
    assert store.get_station("GX-1").state == "offline"
    # an older online status processed late does not undo the newer offline one
    store.commit(Batch(statuses=[StatusUpdate("GX-1", online, T0 + 5)]))
    assert store.get_station("GX-1").state == "offline"


def test_a_confirmed_station_keeps_the_operators_position(store) -> None:
    store.put_station(Station("GX-2", kind="reference", status="confirmed", lat=1.0, lon=2.0))
    moved = Status(state="online", kind="micro", lat=3.0, lon=4.0)
    store.commit(Batch(statuses=[StatusUpdate("GX-2", moved, T0)]))
    st = store.get_station("GX-2")
    assert (st.kind, st.lat, st.lon, st.state) == ("reference", 1.0, 2.0, "online")
    assert st.reported["lat"] == 3.0


def test_acks_complete_commands(store) -> None:
    store.add_command(CommandRecord("c1", "S", "ping", {}, T0))
    store.commit(Batch(acks=[AckUpdate("S", Ack("c1", "ok", result={"pong": 1}), T0 + 1)]))
    cmd = store.get_command("c1")
    assert (cmd.status, cmd.acked, cmd.result) == ("ok", T0 + 1, {"pong": 1})
    assert [c.id for c in store.commands("S")] == ["c1"]


def test_quarantine_keeps_reason_and_payload(store) -> None:
    item = Quarantined(
        T0, "mqtt", "airtrace/v1/S/up/telemetry", "not JSON", "telemetry", b"\x00\xff", 2, "S"
    )
    store.commit(Batch(quarantine=[item, item]))
    assert store.quarantine_counts() == {"telemetry": 2}
    q = store.quarantine_entries(limit=1)[0]
    assert (q.reason, q.payload, q.station, q.size) == ("not JSON", b"\x00\xff", "S", 2)


# --------------------------------------------------------------------------- registry and the rest


def test_station_registry_crud(store) -> None:
    store.put_station(
        Station(
            "R1",
            kind="reference",
            status="confirmed",
            lat=34.8,
            lon=113.5,
            hj212_mn="MN1",
            hj212_pw="pw",
        )
    )
    assert store.station_by_mn("MN1").id == "R1"
    with pytest.raises(InputError, match="MN1"):
        store.put_station(Station("R2", hj212_mn="MN1"))
    store.put_station(Station("R2"))
    assert [s.id for s in store.stations(status="pending")] == ["R2"]
    assert store.confirm_station("R2", T0).status == "confirmed"
    with pytest.raises(NotFound):
        store.confirm_station("nope", T0)
    assert store.delete_station("R2") is True
    assert store.get_station("R2") is None


def test_sites_with_persons_and_areas(store) -> None:
    site = Site(
        "SITE-1", kind="construction", name="Block 7", lat=34.8, lon=113.5, h_m=2.0,
        control_level="A", persons=(Person("SITE-1", "Li Wei", "manager", "+86 100"),),
    )  # fmt: skip
    store.put_site(site)
    assert store.get_site("SITE-1") == site
    store.put_site(Site("SITE-1", kind="construction"))  # replace: persons go too
    assert store.get_site("SITE-1").persons == ()
    assert [s.id for s in store.sites(kind="construction")] == ["SITE-1"]
    assert store.delete_site("SITE-1")
    area = Area(
        "CELL-1",
        "cell",
        "grid",
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    )
    store.put_area(area)
    assert store.areas() == [area]


def test_calibrations_and_health(store) -> None:
    cal = Calibration(
        station="M1", quantity="pm25", reference="R1", window_start=T0, window_end=T0 + 86400,
        n=72, slope=0.6, offset=2.0, kappa=0.25, r2=0.9, rmse=2.5, raw_slope=1.5,
        raw_intercept=-1.0, raw_r2=0.85, raw_rmse=9.0, meets_targets=True, created=T0, sensor="pm",
    )  # fmt: skip
    seq = store.add_calibration(cal)
    store.set_calibration_command(seq, "cmd-1")
    got = store.calibrations("M1")[0]
    assert got.seq == seq
    assert got.command_id == "cmd-1"
    assert (got.slope, got.offset, got.kappa, got.meets_targets) == (0.6, 2.0, 0.25, True)
    store.put_health([Health("M1", "stuck", ("pm25 flat for 70 min",), T0, T0 - 5)])
    assert store.health()["M1"].reasons == ("pm25 flat for 70 min",)


def test_inversion_results_are_kept_per_hour_and_quantity(store) -> None:
    store.put_inversion_result(T0, "pm10", {"sources": [], "background_ug_m3": 30.0}, T0 + 60)
    store.put_inversion_result(T0, "pm10", {"sources": [{"x_m": 50.0}]}, T0 + 120)  # replaces
    store.put_inversion_result(T0 + 3600, "pm25", {"sources": []}, T0 + 3700)
    got = store.inversion_results(quantity="pm10")
    assert got == [(T0, "pm10", {"sources": [{"x_m": 50.0}]}, T0 + 120)]
    assert len(store.inversion_results(since=T0 + 1)) == 1
    assert store.last_inversion_hour("pm10") == T0
    assert store.last_inversion_hour("pm25") == T0 + 3600
    assert store.last_inversion_hour("no2") is None
