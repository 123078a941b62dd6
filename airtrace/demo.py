"""``airtrace demo``: the whole system on embedded defaults, accelerated, with a summary."""

from __future__ import annotations

import click

from protocols.errors import InputError


@click.command()
def demo() -> None:
    """Run a simulated district end to end (devices, gateways, broker, central service)."""
    raise InputError("'airtrace demo' is not implemented yet")
