"""``airtrace sim ...``: start simulated devices on real transports.

Each command starts its device(s), prints where each listens (the address to put in a
gateway's ``[[sensor]] address``) and runs until SIGTERM or Ctrl-C. Values come from
``--value QUANTITY=VALUE`` (typical values for the rest); faults are switched on with the
fault flags; time runs at ``--rate`` (or as ``AIRTRACE_CLOCK`` says).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from protocols.errors import InputError

F = Callable[..., Any]


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r}: expected {what}")
        out[key.strip()] = value.strip()
    return out


def _floats(values: Sequence[str], what: str) -> dict[str, float]:
    out = {}
    for key, value in _pairs(values, what).items():
        try:
            out[key] = float(value)
        except ValueError:
            raise click.BadParameter(f"{key}={value}: not a number") from None
    return out


def _start_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time") from None


def common(fn: F) -> F:
    """Options every device command has: values, time, seed and faults."""
    options = [
        click.option("--value", "values", multiple=True, metavar="Q=V",
                     help="A constant value, e.g. --value pm25=35 (repeatable); other "
                     "quantities show typical values."),
        click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Simulated seconds per real second (default 1, or AIRTRACE_CLOCK)."),
        click.option("--start", "start", default=None, metavar="ISO",
                     help="Simulated start time, ISO 8601 (default: now)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed for the random choices of faults."),
        click.option("--dead", is_flag=True, help="Fault: never answer."),
        click.option("--slow", type=click.FloatRange(min=0), default=0.0,
                     help="Fault: answer this many real seconds late."),
        click.option("--crc", type=click.FloatRange(0, 1), default=0.0,
                     help="Fault: share of frames sent with a wrong CRC (0..1)."),
        click.option("--garbage", type=click.IntRange(min=0), default=0,
                     help="Fault: noise bytes on the line after each frame."),
        click.option("--stuck", multiple=True, metavar="Q",
                     help="Fault: quantity frozen at its first value ('*': all)."),
        click.option("--drift", multiple=True, metavar="Q=PER_HOUR",
                     help="Fault: quantity drifting by PER_HOUR units per simulated hour."),
        click.option("--dropout", type=click.FloatRange(0, 1), default=0.0,
                     help="Fault: share of requests or frames silently lost (0..1)."),
        click.option("--reboot-every", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Fault: reboot every this many simulated seconds."),
        click.option("--reboot-down", type=click.FloatRange(min=0), default=10.0,
                     show_default=True, help="Simulated seconds a reboot stays silent."),
        click.option("--skew", type=float, default=0.0,
                     help="Fault: the device clock is off by this many seconds (HJ 212)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


class _Setup:
    """What the common options ask for, applied to devices."""

    def __init__(self, opts: dict[str, Any]) -> None:
        from firmware_sim.clock import AcceleratedClock, from_env
        from firmware_sim.sources import DEFAULTS, constant

        self.opts = opts
        given = _floats(opts["values"], "QUANTITY=VALUE")
        self.source = constant({**DEFAULTS, **given})
        start, rate = _start_time(opts["start"]), opts["rate"]
        try:
            env_clock = from_env()
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if start is None and rate is None:
            self.clock = env_clock
        else:
            self.clock = AcceleratedClock(start, rate or 1.0)
        self.seed = opts["seed"]
        self.drift = _floats(opts["drift"], "QUANTITY=PER_HOUR")

    def apply(self, faults: Any) -> None:
        o = self.opts
        if o["dead"]:
            faults.kill()
        faults.slow(o["slow"])
        faults.corrupt_crc(o["crc"])
        faults.garbage(o["garbage"])
        faults.dropout(o["dropout"])
        faults.skew(o["skew"])
        for q in o["stuck"]:
            faults.stick(q)
        for q, per_hour in self.drift.items():
            faults.drift(q, per_hour)

    def run(self, devices: list[Any], lines: list[str]) -> None:
        """Switch the faults on, start, print, wait for SIGTERM/Ctrl-C, stop."""
        for d in devices:
            for faults in _all_faults(d):
                self.apply(faults)
        with _Stopper() as stopper:
            started = []
            try:
                for d in devices:
                    started.append(d.start())
                for line in lines or [f"{d.transport} {d.address}" for d in devices]:
                    click.echo(line.format(*[d.address for d in devices]))
                click.echo("running; Ctrl-C or SIGTERM stops", err=True)
                every = self.opts["reboot_every"]
                next_reboot = self.clock.now() + every if every else None
                while not stopper.wait(0.2):
                    if next_reboot is not None and self.clock.now() >= next_reboot:
                        for d in started:
                            for faults in _all_faults(d):
                                faults.reboot(self.opts["reboot_down"])
                        next_reboot = self.clock.now() + every
            finally:
                for d in reversed(started):
                    d.stop()


class _Stopper:
    """SIGTERM and SIGINT end the command (from the moment it starts, so a signal during
    start-up still ends it cleanly).

    The handler only stores the signal: it runs between two bytecodes of the main thread,
    which may hold a lock at that moment (an ``Event``'s, a ``Queue``'s), so setting an
    Event there can deadlock the process. ``wait`` polls the stored value instead."""

    POLL_S = 0.05

    def __enter__(self) -> _Stopper:
        self.signalled: int | None = None
        signals = (signal.SIGTERM, signal.SIGINT)
        self._old = {s: signal.signal(s, self._on_signal) for s in signals}
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = signum

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s; True as soon as a stop signal has come."""
        deadline = time.monotonic() + timeout
        while self.signalled is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, self.POLL_S))
        return True

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def _all_faults(device: Any) -> list[Any]:
    """A Modbus line's faults are its units'; any other device has its own."""
    units = getattr(device, "units", None)  # the HJ 212 monitor's ``units`` is "ug/m3"
    return [u.faults for u in units.values()] if isinstance(units, dict) else [device.faults]


@click.group(no_args_is_help=True)
def app() -> None:
    """Simulated devices (Modbus TCP/RTU, PMS5003, SDS011, HJ 212) and a synthetic city.

    Each command prints where its device listens and runs until Ctrl-C or SIGTERM.
    """


def _units(specs: Sequence[str], default_model: str) -> dict[int, str]:
    from firmware_sim.models import MODELS

    units: dict[int, str] = {}
    for spec in specs or ["1"]:
        uid, _, name = spec.partition("=")
        try:
            unit_id = int(uid)
        except ValueError:
            raise click.BadParameter(f"{spec!r}: expected UNIT_ID or UNIT_ID=MODEL") from None
        name = name.strip() or default_model
        if name not in MODELS:
            raise click.BadParameter(f"no simulated model {name!r}; known: {', '.join(MODELS)}")
        if not 1 <= unit_id <= 247:
            raise click.BadParameter(f"unit id {unit_id} is not 1..247")
        units[unit_id] = name
    return units


_UNIT_HELP = "A unit on the line: UNIT_ID or UNIT_ID=MODEL (repeatable; default: unit 1)."
_MODEL_HELP = "Model of units given without one (see 'airtrace sim models')."


@app.command("models")
def models_cmd() -> None:
    """List the simulated Modbus device models and their registers."""
    from firmware_sim.models import MODELS

    for m in MODELS.values():
        regs = ", ".join(
            f"{r.spec.quantity}@{r.address}(fc{r.function},{r.spec.type})" for r in m.registers
        )
        coils = f"; coils 0-{m.coils - 1}" if m.coils else ""
        click.echo(f"{m.name}: {m.description}: {regs}{coils}")


@app.command("modbus-tcp")
@click.option("--model", default="rs-pm-n01", show_default=True, help=_MODEL_HELP)
@click.option("--unit", "units", multiple=True, metavar="ID[=MODEL]", help=_UNIT_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=5020, show_default=True,
              help="TCP port (0: any free port).")  # fmt: skip
@common
def modbus_tcp_cmd(model: str, units: tuple[str, ...], host: str, port: int, **opts: Any) -> None:
    """A Modbus TCP server with one or more simulated units."""
    _modbus("tcp", model, units, opts, host=host, port=port)


@app.command("modbus-rtu")
@click.option("--model", default="rs-pm-n01", show_default=True, help=_MODEL_HELP)
@click.option("--unit", "units", multiple=True, metavar="ID[=MODEL]", help=_UNIT_HELP)
@click.option("--device", "device_path", default=None, metavar="PATH",
              help="Serve on this serial device (default: a new pty pair; its other end is "
              "printed).")  # fmt: skip
@common
def modbus_rtu_cmd(
    model: str, units: tuple[str, ...], device_path: str | None, **opts: Any
) -> None:
    """An RS485 line (Modbus RTU on a pty pair) with one or more simulated units."""
    _modbus("rtu", model, units, opts, serial_port=device_path)


def _modbus(
    transport: str, model: str, units: Sequence[str], opts: dict[str, Any], **where: Any
) -> None:
    """Run a Modbus ``transport`` ("tcp" or "rtu") device at ``where`` with the ``--unit``s."""
    from firmware_sim.modbus import ModbusDevice

    setup = _Setup(opts)
    table = _units(units, model)
    dev = ModbusDevice(
        table, transport=transport, source=setup.source, clock=setup.clock, seed=setup.seed,
        **where,
    )  # fmt: skip
    desc = ", ".join(f"{u}={m}" for u, m in table.items())
    setup.run([dev], [f"modbus-{transport} {{0}} units {desc}"])


@app.command("pms5003")
@click.option(
    "--variant",
    type=click.Choice(["pms5003", "pms5003t"]),
    default="pms5003",
    show_default=True,
    help="Frame layout (pms5003t adds temperature and RH).",
)
@common
def pms5003_cmd(variant: str, **opts: Any) -> None:
    """A Plantower PMS5003 on a pty pair (active mode, passive on command)."""
    from firmware_sim.pms5003_sensor import Pms5003Sensor

    setup = _Setup(opts)
    dev = Pms5003Sensor(source=setup.source, clock=setup.clock, seed=setup.seed, variant=variant)
    setup.run([dev], [f"serial {{0}} {variant}"])


@app.command("sds011")
@click.option("--device-id", type=click.IntRange(0, 0xFFFF), default=None,
              help="The sensor's id (default: from the seed).")  # fmt: skip
@common
def sds011_cmd(device_id: int | None, **opts: Any) -> None:
    """A Nova Fitness SDS011 on a pty pair (active reporting, query mode on command)."""
    from firmware_sim.sds011_sensor import Sds011Sensor

    setup = _Setup(opts)
    dev = Sds011Sensor(source=setup.source, clock=setup.clock, seed=setup.seed, device_id=device_id)
    setup.run([dev], [f"serial {{0}} sds011 id {dev.device_id:04X}"])


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


@app.command("hj212")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="HOST:PORT",
    help="The platform to report to (a gateway's hj212-tcp listener).",
)
@click.option(
    "--mn",
    default="AIRTRACE0000000000000001",
    show_default=True,
    help="The monitor's MN (device id, up to 24 characters).",
)
@click.option("--pw", default="123456", show_default=True, help="The access password PW.")
@click.option(
    "--st",
    type=click.Choice(["39", "22"]),
    default="39",
    show_default=True,
    help="System code: 39 construction dust, 22 air quality.",
)
@click.option(
    "--units",
    type=click.Choice(["ug/m3", "mg/m3"]),
    default="ug/m3",
    show_default=True,
    help="Unit of the particulate values.",
)
@click.option(
    "--rtd-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Simulated seconds between real-time packets (0: none).",
)
@click.option(
    "--minute-interval",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Minutes per minute-data packet (0: none).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    help="Real seconds to wait for the 9014 reply.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Resends of a packet without reply before giving it up.",
)
@click.option(
    "--utc-offset",
    type=float,
    default=0.0,
    show_default=True,
    help="Hours the logger's clock is ahead of UTC (8 for Beijing time).",
)
@common
def hj212_cmd(
    target: str, mn: str, pw: str, st: str, units: str, rtd_interval: float,
    minute_interval: int, timeout_s: float, retries: int, utc_offset: float, **opts: Any,
) -> None:  # fmt: skip
    """An HJ 212-2017 dust monitor reporting 2011/2051/2061 packets to a platform."""
    from firmware_sim.hj212_monitor import Hj212Monitor

    setup = _Setup(opts)
    host, port = _host_port(target)
    dev = Hj212Monitor(
        host, port, mn=mn, pw=pw, st=st, units=units, rtd_interval_s=rtd_interval,
        minute_interval_min=minute_interval, timeout_s=timeout_s, retries=retries,
        utc_offset_h=utc_offset, source=setup.source, clock=setup.clock, seed=setup.seed,
    )  # fmt: skip
    setup.run([dev], [f"hj212-tcp reporting to {{0}} MN={mn} ST={st}"])


@app.command("city")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The district's TOML file ([city], [gateway]; see the README).",
)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Folder for the station configs (overrides [city] out).")  # fmt: skip
def city_cmd(config_path: str, out: str | None) -> None:
    """Start a whole simulated district's devices from the synthetic world, write one
    gateway station config per station, and print where each device listens."""
    from firmware_sim.city import start_city
    from firmware_sim.city_config import load_config

    config = load_config(Path(config_path))
    if out is not None:
        config = config.with_out(Path(out))
    with _Stopper() as stopper:
        city = start_city(config)
        try:
            for line in city.describe():
                click.echo(line)
            click.echo("running; Ctrl-C or SIGTERM stops", err=True)
            while not stopper.wait(0.5):
                pass
        finally:
            city.stop()
