"""Nova Fitness SDS011 (SDS018/021, SDS198) over a UART (pyserial), active or query mode.

At open the driver wakes the sensor and sets its reporting mode (active: a frame every
second, the factory default; query: one frame per "query data" command). Replies to
commands (``AA C5``) are skipped; only measurement frames count.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.drivers.serialport import SerialSensorDriver
from protocols import sds011

__all__ = ["Sds011Driver"]


class Sds011Driver(SerialSensorDriver):
    def make_stream(self) -> Any:
        return sds011.Sds011Stream()

    def setup_commands(self) -> list[bytes]:
        mode: Literal["active", "query"] = "query" if self.sensor.mode == "query" else "active"
        return [sds011.cmd_work(), sds011.cmd_set_reporting_mode(mode)]

    def request_command(self) -> bytes:
        return sds011.cmd_query_data()

    def is_setup_done(self, frame: dict[str, Any]) -> bool:
        return frame.get("reply") == "reporting_mode" and frame.get("mode") == (
            "query" if self.sensor.mode == "query" else "active"
        )
