"""Gateway station configs (DESIGN 4.6) for simulated stations, written as TOML.

``airtrace sim city`` writes one file per station, so a gateway can be started on each
(``airtrace gateway run --config OUT/STATION.toml``): ``[station]`` from the world,
``[uplink]`` and ``[outbox]`` from the district file, one ``[[sensor]]`` per simulated
device (the address it listens on) and an ``[[actuator]]`` for a site's spray relay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ActuatorEntry", "SensorEntry", "StationEntry", "render", "write"]


@dataclass(frozen=True)
class SensorEntry:
    """One ``[[sensor]]``."""

    name: str
    profile: str
    transport: str  # modbus-tcp | modbus-rtu | serial | hj212-tcp
    address: str
    unit_id: int | None = None
    baudrate: int | None = None
    interval_s: float | None = None
    mode: str | None = None  # serial: active | query
    hj212_mn: str | None = None
    hj212_password: str | None = None


@dataclass(frozen=True)
class ActuatorEntry:
    """One ``[[actuator]]`` (a coil)."""

    name: str
    transport: str
    address: str
    unit_id: int
    coil: int
    max_on_s: float = 1800.0


@dataclass(frozen=True)
class StationEntry:
    """Everything one station config says."""

    id: str
    kind: str
    lat: float
    lon: float
    inlet_height_m: float
    mqtt: str
    outbox: Path
    name: str | None = None
    site: str | None = None
    sensors: tuple[SensorEntry, ...] = ()
    actuators: tuple[ActuatorEntry, ...] = field(default_factory=tuple)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string


def _table(lines: list[str], header: str, items: dict[str, object]) -> None:
    lines.append("")
    lines.append(header)
    for key, value in items.items():
        if value is not None:
            lines.append(f"{key} = {_value(value)}")


def render(entry: StationEntry, *, comment: str = "") -> str:
    """The TOML text of a station config."""
    lines = [f"# {line}" for line in comment.splitlines()]
    _table(
        lines,
        "[station]",
        {
            "id": entry.id,
            "kind": entry.kind,
            "name": entry.name,
            "lat": round(entry.lat, 7),
            "lon": round(entry.lon, 7),
            "inlet_height_m": entry.inlet_height_m,
            "site": entry.site,
        },
    )
    _table(lines, "[uplink]", {"mqtt": entry.mqtt})
    _table(lines, "[outbox]", {"path": str(entry.outbox)})
    for s in entry.sensors:
        _table(
            lines,
            "[[sensor]]",
            {
                "name": s.name,
                "profile": s.profile,
                "transport": s.transport,
                "address": s.address,
                "unit_id": s.unit_id,
                "baudrate": s.baudrate,
                "interval_s": s.interval_s,
                "mode": s.mode,
                "hj212_mn": s.hj212_mn,
                "hj212_password": s.hj212_password,
            },
        )
    for a in entry.actuators:
        _table(
            lines,
            "[[actuator]]",
            {
                "name": a.name,
                "transport": a.transport,
                "address": a.address,
                "unit_id": a.unit_id,
                "coil": a.coil,
                "max_on_s": a.max_on_s,
            },
        )
    return "\n".join(lines).lstrip("\n") + "\n"


def write(entry: StationEntry, folder: Path, *, comment: str = "") -> Path:
    """Write ``folder/ID.toml``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry.id}.toml"
    path.write_text(render(entry, comment=comment), encoding="utf-8")
    return path
