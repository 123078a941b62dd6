"""What the simulated serial particle sensors (PMS5003, SDS011) have in common.

Each has a value source seen through its faults, a pty for the gateway to open, one task
that streams frames while the sensor reports on its own, a writer that puts a frame on the
line (or not: a fault may swallow or corrupt it) and a reader that turns the bytes the
gateway sends into commands. A subclass says how it streams (``_stream``), which commands
it hears (``_heard``) and what it does with them (``_command``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from firmware_sim.clock import Clock, as_clock
from firmware_sim.device import Device
from firmware_sim.faults import Faults, flip_byte
from firmware_sim.loop import SimLoop
from firmware_sim.serial_port import PtyPort
from firmware_sim.sources import SourceLike, Values
from protocols.errors import CodecError

__all__ = ["SerialSensor"]

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class CommandStream(Protocol[C_co]):
    """A codec's command splitter: bytes in, commands and codec errors out."""

    def feed(self, chunk: bytes) -> Sequence[C_co | CodecError]: ...


class SerialSensor(Device, Generic[C]):
    """Base of the serial particle sensors; ``address`` is the gateway's end of the pty."""

    transport = "serial"
    model: ClassVar[str]  # names the stream task
    checksum_at: ClassVar[int]  # the frame byte a corrupting fault flips (the checksum)

    def __init__(
        self,
        *,
        commands: CommandStream[C],
        port: str | None,
        source: SourceLike,
        clock: Clock | None,
        loop: SimLoop | None,
        seed: int,
        pty_backend: str,
        name: str,
    ) -> None:
        super().__init__(loop=loop, name=name)
        self.clock = as_clock(clock)
        self.values = Values(source)
        self.faults = Faults(self.clock, seed=seed)
        self._port = PtyPort(port, backend=pty_backend)
        self._commands = commands
        self._task: asyncio.Task[None] | None = None
        self.frames_sent = 0

    @property
    def address(self) -> str:
        return self._port.address

    # -- life cycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        self._port.open(self._on_data)
        self._task = asyncio.create_task(self._stream(), name=f"{self.model} {self.address}")
        self.running = True

    async def astop(self) -> None:
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._port.aclose()

    async def _stream(self) -> None:
        raise NotImplementedError

    def _send(self, frame: bytes) -> None:
        if not self.faults.answers():
            return
        self._port.write(self.faults.frame(frame, flip_byte(self.checksum_at)))
        self.frames_sent += 1

    # -- commands ---------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        for item in self._commands.feed(data):
            if isinstance(item, CodecError):
                logging.getLogger(type(self).__module__).debug("%s: %s", self, item)
                continue
            if self._heard(item):
                asyncio.get_running_loop().create_task(self._command(item))

    def _heard(self, command: C) -> bool:
        """Whether the command is for this sensor."""
        return True

    async def _command(self, command: C) -> None:
        raise NotImplementedError
