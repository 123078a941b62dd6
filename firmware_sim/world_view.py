"""What the devices need to know of the synthetic world, in one place.

The world (``firmware_sim.world``) knows where the stations are and what each sensor shows
at any moment; the devices need the station list (id, kind, position, inlet height, the
site a dust monitor watches) and ``world.sensor_value(station_id, quantity, t)``. This
module reads the former into ``WorldStation`` records (a dust monitor within
``SITE_RADIUS_M`` of a registered construction site watches that site) and builds a world
for a district file, so the rest of the simulator does not depend on the world's internals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from firmware_sim.city_config import KINDS, CityConfig
from protocols.errors import ConfigError, InputError
from protocols.geo import Origin, to_latlon

__all__ = ["SITE_RADIUS_M", "WorldStation", "build_world", "world_stations"]

SITE_RADIUS_M = 150.0  # a dust monitor this close to a construction site watches it


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
        if site is None and kind == "dust":
            site = _watched_site(world, float(_first(s, ("x_m",), 0.0)), float(s.y_m))
        out.append(WorldStation(sid, kind, float(lat), float(lon), height, site and str(site)))
    return out


def _watched_site(world: Any, x: float, y: float) -> str | None:
    """The registered construction site a dust monitor stands at (within ``SITE_RADIUS_M``)."""
    best: tuple[float, str] | None = None
    for site in getattr(world, "sites", ()):
        if getattr(site, "kind", "construction") != "construction":
            continue
        d = math.hypot(site.x_m - x, site.y_m - y)
        if d <= SITE_RADIUS_M and (best is None or d < best[0]):
            best = (d, str(site.id))
    return best[1] if best else None


def build_world(config: CityConfig, start: float) -> Any:
    """The synthetic world for a district file (seed, number of stations, kinds mix),
    starting at ``start`` (epoch seconds)."""
    from firmware_sim.world import World

    try:
        return World.generate(
            config.seed, n_stations=config.stations, kinds=dict(config.kinds), start=int(start)
        )
    except InputError as exc:
        raise ConfigError(f"[city] the world cannot be built: {exc}") from None
