"""A particle sensor on one end of a pty pair, for the serial drivers' tests: a small writer
thread that streams frames in active mode and answers commands (PMS5003 or SDS011), with
knobs for garbage on the line and for going silent."""

from __future__ import annotations

import threading
import time
from typing import Any

import serial

from protocols import pms5003, sds011
from protocols.errors import CodecError


class UartSensor:
    def __init__(self, path: str, kind: str, *, period_s: float = 0.03) -> None:
        assert kind in ("pms5003", "sds011")
        self.kind = kind
        self.period_s = period_s
        self.port = serial.Serial(path, 9600, timeout=0.01)
        self.mode = "active"
        self.values: dict[str, Any] = {"pm1": 3, "pm25": 4, "pm10": 7}
        self.error = 0  # PMS5003 error byte
        self.silent = False
        self.garbage = b""  # sent once, before the next frame
        self.commands: list[str] = []
        self.sent = 0
        self._stream: Any = pms5003.CommandStream() if kind == "pms5003" else sds011.CommandStream()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(self, **values: Any) -> None:
        with self._lock:
            self.values.update(values)

    def frame(self) -> bytes:
        with self._lock:
            v = dict(self.values)
        if self.kind == "pms5003":
            return pms5003.build_frame(
                pm1=v["pm1"], pm25=v["pm25"], pm10=v["pm10"], error=self.error
            )
        return sds011.build_frame(pm25=v["pm25"], pm10=v["pm10"], device_id=0x58D9)

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self.silent:
                return
            if self.garbage:
                data, self.garbage = self.garbage + data, b""
            self.port.write(data)
            self.sent += 1

    def go_silent(self) -> None:
        """Stop sending; when this returns, every byte sent before has left this end."""
        with self._send_lock:
            self.silent = True
            self.port.flush()

    def _handle(self, command: Any) -> None:
        if self.kind == "pms5003":
            self.commands.append(command.name)
            if command.name == "passive":
                self.mode = "query"
                self._send(pms5003.build_ack("passive"))
            elif command.name == "active":
                self.mode = "active"
                self._send(self.frame())
            elif command.name == "read" and self.mode == "query":
                self._send(self.frame())
            return
        name = command.name
        self.commands.append(f"{name}{'=' + str(command.value) if command.set else ''}")
        if name == "reporting_mode" and command.set:
            self.mode = "query" if command.value else "active"
            self._send(sds011.build_reply(command, value=command.value))
        elif name == "query_data":
            self._send(self.frame())
        elif name == "sleep_work":
            self._send(sds011.build_reply(command, value=command.value))

    def _run(self) -> None:
        next_frame = time.monotonic()
        while not self._stop.is_set():
            try:
                data = self.port.read(64)
            except (serial.SerialException, OSError, TypeError):
                return
            if data:
                for item in self._stream.feed(data):
                    if not isinstance(item, CodecError):
                        self._handle(item)
            if self.mode == "active" and time.monotonic() >= next_frame:
                self._send(self.frame())
                next_frame = time.monotonic() + self.period_s

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.port.close()
