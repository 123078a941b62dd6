"""What every simulated device has in common: a loop to run on, start and stop, an address.

A device is asyncio code (``astart``/``astop``, awaited on its ``SimLoop``); ``start()`` and
``stop()`` are the synchronous forms for tests, the CLI and the demo, and a device is a
context manager. ``address`` is what a gateway's ``[[sensor]] address`` needs (host:port
for TCP, the pty path for RTU and serial); ``transport`` the matching ``[[sensor]]
transport`` value.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

from firmware_sim.loop import SimLoop

__all__ = ["Device"]


class Device:
    """Base of the simulated devices."""

    transport = ""

    def __init__(self, *, loop: SimLoop | None = None, name: str = "") -> None:
        self.loop = loop or SimLoop.shared()
        self.name = name
        self.running = False

    @property
    def address(self) -> str:
        raise NotImplementedError

    async def astart(self) -> None:
        raise NotImplementedError

    async def astop(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Start on the device's loop; returns the device."""
        if not self.running:
            self.loop.run(self.astart())
        return self

    def stop(self) -> None:
        """Stop and release the transport; idempotent."""
        if self.running and self.loop.alive:
            self.loop.run(self.astop())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.running and self.loop.alive and not self.loop.in_loop:
                self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        try:
            where = self.address
        except Exception:  # not started yet
            where = "?"
        return f"{type(self).__name__}({self.name or ''} {self.transport} {where}, {state})"
