"""Plantower PMS5003 family over a UART (pyserial), active or query ("passive") mode.

Active mode (the sensor's default) streams a frame every 0.2-2.3 s; the driver takes the
next one. Query mode puts the sensor in passive mode once, then sends "read" per poll.
The frame layout follows the profile's ``variant`` (pms5003, pms5003t, pms5003st,
pms3003). A frame whose error byte is set gives its values flagged D.
"""

from __future__ import annotations

from typing import Any

from gateway.drivers.serialport import SerialSensorDriver
from protocols import pms5003

__all__ = ["Pms5003Driver"]


class Pms5003Driver(SerialSensorDriver):
    def make_stream(self) -> Any:
        return pms5003.Pms5003Stream(model=self.profile.variant)

    def setup_commands(self) -> list[bytes]:
        mode = pms5003.cmd_passive() if self.sensor.mode == "query" else pms5003.cmd_active()
        return [pms5003.cmd_wake(), mode]

    def request_command(self) -> bytes:
        return pms5003.cmd_read()

    def is_setup_done(self, frame: dict[str, Any]) -> bool:
        if self.sensor.mode == "query":  # "passive" is acked
            return frame.get("kind") == "ack" and frame.get("command") == "passive"
        return frame.get("kind") == "data"  # "active" is answered with a data frame

    def frame_problem(self, frame: dict[str, Any]) -> str | None:
        error = frame.get("error")
        if isinstance(error, int) and error:
            return f"{self.sensor.name}: the sensor reports error code 0x{error:02X}"
        return None
