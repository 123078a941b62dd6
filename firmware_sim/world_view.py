"""What the devices need to know of the synthetic world, in one place.

The world (``firmware_sim.world``) knows where the stations are and what each sensor shows
at any moment; the devices need the station list (id, kind, position, inlet height, the
site a dust monitor watches) and ``world.sensor_value(station_id, quantity, t)``. This
module reads the former into ``WorldStation`` records and builds a world for a district
file, so the rest of the simulator does not depend on the world's internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from firmware_sim.city_config import KINDS, CityConfig
from protocols.errors import ConfigError
from protocols.geo import Origin, to_latlon

__all__ = ["WorldStation", "build_world", "world_stations"]


@dataclass(frozen=True)
class WorldStation:
    id: str
    kind: str
    lat: float
    lon: float
    inlet_height_m: float
    site: str | None = None


def _first(obj: Any, names: Iterable[str], default: Any = None) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


def world_stations(world: Any) -> list[WorldStation]:
    """The world's stations, in the world's order."""
    origin = _first(world, ("origin",))
    out = []
    for s in world.stations:
        sid = str(_first(s, ("id", "station_id", "name")))
        kind = str(_first(s, ("kind",), "micro"))
        if kind not in KINDS:
            raise ValueError(f"world station {sid}: unknown kind {kind!r}")
        lat, lon = _first(s, ("lat",)), _first(s, ("lon",))
        if lat is None or lon is None:
            if origin is None:
                raise ValueError(f"world station {sid}: no lat/lon and the world has no origin")
            if not isinstance(origin, Origin):
                origin = Origin(float(origin[0]), float(origin[1]))
            lat, lon = to_latlon(float(s.x_m), float(s.y_m), origin)
        height = float(_first(s, ("inlet_height_m", "z_m", "height_m"), 3.0))
        site = _first(s, ("site", "site_id"))
        out.append(WorldStation(sid, kind, float(lat), float(lon), height, site and str(site)))
    return out


def build_world(config: CityConfig) -> Any:
    """The synthetic world for a district file (seed, number of stations, kinds mix)."""
    try:
        from firmware_sim import world as world_module  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(
            "the synthetic world (firmware_sim.world) is not available in this build"
        ) from None
    world_cls = world_module.World
    return world_cls(seed=config.seed, stations=config.stations, kinds=config.kinds)
