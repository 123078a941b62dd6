"""The embedded MQTT broker (amqtt) for the demo and for machines without Mosquitto.

Production runs Eclipse Mosquitto 2 (``deploy/mosquitto/``). amqtt keeps retained messages
and fires last wills, which is all the demo needs: custody is end to end (DESIGN 4.2), so
the broker's own queueing is never relied on.

``EmbeddedBroker`` runs the broker on its own event loop in a daemon thread;
``python -m airtrace.broker --port N`` runs it in the foreground until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


def _config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "timeout_disconnect_delay": 0,
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class EmbeddedBroker:
    """An amqtt broker on ``host:port``, started and stopped from synchronous code."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"embedded broker did not start on {self.host}:{self.port}")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed: {self._error}") from self._error

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._broker = Broker(_config(self.host, self.port), loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            fut.result(10)
        except Exception as exc:  # shutting down anyway
            log.debug("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded amqtt broker until SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    broker = EmbeddedBroker(args.host, args.port)
    broker.start()
    # the handler only records the signal: setting an Event from a handler can deadlock
    # (the main thread may hold that Event's lock when the handler runs)
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, _f: signalled.append(sig))
    signal.signal(signal.SIGINT, lambda sig, _f: signalled.append(sig))
    while not signalled:
        time.sleep(0.1)
    broker.stop()


if __name__ == "__main__":
    main()
