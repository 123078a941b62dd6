"""Register maps of the simulated Modbus device models, written from the vendors' manuals.

Each model is defined here independently of the gateway's device profiles
(``gateway/profiles/*.toml``), from the same manual facts (``reference/protocols.md`` §4);
``tests/test_profiles_match_sim.py`` reads every simulated model with a real client through
the gateway's profile, so a mistake in either shows up as a mismatch.

A ``SimRegister`` is where a device keeps one value: a ``protocols.registers.RegisterSpec``
(address, function 3 holding / 4 input, type, word order, scale) plus the quantity it shows,
the device's measurement range (a value outside it is clamped: the device saturates) and an
optional ``derive`` that computes the register from the quantity (a wind vane's gear from
its degrees). Renke-family transmitters also answer their configuration registers
(07D0H unit id, 07D1H baud rate code), which a technician's tool may read or write.

Models: ``rs-pm-n01`` (PM2.5/PM10/TSP dust transmitter), ``rs-ws-n01`` (T/RH, signed
temperature), ``rs-fs-n01`` (wind speed), ``rs-fx-n01`` (wind direction), ``rs-zs-n01``
(noise), ``louver-box`` (T/RH/noise/PM/pressure/illuminance), ``gas-f32-le`` (NO2/SO2/CO/O3
float32, low word first), ``sensorbee-gas`` (float32, high word first), ``deltaohm-pmsense``
(input registers, PM x10), and ``spray-relay`` (a site's spray system: relay coils).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.registers import RegisterSpec

__all__ = [
    "BAUD_CODES",
    "MODELS",
    "ModbusModel",
    "SimRegister",
    "daylight_lux",
    "model",
    "wind_gear",
]

#: Renke baud-rate codes in register 07D1H
BAUD_CODES = {0: 2400, 1: 4800, 2: 9600, 3: 19200, 4: 38400, 5: 57600, 6: 115200}
CONFIG_UNIT_ID = 0x07D0
CONFIG_BAUD = 0x07D1


@dataclass(frozen=True)
class SimRegister:
    """One value a device keeps in its registers."""

    spec: RegisterSpec
    quantity: str  # the value-source quantity it shows
    low: float  # measurement range: values are clamped into it
    high: float
    derive: Callable[[float], float] | None = None  # register value from the quantity's value

    @property
    def function(self) -> int:
        return self.spec.function

    @property
    def address(self) -> int:
        return self.spec.address

    @property
    def count(self) -> int:
        return self.spec.count


@dataclass(frozen=True)
class ModbusModel:
    """A simulated Modbus device model."""

    name: str
    description: str
    registers: tuple[SimRegister, ...] = ()
    coils: int = 0  # relay outputs (coils 0..n-1, mirrored in holding registers 0..n-1)
    config_registers: bool = False  # answers 07D0H (unit id) and 07D1H (baud code)
    baudrate: int = 9600
    reference: str = ""
    quantities: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        seen: dict[tuple[int, int], str] = {}
        for r in self.registers:
            for a in range(r.address, r.address + r.count):
                key = (r.function, a)
                if key in seen:
                    raise ValueError(f"{self.name}: register {a} of {r.spec.quantity} overlaps")
                seen[key] = r.spec.quantity
        qs = dict.fromkeys(r.quantity for r in self.registers if r.quantity)
        object.__setattr__(self, "quantities", tuple(qs))


def wind_gear(degrees: float) -> float:
    """RS-FX-N01's gear: 0 = N, 1 = NE, ... 7 = NW (the nearest of eight directions)."""
    return float(round((degrees % 360.0) / 45.0) % 8)


def daylight_lux(t: float, *, utc_offset_h: float = 8.0) -> float:
    """A clear-sky illuminance curve (lux) over the local day: 0 at night, ~100 klx at noon."""
    hour = ((t / 3600.0) + utc_offset_h) % 24.0
    if not 6.0 <= hour <= 18.0:
        return 0.0
    return round(100_000.0 * math.pow(math.sin(math.pi * (hour - 6.0) / 12.0), 1.5))


def _reg(
    quantity: str,
    address: int,
    *,
    type: str = "uint16",
    scale: float = 1.0,
    function: int = 3,
    word_order: str = "big",
    unit: str = "",
    low: float = 0.0,
    high: float = 65535.0,
    shows: str | None = None,
    derive: Callable[[float], float] | None = None,
) -> SimRegister:
    spec = RegisterSpec(
        quantity=quantity,
        address=address,
        function=function,
        type=type,  # type: ignore[arg-type]
        word_order=word_order,  # type: ignore[arg-type]
        scale=scale,
        unit=unit,
    )
    return SimRegister(spec, shows or quantity, low, high, derive)


_F32_LE: dict[str, Any] = {"type": "float32", "function": 4, "word_order": "little"}

_MODELS = (
    # Renke-style dust transmitter: the vendor's register table is not confirmed
    # (protocols.md §4, "Generic RS485 PM2.5/PM10 transmitter"); airtrace's assumption is
    # holding 0/1/2 = PM2.5/PM10/TSP as integer ug/m3.
    ModbusModel(
        "rs-pm-n01",
        "RS485 dust transmitter: PM2.5, PM10, TSP (ug/m3)",
        (
            _reg("pm25", 0, unit="ug/m3", high=9999),
            _reg("pm10", 1, unit="ug/m3", high=9999),
            _reg("tsp", 2, unit="ug/m3", high=19999),
        ),
        config_registers=True,
        baudrate=4800,
        reference="protocols.md §4 (defaults 4800 8N1, FC 03; register order assumed)",
    ),
    # Renke RS-WS-N01: 0000H humidity x10 (uint16), 0001H temperature x10 (int16).
    # Vector M2: 02 92 FF 9B -> 65.8 %RH, -10.1 degC.
    ModbusModel(
        "rs-ws-n01",
        "RS485 temperature and humidity transmitter",
        (
            _reg("rh", 0, scale=0.1, unit="%RH", high=100.0),
            _reg("temp", 1, type="int16", scale=0.1, unit="Cel", low=-40.0, high=80.0),
        ),
        config_registers=True,
        baudrate=4800,
        reference="protocols.md §4, vectors M1/M2",
    ),
    # Wind speed transmitter: 0000H speed x10 (m/s).
    ModbusModel(
        "rs-fs-n01",
        "RS485 cup anemometer",
        (_reg("wind_speed", 0, scale=0.1, unit="m/s", high=70.0),),
        config_registers=True,
        baudrate=4800,
        reference="protocols.md §4 (CoreIoT xsns_125_ws.ino)",
    ),
    # Renke RS-FX-N01: 0000H gear 0-7, 0001H degrees 0-360.
    ModbusModel(
        "rs-fx-n01",
        "RS485 wind vane",
        (
            _reg("wind_gear", 0, high=7, shows="wind_dir", derive=wind_gear),
            _reg("wind_dir", 1, unit="deg", high=359.0, derive=lambda d: round(d) % 360),
        ),
        config_registers=True,
        baudrate=4800,
        reference="protocols.md §4 (RS-FX-N01 manual §4.3)",
    ),
    # Renke RS-ZS-N01 noise meter: 0000H sound level x10 (dB), as the louver box stores it.
    ModbusModel(
        "rs-zs-n01",
        "RS485 noise meter",
        (_reg("noise", 0, scale=0.1, unit="dB", low=30.0, high=130.0),),
        config_registers=True,
        baudrate=4800,
        reference="Renke transmitter family layout (value x10 at holding 0)",
    ),
    # Louver box: 01F4H RH x10, 01F5H T x10 (int16), 01F6H noise x10, 01F7H PM2.5, 01F8H
    # PM10, 01F9H pressure kPa x10 (numerically hPa), 01FAH-01FBH illuminance (32 bit, lux).
    ModbusModel(
        "louver-box",
        "Integrated louver-box multi-sensor",
        (
            _reg("rh", 0x01F4, scale=0.1, unit="%RH", high=100.0),
            _reg("temp", 0x01F5, type="int16", scale=0.1, unit="Cel", low=-40.0, high=80.0),
            _reg("noise", 0x01F6, scale=0.1, unit="dB", low=30.0, high=130.0),
            _reg("pm25", 0x01F7, unit="ug/m3", high=9999),
            _reg("pm10", 0x01F8, unit="ug/m3", high=9999),
            # kPa x 10: 101.32 kPa -> 1013; the pressure quantity is hPa, so the register
            # holds hPa rounded to 1.
            _reg("pressure", 0x01F9, unit="hPa", low=300.0, high=1100.0),
            _reg("illuminance", 0x01FA, type="uint32", unit="lx", high=200_000),
        ),
        config_registers=True,
        baudrate=4800,
        reference="protocols.md §4 (CoreIoT xsns_123_es_intergrate.ino)",
    ),
    # Gas module, float32 input registers, low word first ("Modicon" order).
    ModbusModel(
        "gas-f32-le",
        "NO2/SO2/CO/O3 gas module, float32 input registers, low word first",
        (
            _reg("no2", 0, **_F32_LE, unit="ug/m3", high=5000),
            _reg("so2", 2, **_F32_LE, unit="ug/m3", high=10000),
            _reg("co", 4, **_F32_LE, unit="mg/m3", high=200),
            _reg("o3", 6, **_F32_LE, unit="ug/m3", high=2000),
        ),
        baudrate=9600,
        reference="protocols.md §4 (float word order varies; Vaisala: low word first)",
    ),
    # Sensorbee base unit: float32 input registers 00A0H CO2, 00C0H NO2, 00E0H CO, 0100H O3;
    # each +2 holds the 1 h average (8 h for CO) - simulated as the current value.
    ModbusModel(
        "sensorbee-gas",
        "Sensorbee base unit gas registers (float32, high word first)",
        tuple(
            r
            for q, a, unit, hi in (
                ("co2", 0xA0, "ppm", 10000),
                ("no2", 0xC0, "ug/m3", 5000),
                ("co", 0xE0, "mg/m3", 200),
                ("o3", 0x100, "ug/m3", 2000),
            )
            for r in (
                _reg(q, a, type="float32", function=4, unit=unit, high=hi),
                _reg(f"{q}_avg", a + 2, type="float32", function=4, unit=unit, high=hi, shows=q),
            )
        ),
        baudrate=9600,
        reference="protocols.md §4 (docs.sensorbee.com; word order assumed big)",
    ),
    # Delta OHM PMsense: input 0-2 PM1/2.5/10 particles per ml, 3-5 PM1/2.5/10 ug/m3 x10.
    ModbusModel(
        "deltaohm-pmsense",
        "Delta OHM PMsense particulate sensor",
        (
            _reg("n_pm1", 0, function=4, shows="pm1", derive=lambda v: v * 2.0),
            _reg("n_pm25", 1, function=4, shows="pm25", derive=lambda v: v * 0.6),
            _reg("n_pm10", 2, function=4, shows="pm10", derive=lambda v: v * 0.05),
            _reg("pm1", 3, function=4, scale=0.1, unit="ug/m3", high=1000),
            _reg("pm25", 4, function=4, scale=0.1, unit="ug/m3", high=1000),
            _reg("pm10", 5, function=4, scale=0.1, unit="ug/m3", high=1000),
        ),
        baudrate=19200,
        reference="protocols.md §4 (Delta OHM PM[B]sense manual p. 15)",
    ),
    # A site's spray system behind a Modbus relay module: coils 0..3 switch the channels
    # (0 = spray pump, 1 = fog cannon, 2-3 spare); holding registers 0..3 mirror them.
    ModbusModel(
        "spray-relay",
        "Site spray system: 4 relay channels (coils 0-3, mirrored in holding 0-3)",
        coils=4,
        baudrate=9600,
        reference="generic 4-channel Modbus RTU relay module",
    ),
)

MODELS: dict[str, ModbusModel] = {m.name: m for m in _MODELS}


def model(name: str) -> ModbusModel:
    """The simulated model called ``name``; ``KeyError`` lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"no simulated Modbus model {name!r}; known: {', '.join(MODELS)}") from None
