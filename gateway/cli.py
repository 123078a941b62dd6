"""``airtrace gateway ...``: the daemon and the field technician's and maintainer's tools."""

from __future__ import annotations

from pathlib import Path

import click

from protocols.errors import InputError

config_option = click.option(
    "--config",
    "-c",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="STATION.toml",
    help="Station config file (TOML).",
)


def _todo(verb: str) -> InputError:
    return InputError(f"'airtrace gateway {verb}' is not implemented yet")


@click.group(no_args_is_help=True)
def app() -> None:
    """Edge gateway: run the daemon, and the technician's tools to scan, probe, read and check."""


@app.command()
@config_option
def run(config: Path) -> None:
    """Run the gateway daemon for one station until SIGTERM."""
    raise _todo("run")


@app.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every sensor once and exit.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per reading on stdout.")
def read(config: Path, once: bool, json_out: bool) -> None:
    """Poll every sensor of the station and print calibrated, flagged readings."""
    raise _todo("read")


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
