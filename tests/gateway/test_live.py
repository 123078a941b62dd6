"""``gateway live``: the refreshing table shows each sensor's latest value and state."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from gateway import config
from gateway.clock import SystemClock
from gateway.live import run_live
from tests.gateway.modbus_sim import ModbusSim, Unit
from tests.gateway.station_text import station_toml


def _station(port: int) -> str:
    common = {"transport": "modbus-tcp", "address": f"127.0.0.1:{port}", "interval_s": 0.1,
              "retries": 0}  # fmt: skip
    return station_toml([
        {"name": "th", "profile": "rs-ws-n01", "unit_id": 1, "timeout_s": 1.0, **common},
        {"name": "dust", "profile": "rs-pm-n01", "unit_id": 2, "timeout_s": 0.1, **common},
    ])  # fmt: skip


def test_live_shows_values_and_device_state() -> None:
    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding={0: [0x0292, 0xFF9B]}), 2: Unit(holding={0: [1, 2, 3]})})
        sim.silence(2)
        cfg = config.loads(_station(port))
        out = io.StringIO()
        view = run_live(cfg, clock=SystemClock(), console=Console(file=out, width=140),
                        duration_s=1.0, refresh_s=0.2)  # fmt: skip
    assert view.latest["th", "rh"].raw == 65.8
    assert view.latest["dust", "pm25"].raw is None
    text = out.getvalue()
    assert "GX-T-001" in text and "65.8" in text and "-10.1" in text
    assert "dust" in text and ("failing" in text or "unavailable" in text)


def test_live_command(cli, tmp_path: Path) -> None:
    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding={0: [0x0292, 0xFF9B]}), 2: Unit(holding={0: [1, 2, 3]})})
        path = tmp_path / "station.toml"
        path.write_text(_station(port))
        r = cli("gateway", "live", "--config", str(path), "--duration", "1", "--refresh", "0.2",
                env={"COLUMNS": "140"})  # fmt: skip
    assert r.code == 0, r.stderr
    assert "65.8" in r.stdout and "rh" in r.stdout and "tsp" in r.stdout
