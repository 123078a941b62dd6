"""A whole simulated district: every station's devices, reading from the synthetic world.

``start_city(config)`` builds the world (``firmware_sim.world``) for the district file's
seed and size, gives every station its devices on real transports, starts them all on one
event loop in one thread, and writes one gateway station config per station::

    city = start_city(load_config(Path("city.toml")))
    city.stations            # CityStation: id, kind, lat, lon, sensors, config path
    city.devices["GX-M-001"]["bus"].unit(1).faults.kill()
    city.faults("GX-D-002", "dust").skew(300)
    city.station_configs     # station id -> Path of its gateway config
    city.clock_spec          # AIRTRACE_CLOCK for the gateways: the same simulated time
    city.stop()

What each kind of station carries (one Modbus bus per station: a TCP converter, or an RTU
line on a pty for every ``rtu_every``-th station; unit ids 1, 2, ... in this order):

- reference: gas module, dust transmitter, T/RH, wind speed, wind vane;
- micro: louver box (T/RH/noise/PM/pressure) and gas module, and on every
  ``serial_every``-th one a PMS5003 or SDS011 on its own pty;
- dust (a construction site): an HJ 212 monitor (with ``hj212`` in transports; else a dust
  transmitter and a noise meter on the bus) and the site's spray relay (an ``[[actuator]]``);
- met: T/RH, wind speed, wind vane, louver box.

With ``[gateway] hj212 = "gateway"`` each monitor reports to a port its station's gateway
listens on (written as the sensor's hj212-tcp address); it reconnects until the gateway is
up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.city_config import CityConfig
from firmware_sim.clock import AcceleratedClock, Clock
from firmware_sim.device import Device
from firmware_sim.faults import Faults
from firmware_sim.hj212_monitor import Hj212Monitor
from firmware_sim.loop import SimLoop
from firmware_sim.modbus import ModbusDevice
from firmware_sim.modbus_unit import ModbusUnit, SwitchEvent
from firmware_sim.pms5003_sensor import Pms5003Sensor
from firmware_sim.sds011_sensor import Sds011Sensor
from firmware_sim.sources import source_for
from firmware_sim.station_config import ActuatorEntry, SensorEntry, StationEntry, write
from firmware_sim.world_view import WorldStation, build_world, world_stations
from protocols.errors import ConfigError

log = logging.getLogger(__name__)
SLOW_STOP_S = 2.0  # a device that takes longer to stop is named in the log

__all__ = ["City", "CityStation", "start_city"]

#: kind -> the [[sensor]]s on its Modbus bus: (name, model)
BUS_KIT: dict[str, tuple[tuple[str, str], ...]] = {
    "reference": (
        ("gas", "gas-f32-le"),
        ("pm", "rs-pm-n01"),
        ("th", "rs-ws-n01"),
        ("wind_speed", "rs-fs-n01"),
        ("wind_dir", "rs-fx-n01"),
    ),
    "micro": (("louver", "louver-box"), ("gas", "gas-f32-le")),
    "dust": (("pm", "rs-pm-n01"), ("noise", "rs-zs-n01")),  # when no HJ 212 monitor
    "met": (
        ("th", "rs-ws-n01"),
        ("wind_speed", "rs-fs-n01"),
        ("wind_dir", "rs-fx-n01"),
        ("louver", "louver-box"),
    ),
}
SPRAY_MODEL = "spray-relay"
HJ212_PW = "123456"  # HJ 212's customary default access password


@dataclass(frozen=True)
class CityStation:
    """A simulated station: where it is, what it carries, where its gateway config is."""

    id: str
    kind: str
    lat: float
    lon: float
    inlet_height_m: float
    site: str | None
    sensors: tuple[SensorEntry, ...]
    actuators: tuple[ActuatorEntry, ...]
    config_path: Path


class City:
    """A running district; see the module docstring."""

    def __init__(self, config: CityConfig, world: Any, clock: Clock, loop: SimLoop):
        self.config = config
        self.world = world
        self.clock = clock
        self.loop = loop
        self.stations: list[CityStation] = []
        self.devices: dict[str, dict[str, Device]] = {}
        self.station_configs: dict[str, Path] = {}
        self._targets: dict[tuple[str, str], tuple[str, int | None]] = {}
        self.running = False

    @property
    def clock_spec(self) -> str:
        """``AIRTRACE_CLOCK`` for processes that must share this simulated time (empty when
        the city runs on a clock other processes cannot share, e.g. a test's manual one)."""
        return self.clock.spec if isinstance(self.clock, AcceleratedClock) else ""

    def station(self, station_id: str) -> CityStation:
        for s in self.stations:
            if s.id == station_id:
                return s
        raise KeyError(f"no station {station_id!r} in this city")

    def target(self, station_id: str, sensor: str) -> ModbusUnit | Device:
        """What a station's ``[[sensor]]`` (or ``[[actuator]]``) name reads: a Modbus unit
        or a serial/HJ 212 device; it has ``.faults`` and ``.values``."""
        try:
            key, unit_id = self._targets[(station_id, sensor)]
        except KeyError:
            raise KeyError(f"station {station_id!r} has no sensor {sensor!r}") from None
        device = self.devices[station_id][key]
        if unit_id is not None and isinstance(device, ModbusDevice):
            return device.unit(unit_id)
        return device

    def faults(self, station_id: str, sensor: str) -> Faults:
        """The faults of a station's sensor, e.g. ``city.faults("S01", "pm").kill()``."""
        faults: Faults = self.target(station_id, sensor).faults  # type: ignore[union-attr]
        return faults

    def spray_history(self, station_id: str) -> list[SwitchEvent]:
        """When the station's spray relay was switched (empty without one)."""
        try:
            unit = self.target(station_id, "spray")
        except KeyError:
            return []
        return list(unit.history) if isinstance(unit, ModbusUnit) else []

    def all_devices(self) -> list[Device]:
        return [d for devs in self.devices.values() for d in devs.values()]

    def describe(self) -> list[str]:
        """One line per sensor: station, kind, sensor, transport, address, unit."""
        lines = []
        for s in self.stations:
            entries: tuple[SensorEntry | ActuatorEntry, ...] = (*s.sensors, *s.actuators)
            for e in entries:
                unit = f" unit {e.unit_id}" if e.unit_id else ""
                lines.append(f"{s.id} {s.kind} {e.name} {e.transport} {e.address}{unit}")
            lines.append(f"{s.id} config {s.config_path}")
        if self.clock_spec:
            lines.append(f"AIRTRACE_CLOCK={self.clock_spec}")
        return lines

    def stop(self) -> None:
        """Stop every device; idempotent."""
        if not self.running:
            return
        self.running = False

        async def stop_one(device: Device) -> None:
            t0 = time.monotonic()
            try:
                await device.astop()
            except Exception:
                log.exception("stopping %s failed", device)
            took = time.monotonic() - t0
            if took > SLOW_STOP_S:
                log.warning("stopping %s took %.1f s", device, took)

        async def stop_all() -> None:  # side by side: one slow device does not hold the rest
            await asyncio.gather(*(stop_one(d) for d in self.all_devices() if d.running))

        if self.loop.alive:
            t0 = time.monotonic()
            self.loop.run(stop_all(), timeout=60)
            log.info("the district's devices stopped in %.1f s", time.monotonic() - t0)

    def __enter__(self) -> City:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _mn(station_id: str) -> str:
    return (re.sub(r"[^A-Za-z0-9]", "", station_id).upper() or "AIRTRACE")[:24]


@dataclass
class _Plan:
    """One station's devices and config entries, before the devices are started."""

    devices: dict[str, Device] = field(default_factory=dict)
    sensors: list[SensorEntry] = field(default_factory=list)
    actuators: list[ActuatorEntry] = field(default_factory=list)
    targets: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    def addressed(self, entries: Sequence[Any]) -> tuple[Any, ...]:
        """The entries with the addresses the started devices listen on."""
        out = []
        for entry in entries:
            key, _ = self.targets[entry.name]
            address = entry.address or self.devices[key].address
            out.append(dataclasses.replace(entry, address=address))
        return tuple(out)


class _Planner:
    """Decides, station by station, which devices it gets and on which transports."""

    def __init__(self, config: CityConfig, clock: Clock, loop: SimLoop) -> None:
        self.config = config
        self.clock = clock
        self.loop = loop
        self.pty_left = config.max_pty
        self.micro_seen = 0

    def _pty(self) -> bool:
        if self.pty_left <= 0:
            return False
        self.pty_left -= 1
        return True

    def plan(self, index: int, ws: WorldStation, world: Any) -> _Plan:
        c = self.config
        plan = _Plan()
        options: dict[str, Any] = {
            "source": source_for(world, ws.id),
            "clock": self.clock,
            "loop": self.loop,
            "seed": c.seed * 1000 + index,
        }
        kit = list(BUS_KIT[ws.kind])
        if ws.kind == "dust" and "hj212" in c.transports:
            kit = []
            self._monitor(plan, ws, options)
        self._bus(plan, index, ws, kit, options)
        if ws.kind == "micro":
            self.micro_seen += 1
            n = self.micro_seen - 1
            if "serial" in c.transports and n % c.serial_every == 0 and self._pty():
                self._serial(plan, ws, (n // c.serial_every) % 2 == 0, options)
        return plan

    def _monitor(self, plan: _Plan, ws: WorldStation, options: dict[str, Any]) -> None:
        c = self.config
        if c.hj212 == "gateway":
            host, port = c.host, _free_port(c.host)
        else:
            target_host, _, target_port = c.hj212.rpartition(":")
            host, port = target_host, int(target_port)
        plan.devices["dust"] = Hj212Monitor(
            host, port, mn=_mn(ws.id), pw=HJ212_PW, name=f"{ws.id}/dust",
            rtd_interval_s=c.hj212_rtd_s, minute_interval_min=c.hj212_minute_min, **options
        )
        plan.targets["dust"] = ("dust", None)
        if c.hj212 == "gateway":
            plan.sensors.append(
                SensorEntry(
                    "dust", "hj212-dust", "hj212-tcp", f"{host}:{port}",
                    interval_s=c.interval_s, hj212_mn=_mn(ws.id), hj212_password=HJ212_PW,
                )
            )  # fmt: skip

    def _bus(
        self,
        plan: _Plan,
        index: int,
        ws: WorldStation,
        kit: list[tuple[str, str]],
        options: dict[str, Any],
    ) -> None:
        c = self.config
        units = {i + 1: model for i, (_, model) in enumerate(kit)}
        spray_unit = len(units) + 1 if ws.kind == "dust" else None
        if spray_unit is not None:
            units[spray_unit] = SPRAY_MODEL
        rtu = "modbus-rtu" in c.transports and (
            index % c.rtu_every == 0 or "modbus-tcp" not in c.transports
        )
        if rtu and not self._pty():
            if "modbus-tcp" not in c.transports:
                raise ConfigError(f"[city] max_pty = {c.max_pty} is too small for the RTU lines")
            rtu = False
        plan.devices["bus"] = ModbusDevice(
            units, transport="rtu" if rtu else "tcp", host=c.host, pty_backend=c.pty_backend,
            name=f"{ws.id}/bus", **options,
        )  # fmt: skip
        transport = "modbus-rtu" if rtu else "modbus-tcp"
        for unit_id, (name, model) in enumerate(kit, start=1):
            plan.sensors.append(
                SensorEntry(
                    name, model, transport, "", unit_id=unit_id,
                    baudrate=9600 if rtu else None, interval_s=c.interval_s,
                )
            )  # fmt: skip
            plan.targets[name] = ("bus", unit_id)
        if spray_unit is not None:
            plan.actuators.append(ActuatorEntry("spray", transport, "", spray_unit, coil=0))
            plan.targets["spray"] = ("bus", spray_unit)

    def _serial(self, plan: _Plan, ws: WorldStation, pms: bool, options: dict[str, Any]) -> None:
        key, profile = ("pms", "pms5003") if pms else ("sds", "sds011")
        cls: type[Pms5003Sensor | Sds011Sensor] = Pms5003Sensor if pms else Sds011Sensor
        plan.devices[key] = cls(
            pty_backend=self.config.pty_backend, name=f"{ws.id}/{key}", **options
        )
        plan.sensors.append(
            SensorEntry(
                key, profile, "serial", "", baudrate=9600,
                interval_s=self.config.interval_s, mode="active",
            )
        )  # fmt: skip
        plan.targets[key] = (key, None)


def start_city(
    config: CityConfig,
    *,
    world: Any = None,
    clock: Clock | None = None,
    loop: SimLoop | None = None,
) -> City:
    """Build the district's world (unless given), start its devices, write the station
    configs; returns the running ``City``. The clock is ``AcceleratedClock(start, rate)``
    of the district file unless one is given (tests pass a ``ManualClock``)."""
    clock = clock or AcceleratedClock(config.start, config.rate)
    loop = loop or SimLoop.shared()
    world = build_world(config, clock.now()) if world is None else world
    city = City(config, world, clock, loop)
    planner = _Planner(config, clock, loop)
    plans: list[tuple[WorldStation, _Plan]] = []
    for index, ws in enumerate(world_stations(world)):
        plan = planner.plan(index, ws, world)
        city.devices[ws.id] = plan.devices
        for name, target in plan.targets.items():
            city._targets[(ws.id, name)] = target
        plans.append((ws, plan))

    async def start_all() -> None:
        for device in city.all_devices():
            await device.astart()

    city.running = True
    try:
        loop.run(start_all(), timeout=120)
    except BaseException:
        city.stop()
        raise
    outbox = config.outbox_path.resolve()
    for ws, plan in plans:
        entry = StationEntry(
            id=ws.id, kind=ws.kind, lat=ws.lat, lon=ws.lon, inlet_height_m=ws.inlet_height_m,
            mqtt=config.mqtt, outbox=outbox / f"{ws.id}.db", site=ws.site,
            sensors=plan.addressed(plan.sensors), actuators=plan.addressed(plan.actuators),
        )  # fmt: skip
        comment = f"Written by 'airtrace sim city' (seed {config.seed}): {ws.id} ({ws.kind})."
        if city.clock_spec:
            comment += f"\nStart its gateway with AIRTRACE_CLOCK={city.clock_spec}"
        path = write(entry, config.out, comment=comment)
        city.station_configs[ws.id] = path
        city.stations.append(
            CityStation(
                ws.id, ws.kind, ws.lat, ws.lon, ws.inlet_height_m, ws.site,
                entry.sensors, entry.actuators, path,
            )
        )  # fmt: skip
    return city
