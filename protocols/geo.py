"""The domain's local metric frame: lat/lon <-> metres east (x) and north (y) of an origin.

A local tangent plane with the equirectangular approximation on a sphere of the mean Earth
radius (IUGG R1 = 6 371 008.8 m): x = R cos(lat0) (lon - lon0), y = R (lat - lat0), angles in
radians. Over a 10 km x 10 km city district it differs from an exact east-north-up frame by
well under a metre, far below the 100 m cells the inversion resolves. Every package that
places things in the domain (registry, inversion, synthetic world, map) uses this one frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocols.errors import InputError

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Origin:
    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-89.0 <= self.lat <= 89.0) or not (-180.0 <= self.lon <= 180.0):
            raise InputError(f"origin ({self.lat}, {self.lon}) is not a usable lat/lon")


def to_local(lat: float, lon: float, origin: Origin) -> tuple[float, float]:
    """(lat, lon) in degrees -> (x_m east, y_m north) of ``origin``."""
    x = EARTH_RADIUS_M * math.cos(math.radians(origin.lat)) * math.radians(lon - origin.lon)
    y = EARTH_RADIUS_M * math.radians(lat - origin.lat)
    return x, y


def to_latlon(x_m: float, y_m: float, origin: Origin) -> tuple[float, float]:
    """(x_m east, y_m north) of ``origin`` -> (lat, lon) in degrees."""
    lat = origin.lat + math.degrees(y_m / EARTH_RADIUS_M)
    lon = origin.lon + math.degrees(x_m / (EARTH_RADIUS_M * math.cos(math.radians(origin.lat))))
    return lat, lon
