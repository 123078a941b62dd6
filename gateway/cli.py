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
