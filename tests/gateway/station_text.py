"""Station configs for the gateway's tests, written as a technician would write them."""

from __future__ import annotations

from typing import Any

from gateway import config

HEADER = """
[station]
id = "GX-T-001"
kind = "micro"
lat = 34.8
lon = 113.5
inlet_height_m = 3.0
"""


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def station_toml(sensors: list[dict[str, Any]], extra: str = "") -> str:
    parts = [HEADER]
    for s in sensors:
        parts.append("[[sensor]]")
        parts += [f"{k} = {_value(v)}" for k, v in s.items()]
        parts.append("")
    return "\n".join(parts) + extra


def station(sensors: list[dict[str, Any]], extra: str = "") -> config.StationConfig:
    return config.loads(station_toml(sensors, extra))
