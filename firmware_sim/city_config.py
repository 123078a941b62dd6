"""The district file of ``airtrace sim city``: what to simulate and how gateways reach it.

::

    [city]
    seed = 7                     # the world's seed: same seed, same district
    stations = 40                # 20-100 is the intended size
    start = "2026-06-01T00:00:00Z"   # simulated start (default: now)
    rate = 60.0                  # simulated seconds per real second
    transports = ["modbus-tcp", "modbus-rtu", "serial", "hj212"]
    rtu_every = 5                # every 5th station's Modbus bus is an RTU line on a pty
    serial_every = 5             # every 5th micro station also has a PMS5003 or SDS011
    max_pty = 16                 # at most this many pty pairs (RTU lines + serial sensors)
    out = "city"                 # where the station configs go
    host = "127.0.0.1"           # where TCP devices listen
    hj212_rtd_s = 30.0           # a dust monitor's real-time (2011) interval, simulated s
    hj212_minute_min = 1         # its minute-data (2051) interval, minutes

    [city.kinds]                 # the mix of station kinds (weights)
    reference = 2
    micro = 24
    dust = 10
    met = 4

    [gateway]                    # copied into every station config
    mqtt = "mqtt://127.0.0.1:1883"
    outbox_dir = "outbox"        # each station's outbox: outbox_dir/STATION.db (relative: to out)
    interval_s = 10.0            # polling interval of every sensor
    hj212 = "gateway"            # dust monitors report to their station's gateway, or "host:port"

Unknown keys are rejected with the file and the key (``ConfigError``, exit 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from protocols.errors import ConfigError
from protocols.tomlconf import Table, parse_toml

__all__ = ["KINDS", "TRANSPORTS", "CityConfig", "load_config", "loads_config"]

KINDS = ("reference", "micro", "dust", "met")
TRANSPORTS = ("modbus-tcp", "modbus-rtu", "serial", "hj212")
DEFAULT_KINDS = {"reference": 2.0, "micro": 24.0, "dust": 10.0, "met": 4.0}


@dataclass(frozen=True)
class CityConfig:
    """A simulated district: the world's size and seed, time, transports, gateway options."""

    seed: int = 1
    stations: int = 40
    kinds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    start: float | None = None  # epoch seconds; None = now
    rate: float = 60.0
    transports: tuple[str, ...] = ("modbus-tcp", "hj212")
    rtu_every: int = 5
    serial_every: int = 5
    max_pty: int = 16
    out: Path = Path("city")
    host: str = "127.0.0.1"
    mqtt: str = "mqtt://127.0.0.1:1883"
    outbox_dir: Path = Path("outbox")
    interval_s: float = 10.0
    hj212: str = "gateway"
    pty_backend: str = "auto"
    hj212_rtd_s: float = 30.0
    hj212_minute_min: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.stations <= 1000:
            raise ConfigError(f"[city] stations = {self.stations}: must be 1..1000")
        if not self.rate > 0:
            raise ConfigError(f"[city] rate = {self.rate}: must be > 0")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"[city.kinds] unknown kind {bad[0]!r}; one of {', '.join(KINDS)}")
        if not any(w > 0 for w in self.kinds.values()) or any(w < 0 for w in self.kinds.values()):
            raise ConfigError("[city.kinds] weights must be >= 0 and not all 0")
        bad = [t for t in self.transports if t not in TRANSPORTS]
        if bad:
            raise ConfigError(
                f"[city] transports: unknown {bad[0]!r}; one of {', '.join(TRANSPORTS)}"
            )
        if not {"modbus-tcp", "modbus-rtu"} & set(self.transports):
            raise ConfigError("[city] transports: needs modbus-tcp or modbus-rtu")
        if self.hj212 != "gateway":
            host, sep, port = self.hj212.rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ConfigError(f'[gateway] hj212 = {self.hj212!r}: "gateway" or host:port')

    def with_out(self, out: Path) -> CityConfig:
        return dataclasses.replace(self, out=out)

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir if self.outbox_dir.is_absolute() else self.out / self.outbox_dir


def load_config(path: Path) -> CityConfig:
    """Read a district file; ``ConfigError`` names the file and the key on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such city file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return loads_config(text, source=str(path), base=Path(path).resolve().parent)


def loads_config(text: str, *, source: str = "city.toml", base: Path | None = None) -> CityConfig:
    root = Table(parse_toml(text, source), source=source)
    c = root.table("city")
    d = CityConfig()
    kinds_table = c.table("kinds")
    kinds = {k: kinds_table.number(k, min=0.0) for k in kinds_table} or dict(DEFAULT_KINDS)
    kinds_table.done()
    start_text = c.text("start", None)
    start = None
    if start_text is not None:
        try:
            start = datetime.fromisoformat(start_text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise c.error("start", f"{start_text!r} is not an ISO 8601 time") from None
    out = Path(c.text("out", str(d.out)))
    if base is not None and not out.is_absolute():
        out = base / out
    values = {
        "seed": c.integer("seed", d.seed),
        "stations": c.integer("stations", d.stations, min=1, max=1000),
        "kinds": kinds,
        "start": start,
        "rate": c.number("rate", d.rate, positive=True),
        "transports": tuple(c.array("transports", str, list(d.transports))),
        "rtu_every": c.integer("rtu_every", d.rtu_every, min=1),
        "serial_every": c.integer("serial_every", d.serial_every, min=1),
        "max_pty": c.integer("max_pty", d.max_pty, min=0, max=500),
        "out": out,
        "host": c.text("host", d.host),
        "pty_backend": c.text("pty_backend", d.pty_backend, choices=("auto", "socat", "python")),
        "hj212_rtd_s": c.number("hj212_rtd_s", d.hj212_rtd_s, min=1.0, max=86_400.0),
        "hj212_minute_min": c.integer("hj212_minute_min", d.hj212_minute_min, min=1, max=60),
    }
    c.done()
    g = root.table("gateway")
    values |= {
        "mqtt": g.text("mqtt", d.mqtt, pattern=r"^mqtts?://[^/]+"),
        "outbox_dir": Path(g.text("outbox_dir", str(d.outbox_dir))),
        "interval_s": g.number("interval_s", d.interval_s, min=0.05, max=86_400.0),
        "hj212": g.text("hj212", d.hj212),
    }
    g.done()
    root.done()
    try:
        return CityConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source} {exc}", source=source) from None
