"""The scheduler: one polling loop per physical bus, one coordinator per device.

Devices that share a bus (``SensorConfig.bus``: an RS485 line, a Modbus TCP endpoint, a
serial port, an HJ 212 listening port) share one loop (a thread) and one link, so their
requests never overlap and an RTU line keeps its inter-frame gap. Each device has its own
coordinator: its own interval (and burst interval for a while, ``set_interval``), its
own timeout, and a circuit breaker. After ``FAILURES_TO_BACK_OFF`` failed polls in a row
a device is marked unavailable and backed off (its next real polls come 2, 4, 8 ...
intervals apart, at most ``MAX_BACKOFF_S``), so a dead device costs the others nothing; the
first failure, the change to unavailable and the recovery are each logged once.

Every scheduled poll yields samples for the sink: the device's answer, stamped by the
clock when it came, or — for a failed or backed-off device — one sample per quantity
with no value, flag B (no answer) or D (device fault) and the reason. A value is never
reused: a missing answer is a missing reading.

``run_due()`` does one pass over the due devices in the calling thread (tests drive the
scheduler with it and a ``FakeClock``); ``start()`` runs the loops in threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Clock
from gateway.config import ActuatorConfig, SensorConfig, StationConfig
from gateway.drivers import Driver, failure_flag, open_driver
from gateway.errors import DeviceError
from gateway.model import Flag, Sample
from gateway.profiles import Profile, load_profile
from protocols.errors import ConfigError

__all__ = ["ClockHealth", "DeviceHealth", "Poller"]

log = logging.getLogger(__name__)

FAILURES_TO_BACK_OFF = 3
MAX_BACKOFF_S = 600.0
CLOCK_FLOOR = 1_704_067_200.0  # 2024-01-01T00:00:00Z: a clock before this was never set
CLOCK_JUMP_S = 2.0  # wall clock moving this much more or less than the monotonic one
CLOCK_JUMP_MEMORY_S = 3600.0  # a jump keeps the clock "suspect" this long
WRITE_TIMEOUT_S = 1.0
WRITE_RETRIES = 2

Sink = Callable[[list[Sample]], None]


@dataclass(frozen=True)
class DeviceHealth:
    """One device as its coordinator sees it (times are clock.now() epoch seconds)."""

    sensor: str
    available: bool
    consecutive_failures: int
    last_ok: float | None
    last_error: str | None
    backed_off_until: float | None
    interval_s: float  # the interval in force (a burst's, while one runs)
    polls: int  # real reads of the device (not the slots skipped while backed off)
    failures: int
    clock_ok: bool = True
    clock_problem: str | None = None


@dataclass(frozen=True)
class ClockHealth:
    ok: bool
    problem: str | None
    jumps: int


@dataclass
class _Coordinator:
    sensor: SensorConfig
    profile: Profile
    driver: Driver
    index: int
    next_due: float = 0.0  # monotonic
    burst_interval: float | None = None
    burst_until: float | None = None  # monotonic; None with a burst = until changed
    failures_in_row: int = 0
    available: bool = True
    backoff_until: float | None = None  # monotonic
    last_ok: float | None = None
    last_error: str | None = None
    polls: int = 0
    failures: int = 0

    def interval(self, mono: float) -> float:
        if self.burst_interval is not None:
            if self.burst_until is None or mono < self.burst_until:
                return self.burst_interval
            self.burst_interval = self.burst_until = None
        return self.sensor.interval_s


@dataclass
class _Bus:
    key: str
    coordinators: list[_Coordinator] = field(default_factory=list)
    link: Any = None  # ModbusLink or Hj212Listener shared by the bus's devices
    lock: threading.RLock = field(default_factory=threading.RLock)
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Poller:
    """Polls a station's enabled sensors; see the module docstring."""

    def __init__(
        self,
        config: StationConfig,
        *,
        clock: Clock,
        sink: Sink,
        opener: Callable[..., Driver] = open_driver,
    ) -> None:
        self.config = config
        self._clock = clock
        self._sink = sink
        self._stop = threading.Event()
        self._buses: dict[str, _Bus] = {}
        self._coords: dict[str, _Coordinator] = {}
        self._state = threading.Lock()
        self._clock_seen: tuple[float, float] | None = None  # (wall, mono)
        self._clock_jumps = 0
        self._last_jump: tuple[float, float] | None = None  # (mono when, seconds)
        self.sink_errors = 0
        _check_shared_lines(config)
        for index, sensor in enumerate(s for s in config.sensors if s.enabled):
            profile = load_profile(sensor.profile)
            bus = self._bus(sensor.bus)
            if bus.link is None:
                bus.link = _make_link(sensor, profile, clock)
            driver = opener(sensor, profile, clock=clock, link=bus.link)
            coord = _Coordinator(sensor, profile, driver, index, next_due=clock.monotonic())
            bus.coordinators.append(coord)
            self._coords[sensor.name] = coord

    def _bus(self, key: str) -> _Bus:
        if key not in self._buses:
            self._buses[key] = _Bus(key)
        return self._buses[key]

    # -- polling ---------------------------------------------------------------------------

    def poll_once(self) -> list[Sample]:
        """Every enabled sensor once, now, whatever its schedule or backoff; buses in
        parallel, so a dead device delays only its own bus. Samples in config order."""
        results: dict[str, list[Sample]] = {}

        def run(bus: _Bus) -> None:
            for c in bus.coordinators:
                with bus.lock:
                    results[c.sensor.name] = self._poll(c, force=True)

        with ThreadPoolExecutor(max_workers=max(1, len(self._buses))) as pool:
            for future in [pool.submit(run, b) for b in self._buses.values()]:
                future.result()
        out: list[Sample] = []
        for c in sorted(self._coords.values(), key=lambda c: c.index):
            out.extend(results.get(c.sensor.name, []))
        return out

    def run_due(self) -> int:
        """Poll every device whose time has come (bus by bus, in config order within a
        bus) and hand each device's samples to the sink; returns the number of polls."""
        n = 0
        for bus in self._buses.values():
            n += self._run_bus(bus)
        return n

    def _run_bus(self, bus: _Bus) -> int:
        self._check_clock()
        n = 0
        with bus.lock:
            mono = self._clock.monotonic()
            due = [c for c in bus.coordinators if c.next_due <= mono]
            for c in sorted(due, key=lambda c: (c.next_due, c.index)):
                samples = self._poll(c, force=False)
                self._schedule(c)
                n += 1
                if samples:
                    self._deliver(samples)
        return n

    def _schedule(self, c: _Coordinator) -> None:
        mono = self._clock.monotonic()
        with self._state:
            c.next_due += c.interval(mono)
            if c.next_due <= mono:  # fell behind (slow bus, suspended host): no catch-up burst
                c.next_due = mono + c.interval(mono)

    def _deliver(self, samples: list[Sample]) -> None:
        try:
            self._sink(samples)
        except Exception:
            self.sink_errors += 1
            log.exception("the sink refused %d samples of %s", len(samples), samples[0].sensor)

    def _poll(self, c: _Coordinator, *, force: bool) -> list[Sample]:
        name = c.sensor.name
        mono = self._clock.monotonic()
        if not force and c.backoff_until is not None and mono < c.backoff_until:
            return self._absent(c, Flag.COMM_FAULT, f"unavailable: {c.last_error}")
        try:
            samples = c.driver.read()
        except DeviceError as exc:
            return self._failed(c, exc)
        except Exception as exc:  # a driver bug must not stop the bus
            log.exception("%s: driver failed unexpectedly", name)
            return self._failed(c, DeviceError(f"{name}: driver error: {exc!r}", comm=False))
        with self._state:
            c.polls += 1
            if not c.available or c.failures_in_row:
                log.info("%s: answering again after %d failed poll(s)", name, c.failures_in_row)
            c.failures_in_row = 0
            c.available = True
            c.backoff_until = None
            c.last_ok = self._clock.now()
        return samples

    def _failed(self, c: _Coordinator, exc: DeviceError) -> list[Sample]:
        name = c.sensor.name
        with self._state:
            c.polls += 1
            c.failures += 1
            c.failures_in_row += 1
            c.last_error = exc.message
            if c.failures_in_row == 1:
                log.warning("%s", exc.message)  # drivers' messages start with the name
            if c.failures_in_row >= FAILURES_TO_BACK_OFF:
                steps = c.failures_in_row - FAILURES_TO_BACK_OFF + 1
                base = max(c.sensor.interval_s, 1.0)
                delay = min(base * (2**steps), MAX_BACKOFF_S)  # skip 1, 3, 7 ... slots
                c.backoff_until = self._clock.monotonic() + delay
                if c.available:
                    log.warning(
                        "%s: unavailable after %d failed polls; next try in %.0f s",
                        name, c.failures_in_row, delay,
                    )  # fmt: skip
                c.available = False
        return self._absent(c, failure_flag(exc), exc.message)

    def _absent(self, c: _Coordinator, flag: Flag, why: str) -> list[Sample]:
        ts = self._clock.now()
        spec = c.profile.registers or c.profile.fields
        return [Sample(c.sensor.name, s.quantity, s.unit, None, ts, flag, why) for s in spec]

    # -- the loops -------------------------------------------------------------------------

    def start(self) -> None:
        """One thread per bus, polling until ``stop()``."""
        self._stop.clear()
        for bus in self._buses.values():
            if bus.thread is None or not bus.thread.is_alive():
                bus.thread = threading.Thread(
                    target=self._loop, args=(bus,), name=f"poll {bus.key}", daemon=True
                )
                bus.thread.start()

    def _loop(self, bus: _Bus) -> None:
        while not self._stop.is_set():
            try:
                self._run_bus(bus)
            except Exception:  # never let one bad cycle end the bus's polling
                log.exception("polling %s failed", bus.key)
            with self._state:
                due = min((c.next_due for c in bus.coordinators), default=None)
            wait = 1.0 if due is None else due - self._clock.monotonic()
            if wait > 0:
                bus.wake.wait(min(self._real_seconds(wait), 1.0))
            bus.wake.clear()

    def _real_seconds(self, clock_seconds: float) -> float:
        """Clock seconds as real seconds to wait: an accelerated clock (``ScaledClock``,
        the demo's) runs ``rate`` times faster than the thread's timer."""
        rate = getattr(self._clock, "rate", 1.0)
        if isinstance(rate, int | float) and rate > 0:
            return clock_seconds / rate
        return clock_seconds

    def stop(self) -> None:
        """End the loops, then close every driver and link."""
        self._stop.set()
        for bus in self._buses.values():
            bus.wake.set()
        for bus in self._buses.values():
            if bus.thread is not None:
                bus.thread.join(30)
                bus.thread = None
        for bus in self._buses.values():
            with bus.lock:
                for c in bus.coordinators:
                    try:
                        c.driver.close()
                    except Exception:
                        log.exception("closing %s", c.sensor.name)
                if bus.link is not None and hasattr(bus.link, "close"):
                    bus.link.close()

    # -- control ---------------------------------------------------------------------------

    def set_interval(self, sensor: str | None, interval_s: float, duration_s: float | None) -> None:
        """Poll ``sensor`` (every sensor when None) every ``interval_s`` for
        ``duration_s`` seconds (for good when None), then return to the configured
        interval. ``KeyError`` for an unknown sensor, ``ValueError`` for a bad number."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        coords = list(self._coords.values()) if sensor is None else [self._coords[sensor]]
        mono = self._clock.monotonic()
        with self._state:
            for c in coords:
                c.burst_interval = interval_s
                c.burst_until = None if duration_s is None else mono + duration_s
                c.next_due = min(c.next_due, mono + interval_s)
        for bus in self._buses.values():
            bus.wake.set()

    def write(self, actuator: ActuatorConfig, value: int) -> None:
        """Set ``actuator``'s coil (``value`` != 0 is on) or register, serialised on its
        bus with the polls. Raises ``DeviceError`` when the device does not confirm."""
        from gateway.drivers.modbus import LinkSettings, ModbusLink

        settings = LinkSettings.of(actuator)
        bus = self._bus(settings.key)
        with bus.lock:
            if bus.link is None:
                bus.link = ModbusLink(settings, clock=self._clock)
            if not isinstance(bus.link, ModbusLink):
                raise DeviceError(f"{actuator.name}: {settings.key} is not a Modbus bus")
            if actuator.coil is not None:
                bus.link.write_coil(
                    actuator.unit_id, actuator.coil, value != 0, timeout_s=WRITE_TIMEOUT_S,
                    retries=WRITE_RETRIES, who=actuator.name,
                )  # fmt: skip
            else:
                assert actuator.register is not None
                bus.link.write_register(
                    actuator.unit_id, actuator.register, value, timeout_s=WRITE_TIMEOUT_S,
                    retries=WRITE_RETRIES, who=actuator.name,
                )  # fmt: skip

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, DeviceHealth]:
        clock = self.clock_health()
        now, mono = self._clock.now(), self._clock.monotonic()
        out: dict[str, DeviceHealth] = {}
        with self._state:
            for name, c in self._coords.items():
                until = None
                if c.backoff_until is not None and c.backoff_until > mono:
                    until = now + (c.backoff_until - mono)
                out[name] = DeviceHealth(
                    sensor=name,
                    available=c.available,
                    consecutive_failures=c.failures_in_row,
                    last_ok=c.last_ok,
                    last_error=c.last_error,
                    backed_off_until=until,
                    interval_s=c.interval(mono),
                    polls=c.polls,
                    failures=c.failures,
                    clock_ok=clock.ok,
                    clock_problem=clock.problem,
                )
        return out

    def clock_health(self) -> ClockHealth:
        self._check_clock()
        now = self._clock.now()
        with self._state:
            if now < CLOCK_FLOOR:
                return ClockHealth(False, "the clock is before 2024: not set (no RTC, no NTP?)",
                                   self._clock_jumps)  # fmt: skip
            if self._last_jump is not None:
                when, size = self._last_jump
                if self._clock.monotonic() - when < CLOCK_JUMP_MEMORY_S:
                    return ClockHealth(
                        False, f"the clock jumped by {size:+.0f} s recently", self._clock_jumps
                    )
            return ClockHealth(True, None, self._clock_jumps)

    def _check_clock(self) -> None:
        wall, mono = self._clock.now(), self._clock.monotonic()
        with self._state:
            if self._clock_seen is not None:
                drift = (wall - self._clock_seen[0]) - (mono - self._clock_seen[1])
                if abs(drift) > CLOCK_JUMP_S:
                    self._clock_jumps += 1
                    self._last_jump = (mono, drift)
                    log.warning("the wall clock jumped by %+.1f s", drift)
            self._clock_seen = (wall, mono)


def _make_link(sensor: SensorConfig, profile: Profile, clock: Clock) -> Any:
    """The resource the devices of one bus share, if the protocol has one."""
    if profile.protocol == "modbus":
        from gateway.drivers.modbus import LinkSettings, ModbusLink

        return ModbusLink(LinkSettings.of(sensor), clock=clock)
    if profile.protocol == "hj212":
        from gateway.drivers.hj212 import Hj212Listener

        return Hj212Listener(sensor.address, clock=clock)
    return None


def _check_shared_lines(config: StationConfig) -> None:
    """Devices on one RS485 line must agree on its settings; a UART carries one sensor."""
    by_bus: dict[str, list[SensorConfig]] = {}
    for s in config.sensors:
        if s.enabled:
            by_bus.setdefault(s.bus, []).append(s)
    for sensors in by_bus.values():
        first = sensors[0]
        mns = [s.hj212_mn for s in sensors if s.transport == "hj212-tcp"]
        for mn in mns:
            if mns.count(mn) > 1:
                who = f"MN {mn}" if mn else "every MN (no hj212_mn)"
                raise ConfigError(
                    f"{config.path}: two sensors on {first.address} claim {who}; give each "
                    "hj212 sensor on one port its own hj212_mn"
                )
        for s in sensors[1:]:
            if s.transport == "serial":
                raise ConfigError(
                    f"{config.path}: sensors {first.name!r} and {s.name!r} share the serial "
                    f"port {s.address}; a serial particle sensor needs a port of its own"
                )
            if s.transport == "modbus-rtu":
                a = (first.baudrate, first.parity, first.stopbits, first.bytesize)
                b = (s.baudrate, s.parity, s.stopbits, s.bytesize)
                if a != b:
                    raise ConfigError(
                        f"{config.path}: sensors {first.name!r} and {s.name!r} share the "
                        f"RS485 line {s.address} but not its settings (baudrate, parity, "
                        f"stopbits, bytesize: {a} vs {b})"
                    )
