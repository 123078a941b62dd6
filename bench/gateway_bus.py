"""What a dead device costs its RS485 line, and what the driver costs over bare pymodbus.

Prints one JSON object with three figures, each against a baseline measured in the same
run:

- ``dead_unit_extra_s``: a poll cycle of 8 live transmitters plus one dead unit, minus
  the same cycle without it, against the dead unit's own timeout (ratio ~1: the dead unit
  costs its timeout and nothing else; pymodbus's defaults would cost 12 s);
- ``backed_off_cycle_s``: the cycle once the circuit breaker has backed the dead unit
  off, against the cycle of the 8 live units alone (ratio ~1);
- ``driver_reads_per_s``: Modbus TCP polls per second through ``ModbusDriver`` (plan,
  read, decode, samples) against bare ``read_holding_registers`` calls of the same
  request on a pymodbus client.

Real pymodbus servers: RTU on a pty pair (``firmware_sim.ptypair``), TCP on loopback.
Run: ``.venv/bin/python bench/gateway_bus.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine
from firmware_sim.ptypair import PtyPair
from gateway import config
from gateway.clock import SystemClock
from gateway.drivers.modbus import ModbusDriver
from gateway.poller import FAILURES_TO_BACK_OFF, Poller
from gateway.profiles import load_profile
from protocols.registers import encode
from tests.gateway.modbus_sim import ModbusSim, Unit

LIVE = 8
DEAD_UNIT = 99
DEAD_TIMEOUT_S = 0.2
LOUVER = {"rh": 55.5, "temp": 21.3, "noise": 61.2, "pm25": 35, "pm10": 80, "pressure": 1012}


def louver_words() -> dict[int, list[int]]:
    p = load_profile("louver-box")
    return {s.address: encode(LOUVER[s.quantity], s) for s in p.registers}


def station(path: str, with_dead: bool) -> config.StationConfig:
    lines = ['[station]\nid = "BENCH"\nkind = "micro"\nlat = 0\nlon = 0\ninlet_height_m = 3\n']
    units = [(u, 1.0) for u in range(1, LIVE + 1)]
    if with_dead:
        units.append((DEAD_UNIT, DEAD_TIMEOUT_S))
    for unit, timeout in units:
        lines.append(
            f'[[sensor]]\nname = "u{unit}"\nprofile = "louver-box"\ntransport = "modbus-rtu"\n'
            f'address = "{path}"\nunit_id = {unit}\ntimeout_s = {timeout}\nretries = 0\n'
            "interval_s = 1\n"
        )
    return config.loads("\n".join(lines))


def cycle_times(poller: Poller, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        poller.poll_once()
        out.append(time.perf_counter() - start)
    return out


def backed_off_cycles(cfg: config.StationConfig, runs: int) -> list[float]:
    """Cycles through ``run_due`` after the breaker opened for the dead unit."""
    clock = FakeRealClock()
    poller = Poller(cfg, clock=clock, sink=lambda _s: None)
    try:
        for _ in range(FAILURES_TO_BACK_OFF):
            poller.run_due()
            clock.skip(1.0)
        assert not poller.health()[f"u{DEAD_UNIT}"].available
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            poller.run_due()
            out.append(time.perf_counter() - start)
            clock.skip(1.0)
        return out
    finally:
        poller.stop()


class FakeRealClock(SystemClock):
    """The system clock, with a jump forward on demand (to make every device due)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def skip(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> float:
        return super().now() + self.offset

    def monotonic(self) -> float:
        return super().monotonic() + self.offset


def rtu_figures(runs: int = 9) -> dict[str, dict[str, object]]:
    with ModbusSim() as sim, PtyPair() as pair:
        sim.rtu(pair.a, {u: Unit(holding=louver_words()) for u in range(1, LIVE + 1)})
        live_cfg, dead_cfg = station(pair.b, False), station(pair.b, True)
        # one master at a time on a line: each poller is stopped (its port closed) before
        # the next one opens it
        live = Poller(live_cfg, clock=SystemClock(), sink=lambda _s: None)
        try:
            cycle_times(live, 2)  # open the port, warm up
            base = statistics.median(cycle_times(live, runs))
        finally:
            live.stop()
        dead = Poller(dead_cfg, clock=SystemClock(), sink=lambda _s: None)
        try:
            with_dead = statistics.median(cycle_times(dead, runs))
        finally:
            dead.stop()
        backed_off = statistics.median(backed_off_cycles(dead_cfg, runs))
    extra = with_dead - base
    return {
        "dead_unit_extra_s": {
            "value": round(extra, 4), "baseline": "the dead unit's timeout_s",
            "baseline_value": DEAD_TIMEOUT_S, "ratio": round(extra / DEAD_TIMEOUT_S, 3),
            "live_cycle_s": round(base, 4), "with_dead_cycle_s": round(with_dead, 4),
            "units": LIVE,
        },
        "backed_off_cycle_s": {
            "value": round(backed_off, 4), "baseline": f"cycle of the {LIVE} live units",
            "baseline_value": round(base, 4), "ratio": round(backed_off / base, 3),
        },
    }  # fmt: skip


def tcp_figures(seconds: float = 0.7) -> dict[str, dict[str, object]]:
    from pymodbus.client import ModbusTcpClient

    with ModbusSim() as sim:
        port = sim.tcp({1: Unit(holding=louver_words())})
        cfg = config.loads(
            '[station]\nid = "BENCH"\nkind = "micro"\nlat = 0\nlon = 0\ninlet_height_m = 3\n'
            f'[[sensor]]\nname = "box"\nprofile = "louver-box"\ntransport = "modbus-tcp"\n'
            f'address = "127.0.0.1:{port}"\n'
        )
        driver = ModbusDriver(cfg.sensors[0], load_profile("louver-box"), clock=SystemClock())
        (block,) = driver.blocks
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
        client.connect()
        try:

            def rate(fn) -> float:
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    fn()
                    n += 1
                return n / (time.perf_counter() - start)

            # the server shares this process (and its GIL): alternate, keep the best of each
            bare = ours = 0.0
            for _ in range(3):
                bare = max(bare, rate(lambda: client.read_holding_registers(
                    block.address, count=block.count, device_id=1)))  # fmt: skip
                ours = max(ours, rate(driver.read))
        finally:
            client.close()
            driver.close()
    return {
        "driver_reads_per_s": {
            "value": round(ours, 1), "baseline": "bare pymodbus read_holding_registers",
            "baseline_value": round(bare, 1), "ratio": round(ours / bare, 3),
        }
    }  # fmt: skip


def main() -> None:
    out = {
        "bench": "gateway_bus",
        "machine": machine(),
        **rtu_figures(),
        **tcp_figures(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
