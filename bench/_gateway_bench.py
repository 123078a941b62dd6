"""Helpers of the gateway benchmarks: a station config and the JSON print (the machine
record and the Mosquitto come from ``bench._common``). Not a test fixture: the benchmarks
start what they measure themselves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import Mosquitto, free_port, machine  # noqa: E402  (one of each, shared)

__all__ = ["ROOT", "Mosquitto", "emit", "free_port", "machine", "station_toml"]


def station_toml(
    workdir: Path, mqtt: str, *, sensors: str = "", uplink: str = "", outbox: str = ""
) -> Path:
    if not sensors:
        sensors = """
[[sensor]]
name = "pm"
profile = "rs-pm-n01"
transport = "modbus-tcp"
address = "127.0.0.1:1"
"""
    path = workdir / "station.toml"
    path.write_text(f"""
[station]
id = "BENCH-001"
kind = "micro"
lat = 34.8
lon = 113.5
inlet_height_m = 3.0

[uplink]
mqtt = "{mqtt}"
{uplink}

[outbox]
path = "{workdir / "outbox.db"}"
{outbox}
{sensors}
""")
    return path


def emit(result: dict[str, Any]) -> None:
    import json

    result["machine"] = machine()
    print(json.dumps(result, indent=2))
