"""Runs the real daemon (``gateway.daemon.Gateway``: outbox, uplink, commands, signal
handling) as its own process with ``scripted_poller.ScriptedPoller`` as the device side.

For the process-level tests (SIGTERM, kill -9) until gateway-io's poller is on main, when
``airtrace gateway run`` against simulated Modbus devices takes its place.
Usage: ``python synthetic_gateway.py STATION.toml PERIOD_S``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted_poller import ScriptedPoller

from airtrace.cli import setup_logging
from gateway import config
from gateway.daemon import Gateway


def main() -> None:
    cfg = config.load(sys.argv[1])
    period = float(sys.argv[2])
    setup_logging("info")
    gw = Gateway(
        cfg,
        poller_factory=lambda c, clock, sink: ScriptedPoller(
            c, clock=clock, sink=sink, period_s=period
        ),
    )
    gw.install_signal_handlers()
    gw.run()


if __name__ == "__main__":
    main()
