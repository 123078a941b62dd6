"""The device's end of a virtual serial cable, driven by the event loop.

A simulated serial sensor owns a ``PtyPair`` (or is given a pty path): it opens end ``a``
raw and non-blocking, reads commands with the loop's reader callback and writes frames; the
gateway opens ``address`` (end ``b``) with pyserial as it would /dev/ttyUSB0. Writes that
the cable cannot take (nobody reads the other end, its buffer is full) are dropped and
counted, as a UART overruns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable

from firmware_sim.ptypair import PtyPair

__all__ = ["PtyPort"]


class PtyPort:
    """One serial line: ``address`` for the gateway, ``write`` and a data callback for the
    device."""

    def __init__(self, path: str | None = None, *, backend: str = "auto") -> None:
        self._path = path
        self._backend = backend
        self._pair: PtyPair | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # bytes the line could not take
        self.written = 0
        self.received = 0

    @property
    def address(self) -> str:
        """The path the gateway opens."""
        if self._pair is not None:
            return self._pair.b
        if self._path is not None:
            return self._path
        raise RuntimeError("the port is not open")

    def open(self, on_data: Callable[[bytes], None]) -> None:
        """Open the device's end; ``on_data`` gets every chunk that arrives (on the loop)."""
        if self._path is None:
            self._pair = PtyPair(backend=self._backend)
            device_path = self._pair.a
        else:
            device_path = self._path
        fd = os.open(device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):
            tty.setraw(fd)
        self._fd = fd
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EIO: the other end hung up; it may reopen
                return
            if data:
                self.received += len(data)
                on_data(data)

        self._loop.add_reader(fd, readable)

    def write(self, data: bytes) -> None:
        """Put ``data`` on the line (what does not fit is dropped and counted)."""
        if self._fd is None or not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError, OSError):
                self.dropped += len(view)
                return
            self.written += n
            view = view[n:]

    def close(self) -> None:
        self._close_fd()
        if self._pair is not None:
            self._pair.close()
            self._pair = None

    async def aclose(self) -> None:
        """``close()`` from the loop: the cable is unplugged in a worker thread (ending its
        socat takes a while), so the loop's other devices go on meanwhile."""
        self._close_fd()
        pair, self._pair = self._pair, None
        if pair is not None:
            await asyncio.to_thread(pair.close)

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
