"""One asyncio event loop in one background thread, shared by simulated devices.

Every simulated device is asyncio code (pymodbus's servers, the serial writers, the HJ 212
client). Rather than a thread or a process per device, they all run on one ``SimLoop``: a
district of a hundred stations costs one thread. Synchronous callers (tests, the CLI, the
demo) start and stop devices through it::

    loop = SimLoop.shared()          # the process-wide loop, started on first use
    loop.run(device.astart())        # run a coroutine on it and wait for the result

A device's ``start()``/``stop()`` do exactly that on the loop it was given.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["SimLoop"]

T = TypeVar("T")


class SimLoop:
    """An event loop running in a daemon thread until ``close()``."""

    _shared: SimLoop | None = None
    _shared_lock = threading.Lock()

    def __init__(self, name: str = "firmware-sim") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._cancel_all()
            self.loop.close()

    def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())

    @classmethod
    def shared(cls) -> SimLoop:
        """The process-wide loop (started on first use, stopped at exit)."""
        with cls._shared_lock:
            if cls._shared is None or not cls._shared.alive:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    @property
    def in_loop(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a future the caller may wait on."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result (not from the loop's thread)."""
        if self.in_loop:
            coro.close()
            raise RuntimeError("SimLoop.run() called from the loop itself: await instead")
        return self.submit(coro).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` soon on the loop's thread (from any thread)."""
        if self.in_loop:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        """Stop the loop (tasks still running are cancelled); idempotent."""
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop:
            self._thread.join(10)
