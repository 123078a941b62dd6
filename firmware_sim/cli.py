"""``airtrace sim ...``: start simulated devices on real transports."""

from __future__ import annotations

import click

from protocols.errors import InputError


@click.group(no_args_is_help=True)
def app() -> None:
    """Simulated devices (Modbus TCP/RTU, PMS5003, SDS011, HJ 212) and a synthetic city."""


@app.command()
def city() -> None:
    """Start a whole simulated district's devices and print where each listens."""
    raise InputError("'airtrace sim city' is not implemented yet")
