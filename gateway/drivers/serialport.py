"""What the UART particle sensors (PMS5003, SDS011) share: a pyserial port and a frame wait.

The port opens at the first ``read()`` and again after any failure (a replugged USB
adapter comes back by itself); on opening, the driver sends the sensor its setup
commands (wake, reporting mode) and drops what arrives until the sensor confirms them.
pyserial and OS errors are translated here, once, into ``DeviceError``. A poll never
reports an old frame: bytes that arrived since the last poll are decoded and dropped (a
frame still arriving is kept), then the driver waits up to ``timeout_s`` for the next
complete data frame — in query mode after sending the sensor its "read" command, in
active mode for the sensor's next report (set ``timeout_s`` above the sensor's report
period). Garbage and broken frames are skipped by the codec's resynchronising splitter
and counted (``bad_frames``); a poll that saw only broken frames fails with the codec's
reason, one that saw nothing times out.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from typing import Any

from gateway.clock import Clock
from gateway.config import SensorConfig
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag, Sample
from gateway.profiles import Profile
from protocols.errors import CodecError

log = logging.getLogger(__name__)

_SLICE_S = 0.05  # longest single blocking read, so a poll never overshoots its timeout much


class SerialSensorDriver:
    """Base of the UART sensor drivers; subclasses name the codec and the commands."""

    def __init__(self, sensor: SensorConfig, profile: Profile, *, clock: Clock) -> None:
        self.sensor = sensor
        self.profile = profile
        self._clock = clock
        self._port: Any = None
        self._stream = self.make_stream()
        self.frames = 0
        self.bad_frames = 0
        self._last_bad: CodecError | None = None
        self.last_frame: dict[str, Any] | None = None  # the last data frame, decoded (probe)

    @property
    def name(self) -> str:
        return self.sensor.name

    # -- what a protocol supplies ------------------------------------------------------------

    @abstractmethod
    def make_stream(self) -> Any:
        """The codec's resynchronising splitter (``feed(bytes) -> [frame | CodecError]``)."""

    @abstractmethod
    def setup_commands(self) -> list[bytes]:
        """Sent once after the port opens (e.g. switch to query mode)."""

    @abstractmethod
    def request_command(self) -> bytes:
        """Sent before each query-mode poll."""

    def is_data(self, frame: dict[str, Any]) -> bool:
        return frame.get("kind") == "data"

    def is_setup_done(self, frame: dict[str, Any]) -> bool:
        """True for the sensor's answer to the last setup command. Until it comes (at
        most ``timeout_s`` after opening) everything the sensor sends is dropped, so a
        frame it streamed before it switched to query mode is never taken for an answer."""
        return True

    def frame_problem(self, frame: dict[str, Any]) -> str | None:
        """Why a decoded data frame's values are not to be trusted, if they are not."""
        return None

    # -- the port ----------------------------------------------------------------------------

    def _open(self) -> Any:
        if self._port is not None:
            return self._port
        import serial

        s = self.sensor
        try:
            port = serial.Serial(
                s.address, baudrate=s.baudrate, parity=s.parity, stopbits=s.stopbits,
                bytesize=s.bytesize, timeout=_SLICE_S, write_timeout=max(s.timeout_s, 0.5),
            )  # fmt: skip
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(
                f"{s.name}: cannot open {s.address}: {_first_line(exc)}", device=s.name, comm=True
            ) from None
        self._port = port
        self._stream = self.make_stream()
        try:
            for command in self.setup_commands():
                port.write(command)
            port.flush()
            self._await_setup(port)
        except Exception as exc:
            self._drop()
            raise self._io_error(exc) from None
        return port

    def _await_setup(self, port: Any) -> None:
        deadline = time.monotonic() + self.sensor.timeout_s
        while (left := deadline - time.monotonic()) > 0:
            port.timeout = min(left, _SLICE_S)
            chunk = port.read(max(1, port.in_waiting))
            for item in self._stream.feed(chunk) if chunk else ():
                if not isinstance(item, CodecError) and self.is_setup_done(item):
                    return
        log.debug("%s: no answer to the setup commands; carrying on", self.sensor.name)

    def _drop(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # a vanished device may fail even to close
                log.debug("%s: closing %s failed", self.sensor.name, self.sensor.address)

    def _io_error(self, exc: BaseException) -> DeviceError:
        s = self.sensor
        return DeviceError(
            f"{s.name}: {s.address} failed: {type(exc).__name__}: {_first_line(exc)}",
            device=s.name, comm=True,
        )  # fmt: skip

    def _feed(self, data: bytes) -> list[dict[str, Any]]:
        frames = []
        for item in self._stream.feed(data):
            if isinstance(item, CodecError):
                self.bad_frames += 1
                self._last_bad = item
            elif self.is_data(item):
                frames.append(item)
        return frames

    # -- one poll ----------------------------------------------------------------------------

    def read(self) -> list[Sample]:
        port = self._open()
        s = self.sensor
        try:
            waiting = port.in_waiting
            if waiting:
                self._feed(port.read(waiting))  # what came since the last poll is stale
            self._last_bad = None
            if s.mode == "query":
                port.write(self.request_command())
                port.flush()
            deadline = time.monotonic() + s.timeout_s
            while (left := deadline - time.monotonic()) > 0:
                port.timeout = min(left, _SLICE_S)
                chunk = port.read(max(1, port.in_waiting))
                if not chunk:
                    continue
                frames = self._feed(chunk)
                if frames:
                    self.frames += 1
                    self.last_frame = frames[-1]
                    return self._samples(frames[-1])
        except Exception as exc:
            self._drop()
            raise self._io_error(exc) from None
        if self._last_bad is not None:
            raise DeviceError(
                f"{s.name}: no valid frame within {s.timeout_s:g} s: {self._last_bad}",
                device=s.name, comm=True,
            )  # fmt: skip
        raise DeviceTimeout(
            f"{s.name}: no frame within {s.timeout_s:g} s ({s.mode} mode)", device=s.name
        )

    def _samples(self, frame: dict[str, Any]) -> list[Sample]:
        ts = self._clock.now()
        problem = self.frame_problem(frame)
        out = []
        for f in self.profile.fields:
            raw = frame.get(f.field)
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                why = f"the frame carries no {f.field}"
                out.append(Sample(self.name, f.quantity, f.unit, None, ts, Flag.FAULT, why))
            elif problem:
                out.append(
                    Sample(self.name, f.quantity, f.unit, f.value(raw), ts, Flag.FAULT, problem)
                )
            else:
                out.append(Sample(self.name, f.quantity, f.unit, f.value(raw), ts))
        return out

    def close(self) -> None:
        self._drop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
