"""The quantities airtrace measures: canonical names, default units, physical bounds.

One vocabulary for every layer: device profiles name their registers with these, SenML
records carry them in ``n``, HJ 212 factor codes map onto them, the store keys on them.
Units are SenML-style strings (``ug/m3`` is an RFC 8798 secondary unit).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str
    description: str
    low: float  # physically possible range; QC flags what falls outside
    high: float
    particulate: bool = False  # optical PM sensors need the humidity correction


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("pm1", "ug/m3", "PM1.0 mass concentration", 0, 5000, particulate=True),
        Quantity("pm25", "ug/m3", "PM2.5 mass concentration", 0, 5000, particulate=True),
        Quantity("pm10", "ug/m3", "PM10 mass concentration", 0, 10000, particulate=True),
        Quantity("tsp", "ug/m3", "total suspended particulates", 0, 20000, particulate=True),
        Quantity("no2", "ug/m3", "nitrogen dioxide", 0, 5000),
        Quantity("no", "ug/m3", "nitric oxide", 0, 5000),
        Quantity("nox", "ug/m3", "nitrogen oxides", 0, 10000),
        Quantity("so2", "ug/m3", "sulphur dioxide", 0, 10000),
        Quantity("co", "mg/m3", "carbon monoxide", 0, 200),
        Quantity("o3", "ug/m3", "ozone", 0, 2000),
        Quantity("voc", "ug/m3", "total volatile organic compounds", 0, 100000),
        Quantity("co2", "ppm", "carbon dioxide", 0, 10000),
        Quantity("temp", "Cel", "air temperature", -60, 70),
        Quantity("rh", "%RH", "relative humidity", 0, 100),
        Quantity("pressure", "hPa", "air pressure", 500, 1100),
        Quantity("wind_speed", "m/s", "wind speed", 0, 75),
        Quantity("wind_dir", "deg", "wind direction (from), clockwise from north", 0, 360),
        Quantity("noise", "dB", "A-weighted sound level", 20, 140),
        Quantity("dustfall", "t/km2/30d", "dust fall", 0, 1000),
    )
}


def is_known(name: str) -> bool:
    return name in QUANTITIES
