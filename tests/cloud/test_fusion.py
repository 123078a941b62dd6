"""Fusion: means with data capture, inversion inputs, station health, co-location."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cloud import colocation
from cloud.commands import Commander
from cloud.config import DomainConfig, FusionConfig
from cloud.fusion import FIVE_MIN, HOUR, Fusion
from cloud.health import HealthJudge
from cloud.store import Store, open_store
from cloud.store.types import Batch, PackRows, Station, StatusUpdate
from protocols.geo import Origin, to_local
from protocols.telemetry import Status
from tests.cloud.conftest import wait_for

H0 = 1_780_002_000.0 - (1_780_002_000.0 % HOUR)  # an hour boundary
ORIGIN = Origin(34.80, 113.50)
DOMAIN = DomainConfig(origin_lat=ORIGIN.lat, origin_lon=ORIGIN.lon)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/f.db") as s:
        yield s


class Feed:
    """Writes readings of one station straight into the store, ids counting up."""

    def __init__(self, store: Store, station: str) -> None:
        self.store, self.station, self.next_id = store, station, 1

    def add(self, quantity: str, points, *, unit: str = "ug/m3", sensor: str | None = "pm") -> None:
        rows = []
        for p in points:
            ts, value, *rest = p
            raw = rest[0] if rest else value
            q = rest[1] if len(rest) > 1 else "N"
            rows.append((self.next_id, quantity, ts, value, raw, unit, q, "0", sensor, None))
            self.next_id += 1
        received = max(r[2] for r in rows)
        self.store.commit(Batch(packs=[PackRows(self.station, "e", rows)], received=received))


def every(step: float, start: float, end: float, value=lambda t: 10.0):
    t = start
    while t < end:
        yield (t, value(t))
        t += step


# --------------------------------------------------------------------------- means


def test_a_full_hour_of_10_s_readings_is_a_valid_hourly_mean(store: Store) -> None:
    Feed(store, "S").add("pm25", every(10, H0, H0 + HOUR, lambda t: 10.0 + (t - H0) / 360))
    m = Fusion(store).hourly("S", "pm25", H0)
    assert m is not None
    assert m.valid
    assert m.n == 360
    assert m.capture_min == pytest.approx(60, abs=0.2)
    assert m.value == pytest.approx(np.mean([10 + i * 10 / 360 for i in range(360)]))


@pytest.mark.parametrize(("minutes", "valid"), [(40, False), (44, False), (46, True)])
def test_an_hourly_mean_needs_45_minutes_of_valid_data(
    store: Store, minutes: int, valid: bool
) -> None:
    Feed(store, "S").add("pm25", every(10, H0, H0 + minutes * 60))
    m = Fusion(store).hourly("S", "pm25", H0)
    assert m is not None
    assert m.valid is valid


def test_flagged_readings_count_neither_for_the_mean_nor_the_capture(store: Store) -> None:
    feed = Feed(store, "S")
    feed.add("pm25", [(t, 10.0) for t, _ in every(10, H0, H0 + 30 * 60)])
    feed.add("pm25", [(t, 500.0, 500.0, "D") for t, _ in every(10, H0 + 30 * 60, H0 + HOUR)])
    m = Fusion(store).hourly("S", "pm25", H0)
    assert (m.value, m.valid) == (10.0, False)
    assert m.capture_min == pytest.approx(30, abs=0.2)


def test_ten_minute_data_covers_its_hour_and_hourly_data_stands_alone(store: Store) -> None:
    Feed(store, "S").add("pm10", every(600, H0, H0 + HOUR), sensor="hj212:2051")
    Feed(store, "H").add("pm10", [(H0, 42.0)], sensor="hj212:2061")
    fusion = Fusion(store)
    assert fusion.hourly("S", "pm10", H0).valid
    hourly = fusion.hourly("H", "pm10", H0)
    assert (hourly.valid, hourly.value) == (True, 42.0)


def test_five_minute_means(store: Store) -> None:
    Feed(store, "S").add("pm25", every(10, H0, H0 + 600, lambda t: 1.0 if t < H0 + 300 else 3.0))
    got = Fusion(store).means("S", "pm25", H0, H0 + 600, FIVE_MIN)
    assert [(m.start - H0, m.value, m.valid) for m in got] == [(0, 1.0, True), (300, 3.0, True)]


# --------------------------------------------------------------------------- inversion inputs


def test_hourly_obs_rows_are_placed_in_the_local_frame(store: Store) -> None:
    store.put_station(
        Station(
            "R1", kind="reference", status="confirmed", lat=34.81, lon=113.52, inlet_height_m=4.0
        )
    )
    store.put_station(Station("D1", kind="dust", status="confirmed", lat=34.80, lon=113.50))
    store.put_station(Station("P1", kind="micro", status="pending", lat=34.80, lon=113.51))
    Feed(store, "R1").add("pm25", every(60, H0, H0 + HOUR, lambda t: 40.0))
    Feed(store, "D1").add("pm25", every(60, H0, H0 + HOUR, lambda t: 0.05), unit="mg/m3")
    Feed(store, "P1").add("pm25", every(60, H0, H0 + HOUR, lambda t: 99.0))
    rows = Fusion(store, domain=DOMAIN).hourly_obs(H0 + 1800, "pm25")
    assert [r["station"] for r in rows] == ["D1", "R1"]
    d1, r1 = rows
    x, y = to_local(34.81, 113.52, ORIGIN)
    assert (r1["x_m"], r1["y_m"], r1["z_m"], r1["value"]) == (round(x, 2), round(y, 2), 4.0, 40.0)
    assert r1["time"] == "2026-05-28T21:00:00Z" or r1["time"].endswith(":00:00Z")
    assert d1["value"] == pytest.approx(50.0)  # mg/m3 -> ug/m3
    assert d1["z_m"] == 3.0
    assert r1["sigma"] == pytest.approx(2.0, rel=0.05)  # max(2, 5 % of 40)
    assert d1["sigma"] == pytest.approx(10.0, rel=0.05)  # max(8, 20 % of 50)
    assert set(r1) == {"time", "station", "x_m", "y_m", "z_m", "value", "sigma", "kind"}


def test_hourly_met_vector_averages_the_wind(store: Store) -> None:
    store.put_station(Station("M1", kind="met", status="confirmed", lat=34.8, lon=113.5))
    feed = Feed(store, "M1")
    times = [t for t, _ in every(60, H0, H0 + HOUR)]
    feed.add("wind_speed", [(t, 3.0) for t in times], unit="m/s", sensor="wind")
    feed.add(
        "wind_dir",
        [(t, 350.0 if i % 2 else 10.0) for i, t in enumerate(times)],
        unit="deg",
        sensor="wind",
    )
    rows = Fusion(store).hourly_met(H0)
    assert len(rows) == 1
    assert rows[0]["wind_speed_ms"] == 3.0
    assert min(rows[0]["wind_dir_deg"], 360 - rows[0]["wind_dir_deg"]) < 0.1  # north, not south


def test_hourly_met_pairs_an_anemometer_and_a_vane_read_apart(store: Store) -> None:
    """Speed and direction from two transmitters polled one after the other carry times a
    few seconds apart: each speed goes with the direction read nearest to it (the hour was
    lost as 'without met' when only the very same second paired them)."""
    store.put_station(Station("M1", kind="met", status="confirmed", lat=34.8, lon=113.5))
    feed = Feed(store, "M1")
    times = [t for t, _ in every(60, H0, H0 + HOUR)]
    feed.add("wind_speed", [(t + 0.4, 3.0) for t in times], unit="m/s", sensor="anemometer")
    feed.add("wind_dir", [(t + 13.3, 250.0) for t in times], unit="deg", sensor="vane")
    (row,) = Fusion(store).hourly_met(H0)
    assert row["wind_speed_ms"] == 3.0 and row["wind_dir_deg"] == pytest.approx(250.0)


def test_hourly_met_does_not_pair_readings_far_apart(store: Store) -> None:
    store.put_station(Station("M1", kind="met", status="confirmed", lat=34.8, lon=113.5))
    feed = Feed(store, "M1")
    times = [t for t, _ in every(90, H0, H0 + HOUR)]
    feed.add("wind_speed", [(t, 3.0) for t in times], unit="m/s", sensor="anemometer")
    feed.add("wind_dir", [(t + 45.0, 70.0) for t in times], unit="deg", sensor="vane")
    cfg = FusionConfig(max_sample_gap_s=120)
    assert Fusion(store, cfg).hourly_met(H0)  # 45 s: within a gap the data capture bridges
    cfg = FusionConfig(max_sample_gap_s=30)
    assert Fusion(store, cfg).hourly_met(H0) == []  # not within 30 s: no direction known


def test_hourly_met_gives_the_hours_sigma_theta(store: Store) -> None:
    """The wind vanes' spread over the hour (Yamartino; the mean over the met stations): the
    meander that widens an hourly-mean plume."""
    from cloud.met import yamartino_sigma_theta

    times = [t for t, _ in every(60, H0, H0 + HOUR)]
    want = []
    for sid, spread in (("M1", 8.0), ("M2", 30.0)):
        store.put_station(Station(sid, kind="met", status="confirmed", lat=34.8, lon=113.5))
        feed = Feed(store, sid)
        dirs = [(350.0 + spread * math.sin(i * 0.7)) % 360.0 for i in range(len(times))]
        want.append(yamartino_sigma_theta(dirs))
        feed.add("wind_speed", [(t, 3.0) for t in times], unit="m/s", sensor="wind")
        feed.add("wind_dir", list(zip(times, dirs, strict=True)), unit="deg", sensor="wind")
    (row,) = Fusion(store, domain=DOMAIN).hourly_met(H0)
    assert 5.0 < want[0] < want[1]
    assert row["sigma_theta_deg"] == pytest.approx(sum(want) / 2, abs=0.01)
    assert "stability" not in row  # the inversion reads the class from wind and sun


def test_hourly_met_without_enough_direction_samples_gives_no_sigma_theta(store: Store) -> None:
    store.put_station(Station("M1", kind="met", status="confirmed", lat=34.8, lon=113.5))
    feed = Feed(store, "M1")
    times = [t for t, _ in every(600, H0, H0 + HOUR)]  # one every 10 minutes: too few
    feed.add("wind_speed", [(t, 3.0) for t in times], unit="m/s", sensor="wind")
    feed.add("wind_dir", [(t, 90.0 + 10 * (i % 2)) for i, t in enumerate(times)], unit="deg",
             sensor="wind")  # fmt: skip
    rows = Fusion(store, FusionConfig(max_sample_gap_s=900)).hourly_met(H0)
    assert set(rows[0]) == {"time", "wind_speed_ms", "wind_dir_deg"}


# --------------------------------------------------------------------------- health


def test_health_offline_stale_stuck_and_drift(store: Store) -> None:
    for sid, lon in (("A", 113.500), ("B", 113.501), ("C", 113.502), ("OFF", 113.503)):
        store.put_station(Station(sid, kind="micro", status="confirmed", lat=34.8, lon=lon))
    now = H0 + 24 * HOUR + 600
    start = now - 24 * HOUR - 600
    Feed(store, "A").add("pm25", every(60, start, now, lambda t: 20.0 + math.sin(t / 500)))
    b = Feed(store, "B")
    b.add("pm25", every(60, start, now, lambda t: 21.0 + math.sin(t / 500)))
    Feed(store, "C").add("pm25", every(60, start, now, lambda t: 60.0 + math.sin(t / 500)))  # 3x
    Feed(store, "OFF").add(
        "pm25", every(60, start, now - 3 * HOUR, lambda t: 7.0)
    )  # flat, then nothing
    store.commit(Batch(statuses=[StatusUpdate("OFF", Status(state="offline"), now)]))
    cfg = FusionConfig(drift_hours=12)
    got = {h.station: h for h in HealthJudge(store, cfg, DOMAIN).assess(now)}
    assert got["A"].status == "ok"
    assert got["C"].status == "drift"
    assert "neighbours" in got["C"].reasons[0]
    assert got["OFF"].status == "offline"
    assert any("no data for" in r for r in got["OFF"].reasons)
    b.add("pm25", every(60, now, now + 3600, lambda t: 5.0))
    later = {h.station: h for h in HealthJudge(store, cfg, DOMAIN).assess(now + 3600, drift=False)}
    assert later["B"].status == "stuck"


# --------------------------------------------------------------------------- co-location


def _colocated(store: Store, rng: np.random.Generator, raw_of, hours: int = 120) -> None:
    store.put_station(Station("REF", kind="reference", status="confirmed", lat=34.8, lon=113.5))
    store.put_station(Station("MIC", kind="micro", status="confirmed", lat=34.8, lon=113.5005))
    ref, mic = Feed(store, "REF"), Feed(store, "MIC")
    start = H0 - hours * HOUR
    truth = 30 + 20 * np.sin(np.arange(hours) / 7.0) + rng.normal(0, 5, hours).clip(-20, 20)
    rh = 60 + 30 * np.sin(np.arange(hours) / 5.0)
    for h in range(hours):
        t0 = start + h * HOUR
        times = [t0 + k * 300 for k in range(12)]
        ref.add("pm25", [(t, float(truth[h])) for t in times], sensor="bam")
        raw = float(raw_of(truth[h], rh[h]) + rng.normal(0, 1.0))
        mic.add("pm25", [(t, raw, raw) for t in times], sensor="pm")
        mic.add("rh", [(t, float(rh[h])) for t in times], unit="%RH", sensor="th")


def test_colocation_recovers_a_linear_bias_and_judges_it_against_the_epa_targets(
    store: Store,
) -> None:
    _colocated(store, np.random.default_rng(1), lambda c, rh: 1.6 * c + 3.0)
    cfg = FusionConfig(colocation_days=10, colocation_min_hours=48)
    cal = colocation.colocate(Fusion(store, cfg, DOMAIN), "MIC", "REF", "pm25", H0, cfg=cfg)
    assert cal.kappa is None
    assert cal.slope == pytest.approx(1 / 1.6, rel=0.03)
    assert cal.offset == pytest.approx(-3 / 1.6, abs=0.8)
    assert cal.raw_slope == pytest.approx(1.6, rel=0.05)
    assert cal.raw_rmse > 7 and cal.rmse < 2.0
    assert cal.meets_targets
    assert cal.sensor == "pm"
    assert colocation.pairs(store.stations(), Fusion(store, cfg, DOMAIN), 150.0) == [("MIC", "REF")]


def test_colocation_takes_the_humidity_model_when_it_helps(store: Store) -> None:
    kappa = 0.4
    growth = lambda rh: float(colocation.growth_factor(np.array([rh]), kappa)[0])  # noqa: E731
    _colocated(store, np.random.default_rng(2), lambda c, rh: 1.2 * c * growth(rh))
    cfg = FusionConfig(colocation_days=10, colocation_min_hours=48)
    cal = colocation.colocate(Fusion(store, cfg, DOMAIN), "MIC", "REF", "pm25", H0, cfg=cfg)
    assert cal.kappa == pytest.approx(kappa, abs=0.1)
    assert cal.slope == pytest.approx(1 / 1.2, rel=0.1)


def test_colocation_needs_enough_paired_hours(store: Store) -> None:
    _colocated(store, np.random.default_rng(3), lambda c, rh: c, hours=10)
    cfg = FusionConfig(colocation_min_hours=48)
    with pytest.raises(colocation.ColocationError, match="10 valid paired hours"):
        colocation.colocate(Fusion(store, cfg, DOMAIN), "MIC", "REF", "pm25", H0, cfg=cfg)


def test_the_pushed_command_carries_what_the_gateway_accepts(store: Store) -> None:
    _colocated(store, np.random.default_rng(4), lambda c, rh: 1.3 * c)
    cfg = FusionConfig(colocation_days=10, colocation_min_hours=48, colocation_rh=False)
    cal = colocation.colocate(Fusion(store, cfg, DOMAIN), "MIC", "REF", "pm25", H0, cfg=cfg)
    sent: list[tuple[str, bytes]] = []
    commander = Commander(store, lambda t, p, **kw: sent.append((t, p)) or True, clock=lambda: H0)
    pushed = colocation.push(commander, cal, H0)
    topic, payload = sent[0]
    assert topic == "airtrace/v1/MIC/down/cmd"
    msg = json.loads(payload)
    assert msg["cmd"] == "set_calibration"
    gateway_keys = {
        "sensor",
        "quantity",
        "kind",
        "slope",
        "offset",
        "points",
        "kappa",
        "source",
        "fit",
        "effective",
        "note",
    }
    assert set(msg["args"]) <= gateway_keys
    assert (msg["args"]["sensor"], msg["args"]["kind"], msg["args"]["source"]) == (
        "pm",
        "linear",
        "colocation",
    )
    assert store.get_command(pushed.command_id).cmd == "set_calibration"


def test_the_fusion_part_judges_health_and_fits_colocated_pairs(tmp_path: Path) -> None:
    from cloud.config import parse_config
    from cloud.service import FusionPart, Service

    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        "[domain]\norigin_lat = 34.8\norigin_lon = 113.5\n[fusion]\ncolocation_days = 10\n"
    )
    service = Service(cfg, clock=lambda: H0)
    try:
        _colocated(service.store, np.random.default_rng(5), lambda c, rh: 1.5 * c + 2)
        FusionPart(service).tick(H0)
        health = service.store.health()
        assert set(health) == {"MIC", "REF"}
        (cal,) = service.store.calibrations("MIC")
        assert (cal.reference, cal.quantity, cal.command_id) == ("REF", "pm25", None)
        assert cal.slope == pytest.approx(1 / 1.5, rel=0.05)
    finally:
        service.stop()


def test_the_inversion_hook_wires_an_hourly_job(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    from cloud.config import parse_config
    from cloud.service import Service

    class HourlyJob:  # the shape cloud/hourly.py (branch science) promises
        def __init__(self, clock, fetch_inputs, save_result, on_sources) -> None:
            self.clock, self.fetch, self.save, self.on_sources = (
                clock,
                fetch_inputs,
                save_result,
                on_sources,
            )

        def tick(self, now: float) -> None:
            hour = now - now % HOUR - HOUR
            obs, met = self.fetch(hour)
            self.save(hour, {"sources": [{"x_m": 1.0}], "n_obs": len(obs), "n_met": len(met)})
            self.on_sources(hour, [{"x_m": 1.0}])

    monkeypatch.setitem(sys.modules, "cloud.hourly", types.SimpleNamespace(HourlyJob=HourlyJob))
    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        "[fusion]\nenabled = false\n[domain]\norigin_lat = 34.8\norigin_lon = 113.5\n"
        "[inversion]\nenabled = true\n"
    )
    service = Service(cfg, clock=lambda: H0 + 60)
    heard: list[float] = []
    service.source_listeners.append(lambda hour, sources: heard.append(hour))
    service.start()
    try:
        assert [p.name for p in service.parts] == ["inversion"]
        wait_for(lambda: heard, 10, "the first round")
        ((hour, quantity, result, _),) = service.store.inversion_results()
        assert (hour, quantity, result["n_obs"]) == (H0 - HOUR, "pm10", 0)
    finally:
        service.stop()
