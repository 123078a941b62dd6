"""The maintainer's calibration procedures against real Modbus servers: zero and span
sessions (with and without the daemon running), multi-point sets, history and rollback."""

from __future__ import annotations

import threading
import time

import pytest

from gateway import maintenance
from gateway.calibration import CalibrationError, calibration_path
from gateway.calstore import CalibrationStore
from gateway.clock import FakeClock
from gateway.daemon import Gateway
from gateway.model import Flag


def lines() -> tuple[list[str], object]:
    got: list[str] = []
    return got, got.append


def test_zero_then_span_without_the_daemon(make_config, devices) -> None:
    cfg = make_config(sensors=devices.sensors(interval_s=10))
    clock = FakeClock()
    devices.sim.set(3, holding={0: [4]})  # zero air: the transmitter still says 4
    said, out = lines()
    z = maintenance.zero(cfg, "pm", "pm25", duration_s=60, settle_s=15, out=out, clock=clock)
    assert (z.version, z.kind, z.slope, z.offset) == (1, "linear", 1.0, -4.0)
    assert z.source == "zero/span" and z.fit["n"] == 4 and z.fit["raw_sd"] == 0
    assert any("session #1" in s for s in said)
    devices.sim.set(3, holding={0: [104]})  # span gas of 200 ug/m3 reads 104
    s = maintenance.span(cfg, "pm", "pm25", reference=200, duration_s=30, settle_s=0,
                         out=out, clock=clock)  # fmt: skip
    assert s.version == 2 and s.slope == pytest.approx(2.0) and s.offset == pytest.approx(-8.0)
    assert s.value(4.0) == pytest.approx(0.0) and s.value(104.0) == pytest.approx(200.0)
    assert s.fit["zero_raw"] == 4.0 and s.fit["slope_change"] == pytest.approx(2.0)
    store = CalibrationStore(calibration_path(cfg.outbox), cfg.station.id)
    assert [x.purpose for x in store.sessions()] == ["zero", "span"]
    assert store.sessions(at=clock.now()) == []  # both closed


def test_a_session_without_readings_fails_clearly(make_config, devices) -> None:
    devices.sim.silence(3)
    cfg = make_config(sensors=devices.sensors(interval_s=10, timeout_s=0.05))
    with pytest.raises(CalibrationError, match="gathered 0 readings"):
        maintenance.zero(cfg, "pm", "pm25", duration_s=30, settle_s=0, out=print,
                         clock=FakeClock())  # fmt: skip
    with pytest.raises(CalibrationError, match="measures pm25, pm10, tsp"):
        maintenance.zero(cfg, "pm", "no2", duration_s=30, settle_s=0, out=print,
                         clock=FakeClock())  # fmt: skip


@pytest.mark.slow
def test_zero_while_the_daemon_runs_flags_c_and_still_sends(
    make_config, devices, broker, custody
) -> None:
    cfg = make_config(mqtt=broker.url, sensors=devices.sensors(interval_s=0.1))
    gw = Gateway(cfg)
    t = threading.Thread(target=gw.run, daemon=True)
    t.start()
    try:
        devices.sim.set(3, holding={0: [6]})
        said, out = lines()
        z = maintenance.zero(cfg, "pm", "pm25", duration_s=1.5, settle_s=0.3, out=out)
        assert any("daemon" in s for s in said)
        assert z.offset == -6.0 and z.fit["n"] >= 3
        deadline = time.monotonic() + 10
        while gw.calibrator.current("pm", "pm25", time.time()) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        gw.request_stop()
        t.join(20)
    kept = custody.stream("GX-T-001", gw.outbox.epoch).kept
    flags = {v[4] for v in kept.values() if v[6] == "pm" and v[1] == "pm25"}
    assert Flag.CALIBRATION.value in flags and "N" in flags
    others = {v[4] for v in kept.values() if v[1] == "pm10"}
    assert others == {"N"}  # only the quantity under calibration


def test_points_history_show_rollback(make_config, cli, tmp_path) -> None:
    cfg = make_config()
    c = ("--config", str(cfg.path), "--sensor", "pm", "--quantity", "pm25")
    r = cli("gateway", "calibrate", "points", *c, "--point", "0=1", "--point", "100=150",
            "--point", "50=70")  # fmt: skip
    assert r.code == 0, r.stderr
    assert "v1 stored: points 0->1, 50->70, 100->150" in r.stdout
    csv = tmp_path / "coloc.csv"
    csv.write_text("raw,ref\n10,12\n20,22.5\n30,31.5\n")
    r = cli("gateway", "calibrate", "points", *c, "--file", str(csv), "--fit", "linear",
            "--kappa", "0.4", "--source", "colocation", "--note", "spring co-location")  # fmt: skip
    assert r.code == 0 and "v2 stored: rh slope 0.975" in r.stdout
    r = cli("gateway", "calibrate", "rollback", *c)
    assert r.code == 0 and "v3 stored: points" in r.stdout
    r = cli("gateway", "calibrate", "history", "--config", str(cfg.path))
    assert r.code == 0
    assert [line.split()[:2] for line in r.stdout.splitlines()] == [
        ["pm/pm25", "v1"],
        ["pm/pm25", "v2"],
        ["pm/pm25", "v3"],
    ]
    assert "spring co-location" in r.stdout and "rollback to v1" in r.stdout
    r = cli("gateway", "calibrate", "show", "--config", str(cfg.path))
    assert r.stdout.startswith("* pm/pm25 v3  points")
    for bad in (["--point", "12"], ["--point", "a=b"], []):
        r = cli("gateway", "calibrate", "points", *c, *bad)
        assert r.code == 2 and r.stderr.count("\n") == 1, r.stderr
    r = cli("gateway", "calibrate", "rollback", *c, "--to", "9")
    assert r.code == 2 and "no version 9" in r.stderr
