"""``airtrace gateway ...``: the daemon and the field technician's and maintainer's tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

if TYPE_CHECKING:  # imported where a command needs it (a fast start-up)
    from gateway.calibration import CalSet

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "-c",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="STATION.toml",
    help="Station config file (TOML).",
)


@click.group(no_args_is_help=True)
def app() -> None:
    """Edge gateway: run the daemon, and the technician's tools to scan, probe, read and check."""


@app.command()
@click.option(
    "--config",
    "-c",
    "configs",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="STATION.toml",
    help="Station config file (TOML). Repeat it to run several stations in one process.",
)
def run(configs: tuple[Path, ...]) -> None:
    """Run the gateway daemon for one station (or several, one thread each) until SIGTERM:
    poll, calibrate, flag, keep every reading in the outbox until the centre confirms it,
    publish, obey commands."""
    from gateway.daemon import run_daemon

    run_daemon(*configs)


@app.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every sensor once and exit.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per reading on stdout.")
def read(config: Path, once: bool, json_out: bool) -> None:
    """Poll every sensor of the station and print calibrated, flagged readings."""
    from gateway.readout import read_command

    read_command(config, once=once, json_out=json_out, out=click.echo)


# -- gateway-core's tools: doctor, status, calibrate (logic in doctor.py, readout.py,
# maintenance.py) --


@app.command()
@config_option
@click.option("--no-devices", is_flag=True, help="Skip polling the devices.")
def doctor(config: Path, no_devices: bool) -> None:
    """Check config, devices, broker and credentials, clock, disk, outbox backlog and
    calibration: one PASS/WARN/FAIL line each, with the fix. Exit 1 if a check fails."""
    from gateway.doctor import doctor as run_doctor

    raise click.exceptions.Exit(run_doctor(config, out=click.echo, skip_devices=no_devices))


@app.command()
@config_option
@click.option("--json", "json_out", is_flag=True, help="One JSON object instead of lines.")
def status(config: Path, json_out: bool) -> None:
    """What the running daemon does: uplink, outbox backlog, devices, actuators,
    calibration (read-only; the daemon is not disturbed)."""
    from gateway.readout import status_command

    status_command(config, json_out=json_out, out=click.echo)


@app.group()
def calibrate() -> None:
    """Calibrate a sensor: zero and span checks, multi-point sets, history and rollback.
    Readings taken during a zero or span session are flagged C."""


def _target(f: F) -> F:
    f = click.option("--quantity", "-q", required=True, help="Quantity, e.g. pm25 or no2.")(f)
    f = click.option("--sensor", "-s", required=True, help="Sensor name from the config.")(f)
    return config_option(f)


def _session(f: F) -> F:
    f = click.option(
        "--settle",
        "settle_s",
        type=click.FloatRange(0),
        default=60.0,
        show_default=True,
        help="Seconds at the start of the session left out of the mean.",
    )(f)
    return click.option(
        "--duration",
        "duration_s",
        type=click.FloatRange(1),
        default=300.0,
        show_default=True,
        help="Seconds the session gathers readings.",
    )(f)


def _print_set(cs: CalSet) -> None:
    click.echo(
        f"{cs.sensor}/{cs.quantity} v{cs.version} stored: {cs.kind} {cs.describe()} [{cs.source}]"
    )


@calibrate.command()
@_target
@_session
@click.option(
    "--reference",
    type=float,
    default=0.0,
    show_default=True,
    help="What the zero gas or filter really is, in the quantity's unit.",
)
def zero(
    config: Path, sensor: str, quantity: str, duration_s: float, settle_s: float, reference: float
) -> None:
    """Zero check: with zero air on the inlet, move the offset so the mean reads zero."""
    _check("zero", config, sensor, quantity, duration_s, settle_s, reference)


@calibrate.command()
@_target
@_session
@click.option(
    "--reference",
    type=float,
    required=True,
    help="The span gas concentration (or reference value), in the quantity's unit.",
)
def span(
    config: Path, sensor: str, quantity: str, duration_s: float, settle_s: float, reference: float
) -> None:
    """Span check: with span gas on the inlet, set the slope through the zero and span."""
    _check("span", config, sensor, quantity, duration_s, settle_s, reference)


def _check(
    procedure: Literal["zero", "span"],
    config: Path,
    sensor: str,
    quantity: str,
    duration_s: float,
    settle_s: float,
    reference: float,
) -> None:
    from gateway import config as gwconfig
    from gateway import maintenance

    cs = maintenance.check(
        procedure,
        gwconfig.load(config),
        sensor,
        quantity,
        reference=reference,
        duration_s=duration_s,
        settle_s=settle_s,
        out=click.echo,
    )
    _print_set(cs)


@calibrate.command()
@_target
@click.option(
    "--point",
    "pairs",
    multiple=True,
    metavar="RAW=REF",
    help="A raw reading and its reference value (repeatable).",
)
@click.option(
    "--file",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV with columns raw,ref (e.g. a co-location period).",
)
@click.option(
    "--fit",
    type=click.Choice(["piecewise", "linear"]),
    default="piecewise",
    show_default=True,
    help="Through the points, or a least-squares line.",
)
@click.option(
    "--kappa",
    type=click.FloatRange(0, 2),
    default=None,
    help="Add the kappa-Koehler humidity correction (optical PM; linear fit).",
)
@click.option(
    "--source",
    type=click.Choice(["manual", "colocation", "factory"]),
    default="manual",
    show_default=True,
    help="Where the points come from.",
)
@click.option(
    "--effective",
    default=None,
    metavar="ISO",
    help="When the set takes effect (ISO 8601; default now).",
)
@click.option("--note", default=None, help="A note kept in the history.")
def points(
    config: Path,
    sensor: str,
    quantity: str,
    pairs: tuple[str, ...],
    csv_file: Path | None,
    fit: str,
    kappa: float | None,
    source: str,
    effective: str | None,
    note: str | None,
) -> None:
    """Multi-point calibration from (raw, reference) pairs."""
    from gateway import config as gwconfig
    from gateway import maintenance
    from protocols.timefmt import parse_iso

    pts = maintenance.read_points(pairs, csv_file)
    cs = maintenance.points(
        gwconfig.load(config),
        sensor,
        quantity,
        pts,
        fit=fit,
        kappa=kappa,
        source=source,
        effective=None if effective is None else parse_iso(effective),
        note=note,
    )
    _print_set(cs)


@calibrate.command()
@config_option
@click.option("--json", "json_out", is_flag=True, help="One JSON object per set.")
def show(config: Path, json_out: bool) -> None:
    """The calibration in force for every sensor and quantity."""
    from gateway import config as gwconfig
    from gateway import maintenance

    maintenance.show(gwconfig.load(config), json_out=json_out, out=click.echo)


@calibrate.command()
@config_option
@click.option("--sensor", "-s", default=None, help="Only this sensor.")
@click.option("--quantity", "-q", default=None, help="Only this quantity.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per version.")
def history(config: Path, sensor: str | None, quantity: str | None, json_out: bool) -> None:
    """Every calibration version ever stored, oldest first."""
    from gateway import config as gwconfig
    from gateway import maintenance

    maintenance.history(
        gwconfig.load(config), sensor=sensor, quantity=quantity, json_out=json_out, out=click.echo
    )


@calibrate.command()
@_target
@click.option(
    "--to",
    "to",
    type=click.IntRange(1),
    default=None,
    help="The version to restore (default: the one before the current).",
)
def rollback(config: Path, sensor: str, quantity: str, to: int | None) -> None:
    """Put an earlier version back in force (as a new version: the history stays)."""
    from gateway import config as gwconfig
    from gateway import maintenance

    _print_set(maintenance.rollback(gwconfig.load(config), sensor, quantity, to=to))


# -- the technician's tools: scan, probe, live (logic in gateway/scan.py, probe.py, live.py) --


@app.command()
@click.option(
    "--port",
    "-p",
    required=True,
    metavar="PATH|HOST:PORT",
    help="Serial device (/dev/ttyUSB0: Modbus RTU, PMS5003, SDS011) or host:port (Modbus TCP).",
)
@click.option(
    "--units",
    default="1-32",
    show_default=True,
    metavar="LIST",
    help="Modbus unit ids to try, e.g. 1-32,100 (1-247 for all).",
)
@click.option(
    "--baud",
    "baudrates",
    default="9600,4800,19200,2400",
    show_default=True,
    metavar="LIST",
    help="Baud rates to try on a serial port, in order.",
)
@click.option(
    "--parity",
    type=click.Choice(["N", "E", "O"]),
    default="N",
    show_default=True,
    help="Serial parity.",
)
@click.option(
    "--stopbits",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="Serial stop bits.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.01, 10),
    default=0.1,
    show_default=True,
    help="Seconds to wait for each unit id's answer.",
)
@click.option(
    "--listen",
    "listen_s",
    type=click.FloatRange(0, 60),
    default=2.5,
    show_default=True,
    help="Seconds to listen for a streaming PMS5003/SDS011 first (0 skips it).",
)
@click.option(
    "--profile",
    "extra_profiles",
    multiple=True,
    metavar="FILE",
    help="Also fingerprint against this profile file (repeatable).",
)
@click.option("--json", "json_out", is_flag=True, help="One JSON object per device found.")
def scan(
    port: str,
    units: str,
    baudrates: str,
    parity: str,
    stopbits: int,
    timeout_s: float,
    listen_s: float,
    extra_profiles: tuple[str, ...],
    json_out: bool,
) -> None:
    """Find the devices on a port (unit ids, baud rates) and the profiles they fit."""
    import json

    from gateway import scan as scanning
    from gateway.clock import SystemClock
    from gateway.profiles import load_profile

    rates = scanning.parse_baudrates(baudrates)
    profiles = scanning.modbus_profiles()
    profiles += [load_profile(f) for f in extra_profiles]
    progress = None if json_out else (lambda msg: click.echo(msg, err=True))
    found = scanning.scan(
        port,
        clock=SystemClock(),
        units=scanning.parse_units(units),
        baudrates=rates,
        parity=parity,
        stopbits=stopbits,
        timeout_s=timeout_s,
        listen_s=listen_s,
        profiles=profiles,
        progress=progress,
    )
    if json_out:
        for f in found:
            click.echo(json.dumps(f.to_json(), ensure_ascii=False))
    else:
        click.echo(scanning.render(found, port))


@app.command()
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="STATION.toml",
    help="Station config file; with --sensor, probe that sensor.",
)
@click.option("--sensor", "-s", metavar="NAME", help="The [[sensor]] of --config to probe.")
@click.option("--port", "-p", metavar="PATH|HOST:PORT", help="Without --config: the device's port.")
@click.option("--profile", metavar="NAME|FILE", help="Without --config: the device's profile.")
@click.option(
    "--unit",
    type=click.IntRange(0, 247),
    default=1,
    show_default=True,
    help="Without --config: Modbus unit id.",
)
@click.option(
    "--baud",
    type=int,
    default=None,
    help="Without --config: baud rate (default: the profile's, else 9600).",
)
@click.option(
    "--parity",
    type=click.Choice(["N", "E", "O"]),
    default=None,
    help="Without --config: parity (default: the profile's, else N).",
)
@click.option(
    "--stopbits",
    type=click.IntRange(1, 2),
    default=None,
    help="Without --config: stop bits (default: the profile's, else 1).",
)
@click.option(
    "--mode",
    type=click.Choice(["active", "query"]),
    default="active",
    show_default=True,
    help="Without --config: particle sensor reporting mode.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.01, 60),
    default=1.0,
    show_default=True,
    help="Without --config: seconds to wait for an answer.",
)
@click.option(
    "--raw",
    "raw",
    multiple=True,
    metavar="FC:ADDR:COUNT",
    help="Also dump these registers, e.g. 3:0:10 or 4:0x1F4:6 (repeatable).",
)
@click.option("--json", "json_out", is_flag=True, help="Print the result as one JSON object.")
def probe(
    config: Path | None,
    sensor: str | None,
    port: str | None,
    profile: str | None,
    unit: int,
    baud: int | None,
    parity: str | None,
    stopbits: int | None,
    mode: str,
    timeout_s: float,
    raw: tuple[str, ...],
    json_out: bool,
) -> None:
    """Read one device once: raw registers (or frame) and the values its profile decodes."""
    import dataclasses
    import json

    from gateway import probe as probing
    from gateway.clock import SystemClock
    from gateway.errors import DeviceError

    target, model = probing.target(
        config, sensor, port, profile, unit, baud, parity, stopbits, mode, timeout_s
    )
    reads = [probing.parse_raw(r) for r in raw]
    result = probing.probe(target, model, clock=SystemClock(), raw=reads)
    if json_out:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        click.echo(probing.render(dataclasses.replace(result, error=None)))
    if result.error:
        raise DeviceError(result.error)  # exit 1, the reason on stderr


@app.command()
@config_option
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(0.1, None),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@click.option(
    "--refresh",
    "refresh_s",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between table refreshes.",
)
def live(config: Path, duration_s: float | None, refresh_s: float) -> None:
    """Poll the station's sensors and show their latest values in a refreshing table."""
    from rich.console import Console

    from gateway import config as station_config
    from gateway.clock import SystemClock
    from gateway.live import run_live

    cfg = station_config.load(config)
    run_live(
        cfg, clock=SystemClock(), console=Console(), duration_s=duration_s, refresh_s=refresh_s
    )
