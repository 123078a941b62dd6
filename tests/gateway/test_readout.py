"""``gateway read`` and ``gateway status`` as a technician runs them, against real Modbus
servers on TCP."""

from __future__ import annotations

import json

from gateway.calibration import CalSet, calibration_path
from gateway.calstore import CalibrationStore
from gateway.outbox import Outbox

KEYS = {"station", "sensor", "quantity", "raw", "value", "unit", "flags", "cal_version", "ts"}


def test_read_once_json_is_the_contract(make_config, devices, cli) -> None:
    cfg = make_config(sensors=devices.sensors())
    store = CalibrationStore(calibration_path(cfg.outbox), cfg.station.id)
    store.add(CalSet("pm", "pm25", slope=0.5, offset=2.0), now=0.0)
    store.close()
    r = cli("gateway", "read", "--config", str(cfg.path), "--once", "--json")
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["sensor"], x["quantity"]) for x in rows] == [
        ("pm", "pm25"), ("pm", "pm10"), ("pm", "tsp"), ("met", "rh"), ("met", "temp"),
    ]  # fmt: skip
    for x in rows:
        assert set(x) >= KEYS and x["station"] == "GX-T-001" and x["ts"].endswith("Z")
    by = {x["quantity"]: x for x in rows}
    assert by["pm25"]["raw"] == 35 and by["pm25"]["value"] == 19.5
    assert by["pm25"]["cal_version"] == 1 and by["pm25"]["flags"] == "N"
    assert by["pm10"]["value"] == by["pm10"]["raw"] == 80 and by["pm10"]["cal_version"] == 0
    assert by["rh"]["raw"] == 65.8 and by["temp"]["raw"] == 21.5 and by["temp"]["unit"] == "Cel"


def test_a_dead_device_is_flagged_not_fatal(make_config, devices, cli) -> None:
    devices.sim.silence(3)
    cfg = make_config(sensors=devices.sensors(timeout_s=0.1))
    r = cli("gateway", "read", "--config", str(cfg.path), "--once")
    assert r.code == 0, r.stderr
    pm = [line for line in r.stdout.splitlines() if " pm " in line]
    assert len(pm) == 3 and all("  B  " in line for line in pm)
    assert any("met" in line and "  N  " in line for line in r.stdout.splitlines())


def test_status_without_and_with_a_state_file(make_config, cli) -> None:
    cfg = make_config()
    r = cli("gateway", "status", "--config", str(cfg.path))
    assert r.code == 0 and "not running" in r.stdout and "no such file" in r.stdout
    with Outbox(cfg.outbox.path) as box:
        from gateway.model import Reading

        box.add([Reading("GX-T-001", "pm", "pm25", "ug/m3", 1.78e9, 1.0, 1.0)] * 3)
        epoch = box.epoch
    state = {"state": "running", "updated": 1.78e9, "connected": False,
             "last_uplink_error": "cannot connect: refused", "reconnects": 2, "resends": 0,
             "devices": {"pm": {"available": False, "last_error": "no answer"}},
             "actuators": [{"name": "spray", "on": True, "reason": "rule dust"}],
             "readings": {"N": 3}}  # fmt: skip
    (cfg.outbox.path.parent / "outbox-state.json").write_text(json.dumps(state))
    r = cli("gateway", "status", "--config", str(cfg.path))
    assert r.code == 0, r.stderr
    assert "3 readings kept" in r.stdout and epoch in r.stdout
    assert "NOT connected (cannot connect: refused)" in r.stdout
    assert "UNAVAILABLE — no answer" in r.stdout and "spray        ON" in r.stdout
    j = json.loads(cli("gateway", "status", "--config", str(cfg.path), "--json").stdout)
    assert j["outbox"]["depth"] == 3 and j["daemon"]["running"] is False


def test_bad_config_is_one_line_exit_2(tmp_path, cli) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text('[station]\nid = "X"\nkind = "micro"\nlat = 1\nlon = 1\ninlet_height_m = 1\n'
                   '[outbox]\npaht = "x"\n')  # fmt: skip
    r = cli("gateway", "read", "--config", str(bad), "--once", "--json")
    assert r.code == 2 and r.stderr.count("\n") == 1 and "paht" in r.stderr
