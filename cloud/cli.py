"""``airtrace cloud ...``: the central service and the operator's tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from protocols.errors import InputError

if TYPE_CHECKING:  # the store is imported where a command needs it (a fast start-up)
    from cloud.store import Store

config_option = click.option(
    "--config",
    "-c",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CLOUD.toml",
    help="Cloud config file (TOML).",
)


def _todo(verb: str) -> InputError:
    return InputError(f"'airtrace cloud {verb}' is not implemented yet")


@click.group(no_args_is_help=True)
def app() -> None:
    """Central service: ingest, store, fusion, hourly inversion, alerts and the HTTP API."""


@app.command()
@config_option
def run(config: Path) -> None:
    """Run the central service (ingest, fusion, API, hourly inversion, alerts) until SIGTERM."""
    from cloud.clock import clock_from_env
    from cloud.config import load_config
    from cloud.service import Service

    cfg = load_config(config)
    Service(cfg, clock=clock_from_env()).run()


@app.command()
@config_option
@click.option("--station", help="Only this station id.")
@click.option("--since", help="Only readings at or after this ISO 8601 time.")
@click.option("--until", help="Only readings before this ISO 8601 time.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="Output format.",
)
def export(
    config: Path, station: str | None, since: str | None, until: str | None, fmt: str
) -> None:
    """Write readings as stored, one per (station, epoch, outbox id), to stdout."""
    from cloud.export import export_readings

    with _store(config) as store:
        export_readings(
            store,
            sys.stdout,  # click.get_text_stream is deprecated (Click 8.5) and gone in 9.0
            station=station,
            since=since,
            until=until,
            fmt=fmt,
        )


@app.command()
@config_option
@click.option("--station", help="Only this station id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def gaps(config: Path, station: str | None, as_json: bool) -> None:
    """List outbox ids counted lost (below a gateway's floor), per station and epoch."""
    from cloud.cli_registry import print_gaps

    with _store(config) as store:
        print_gaps(store, station, as_json)


@app.command()
@config_option
@click.option("--limit", type=int, default=20, show_default=True, help="How many, newest first.")
@click.option(
    "--class", "reason_class", help="Only this reason class (telemetry, status, auth...)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def quarantine(config: Path, limit: int, reason_class: str | None, as_json: bool) -> None:
    """Show what could not be taken in, and the counts by reason class."""
    from cloud.cli_registry import print_quarantine

    with _store(config) as store:
        print_quarantine(store, limit, reason_class, as_json)


@app.command()
@config_option
@click.argument("station")
@click.option("--reference", required=True, help="The reference station it stands beside.")
@click.option("--quantity", default="pm25", show_default=True, help="Quantity to fit.")
@click.option("--push", is_flag=True, help="Send the new coefficients to the gateway (down/cmd).")
def colocate(config: Path, station: str, reference: str, quantity: str, push: bool) -> None:
    """Cross-calibrate a micro station against a reference over the rolling window."""
    from cloud.cli_registry import colocate_cli

    colocate_cli(config, station, reference, quantity, push)


def _store(config: Path) -> Store:
    from cloud.config import load_config
    from cloud.store import open_store

    cfg = load_config(config)
    return open_store(cfg.store.url, sqlite_synchronous=cfg.store.sqlite_synchronous)


def _mount_registry() -> None:
    from cloud.cli_registry import registry

    app.add_command(registry, "registry")


_mount_registry()


def _mount_alerts() -> None:
    from cloud.cli_alerts import alerts, events

    app.add_command(alerts, "alerts")
    app.add_command(events, "events")


_mount_alerts()


@app.command()
@click.option(
    "--obs",
    required=True,
    type=click.Path(path_type=Path),
    metavar="OBS.csv",
    help="Hourly observations CSV (DESIGN 4.3).",
)
@click.option(
    "--met",
    required=True,
    type=click.Path(path_type=Path),
    metavar="MET.csv",
    help="Hourly meteorology CSV.",
)
@click.option(
    "--domain", required=True, metavar="X0,Y0,X1,Y1", help="Domain corners in metres, local frame."
)
@click.option("--cell", type=float, default=100.0, show_default=True, help="Cell size in metres.")
@click.option(
    "--sites",
    type=click.Path(path_type=Path),
    metavar="SITES.csv",
    help="Registry of known emitters, used as prior knowledge.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    metavar="RESULT.json",
    help="Where to write the result.",
)
@click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(path_type=Path),
    metavar="FILE.csv|FILE.npz",
    help="Where to write the gridded inventory [default: beside RESULT.json, "
    "<name>.inventory.csv].",
)
@click.option(
    "--map",
    "map_path",
    type=click.Path(path_type=Path),
    metavar="FILE.png",
    help="Where to draw the PNG map [default: beside RESULT.json, <name>.png].",
)
@click.option("--no-extras", is_flag=True, help="Write RESULT.json only: no inventory, no map.")
@click.option(
    "--terrain",
    type=click.Choice(["urban", "rural"]),
    default="urban",
    show_default=True,
    help="Briggs dispersion set.",
)
@click.option(
    "--lat-lon",
    "lat_lon",
    metavar="LAT,LON",
    help="Where the domain is (degrees), so stability can follow the sun when MET.csv has "
    "neither a class nor sigma_theta.",
)
@click.option(
    "--max-sources", type=int, default=5, show_default=True, help="Most sources to report."
)
def invert(
    obs: Path,
    met: Path,
    domain: str,
    cell: float,
    sites: Path | None,
    out: Path,
    inventory_path: Path | None,
    map_path: Path | None,
    no_extras: bool,
    terrain: str,
    lat_lon: str | None,
    max_sources: int,
) -> None:
    """Locate emission sources to grid cells and estimate their rates from hourly data."""
    from cloud import invert_io
    from cloud.inversion import invert as run_inversion
    from cloud.inversion_types import InversionConfig

    box = invert_io.parse_domain(domain)
    place = None
    if lat_lon:
        try:
            lat, lon = (float(v) for v in lat_lon.split(","))
        except ValueError:
            raise InputError(f"--lat-lon {lat_lon!r} is not LAT,LON") from None
        place = (lat, lon)
    if max_sources < 0:
        raise InputError("--max-sources must be 0 or more")
    config = InversionConfig(cell_m=cell, terrain=terrain, lat_lon=place,
                             max_sources=max_sources, inventory=not no_extras)
    obs_rows = invert_io.read_obs(obs)
    met_rows = invert_io.read_met(met)
    site_rows = invert_io.read_sites(sites) if sites else []
    result = run_inversion(obs_rows, met_rows, box, sites=site_rows, config=config)
    extra: dict[str, str] = {}
    if not no_extras:
        inv_file = inventory_path or out.with_name(out.stem + ".inventory.csv")
        map_file = map_path or out.with_name(out.stem + ".png")
        if result.inventory is not None:
            invert_io.write_inventory(inv_file, result.inventory)
            extra["inventory_file"] = inv_file.name
        from cloud.inversion_map import write_map

        write_map(map_file, result, obs_rows, met_rows, site_rows)
        extra["map_file"] = map_file.name
    invert_io.write_result(out, result, **extra)
