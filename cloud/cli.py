"""``airtrace cloud ...``: the central service and the operator's tools."""

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
    raise _todo("run")


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
    raise _todo("export")


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
def invert(obs: Path, met: Path, domain: str, cell: float, sites: Path | None, out: Path) -> None:
    """Locate emission sources to grid cells and estimate their rates from hourly data."""
    raise _todo("invert")
