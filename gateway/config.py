"""The station config file (DESIGN 4.6), parsed into frozen dataclasses and checked at load.

Every key is typed and bounded; unknown keys are rejected with the file, the section and
the key; the error is one line a field technician can act on. Device profiles are named
by each ``[[sensor]]`` and resolved by ``gateway.profiles`` at load, so a wrong profile
name fails here too, not at the first poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.profiles import load_profile, transports_for
from protocols.errors import ConfigError
from protocols.telemetry import check_station
from protocols.tomlconf import Table, parse_toml

STATION_KINDS = ("reference", "micro", "dust", "met")
TRANSPORTS = ("modbus-tcp", "modbus-rtu", "serial", "hj212-tcp")
PARITIES = ("N", "E", "O")


@dataclass(frozen=True)
class StationInfo:
    id: str
    kind: str
    lat: float
    lon: float
    inlet_height_m: float
    name: str | None = None
    site: str | None = None  # the registered site this station watches, if any


@dataclass(frozen=True)
class SensorConfig:
    """One device on one transport, polled by its own coordinator."""

    name: str
    profile: str  # built-in profile name or a path (resolved relative to the config file)
    transport: str
    address: str  # host:port (TCP), device path (RTU, serial), listen host:port (hj212-tcp)
    unit_id: int = 1
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    interval_s: float = 10.0
    timeout_s: float = 1.0
    retries: int = 1
    mode: str = "active"  # serial particle sensors: active (streaming) or query
    warmup_s: float = 0.0  # readings in the first seconds after (re)start are flagged
    enabled: bool = True
    hj212_password: str | None = None  # hj212-tcp: the PW the monitor must send
    hj212_mn: str | None = None  # hj212-tcp: the MN of the monitor

    @property
    def bus(self) -> str:
        """Sensors on the same bus share one polling loop (an RTU line is half duplex)."""
        return f"{self.transport}:{self.address}"


@dataclass(frozen=True)
class UplinkConfig:
    mqtt: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None
    tls_insecure: bool = False  # skip host-name checking: only for a lab broker
    client_id: str | None = None  # default: "gw-{station id}"
    keepalive_s: int = 30
    batch_max: int = 500  # readings per SenML pack
    batch_wait_s: float = 1.0  # publish a partial batch after this long
    max_inflight: int = 20  # packs published but not yet PUBACKed
    resend_after_s: float = 60.0  # resend what the watermark has not covered after this stall
    backoff_min_s: float = 1.0
    backoff_max_s: float = 120.0

    @property
    def tls(self) -> bool:
        return urlsplit(self.mqtt).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.mqtt).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.mqtt)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    def secret(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read password_file {self.password_file}: {exc}"
                ) from None
        return None


@dataclass(frozen=True)
class OutboxConfig:
    path: Path = Path("/var/lib/airtrace/outbox.db")
    max_mb: float = 512.0  # beyond this, the oldest raw detail is thinned first
    synchronous: str = "normal"  # normal | full (fsync every commit: slower, power-cut proof)


@dataclass(frozen=True)
class QcLimits:
    """QC thresholds for one quantity; unset values fall back to protocols.quantities."""

    min: float | None = None
    max: float | None = None
    spike_per_min: float | None = None  # largest plausible change per minute
    flat_s: float | None = None  # identical values for this long are flagged stuck
    rh_max: float | None = None  # optical PM is flagged when RH exceeds this


@dataclass(frozen=True)
class ActuatorConfig:
    """A switchable output, e.g. a site's spray system or fog cannon on a Modbus coil."""

    name: str
    transport: str
    address: str
    unit_id: int = 1
    coil: int | None = None
    register: int | None = None
    on_value: int = 1
    off_value: int = 0
    max_on_s: float = 1800.0  # local safety timeout: switched off after this, whatever happens


@dataclass(frozen=True)
class RuleConfig:
    """A local rule that protects the site when the uplink is down: e.g. PM10 above 150
    ug/m3 for 5 minutes switches the spray on for 10 minutes."""

    name: str
    quantity: str
    above: float
    for_s: float
    actuator: str
    hold_s: float
    sensor: str | None = None


@dataclass(frozen=True)
class StationConfig:
    path: Path
    station: StationInfo
    sensors: tuple[SensorConfig, ...]
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    qc: dict[str, QcLimits] = field(default_factory=dict)
    actuators: tuple[ActuatorConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    metrics_listen: str | None = None  # host:port of the Prometheus /metrics endpoint
    allowed_commands: tuple[str, ...] = (
        "set_calibration",
        "set_interval",
        "actuate",
        "alert",
        "ping",
        "set_config",
    )

    def sensor(self, name: str) -> SensorConfig:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(name)

    def actuator(self, name: str) -> ActuatorConfig:
        for a in self.actuators:
            if a.name == name:
                return a
        raise KeyError(name)


# --------------------------------------------------------------------------- loading


def load(path: str | Path) -> StationConfig:
    """Read and check a station config file; ``ConfigError`` (exit 2) on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return loads(text, source=str(path), path=path)


def loads(text: str, *, source: str = "station.toml", path: Path | None = None) -> StationConfig:
    root = Table(parse_toml(text, source), source=source)
    base = (path or Path(source)).resolve().parent
    station = _station(root.table("station", required=True))
    sensors = tuple(_sensor(t, base) for t in root.tables("sensor"))
    names = [s.name for s in sensors]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{source} [sensor]: name {name!r} is used twice")
    uplink = _uplink(root.table("uplink"), base)
    outbox = _outbox(root.table("outbox"), base)
    qc = _qc(root.table("qc"))
    actuators = tuple(_actuator(t) for t in root.tables("actuator"))
    rules = tuple(_rule(t, {a.name for a in actuators}, set(names)) for t in root.tables("rule"))
    metrics = root.table("metrics")
    metrics_listen = metrics.text("listen", None, pattern=r"^[^:]*:\d+$")
    metrics.done()
    commands = root.table("commands")
    allowed = tuple(commands.array("allow", str, list(StationConfig.allowed_commands)))
    commands.done()
    root.done()
    return StationConfig(
        path=(path or Path(source)).resolve(),
        station=station,
        sensors=sensors,
        uplink=uplink,
        outbox=outbox,
        qc=qc,
        actuators=actuators,
        rules=rules,
        metrics_listen=metrics_listen,
        allowed_commands=allowed,
    )


def _station(t: Table) -> StationInfo:
    sid = t.text("id")
    try:
        check_station(sid)
    except ValueError as exc:
        raise t.error("id", str(exc)) from None
    info = StationInfo(
        id=sid,
        kind=t.text("kind", choices=STATION_KINDS),
        lat=t.number("lat", min=-90.0, max=90.0),
        lon=t.number("lon", min=-180.0, max=180.0),
        inlet_height_m=t.number("inlet_height_m", min=0.0, max=500.0),
        name=t.text("name", None),
        site=t.text("site", None),
    )
    t.done()
    return info


def _sensor(t: Table, base: Path) -> SensorConfig:
    name = t.text("name", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    profile = t.text("profile")
    if "/" in profile or profile.endswith(".toml"):
        profile = str((base / profile).resolve())
    transport = t.text("transport", choices=TRANSPORTS)
    address = t.text("address")
    if transport in ("modbus-tcp", "hj212-tcp") and not _host_port(address):
        raise t.error("address", f"must be host:port for {transport}, got {address!r}")
    if transport in ("modbus-rtu", "serial") and not address.startswith(("/", "COM", "loop://")):
        raise t.error("address", f"must be a serial device path for {transport}, got {address!r}")
    try:
        model = load_profile(profile)
    except ConfigError as exc:
        raise t.error("profile", str(exc)) from None
    if transport not in transports_for(model.protocol):
        raise t.error(
            "transport",
            f"profile {model.name!r} speaks {model.protocol}, which needs transport "
            f"{' or '.join(transports_for(model.protocol))}; got {transport!r}",
        )
    s = SensorConfig(
        name=name,
        profile=profile,
        transport=transport,
        address=address,
        unit_id=t.integer("unit_id", 1, min=0, max=247),
        baudrate=t.integer("baudrate", 9600, min=300, max=921_600),
        parity=t.text("parity", "N", choices=PARITIES),
        stopbits=t.integer("stopbits", 1, min=1, max=2),
        bytesize=t.integer("bytesize", 8, min=5, max=8),
        interval_s=t.number("interval_s", 10.0, min=0.05, max=86_400.0),
        timeout_s=t.number("timeout_s", 1.0, min=0.01, max=60.0),
        retries=t.integer("retries", 1, min=0, max=10),
        mode=t.text("mode", "active", choices=("active", "query")),
        warmup_s=t.number("warmup_s", 0.0, min=0.0, max=3600.0),
        enabled=t.flag("enabled", True),
        hj212_password=t.text("hj212_password", None),
        hj212_mn=t.text("hj212_mn", None),
    )
    t.done()
    return s


def _host_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _path(t: Table, key: str, base: Path, default: Any = None) -> Path | None:
    value = t.text(key, default)
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _uplink(t: Table, base: Path) -> UplinkConfig:
    d = UplinkConfig()
    url = t.text("mqtt", d.mqtt)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise t.error("mqtt", f"must be mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    try:
        _ = parts.port
    except ValueError:
        raise t.error("mqtt", f"bad port in {url!r}") from None
    u = UplinkConfig(
        mqtt=url,
        username=t.text("username", parts.username),
        password=t.text("password", parts.password),
        password_file=_path(t, "password_file", base),
        ca_file=_path(t, "ca_file", base),
        cert_file=_path(t, "cert_file", base),
        key_file=_path(t, "key_file", base),
        tls_insecure=t.flag("tls_insecure", False),
        client_id=t.text("client_id", None),
        keepalive_s=t.integer("keepalive_s", d.keepalive_s, min=5, max=3600),
        batch_max=t.integer("batch_max", d.batch_max, min=1, max=20_000),
        batch_wait_s=t.number("batch_wait_s", d.batch_wait_s, min=0.0, max=600.0),
        max_inflight=t.integer("max_inflight", d.max_inflight, min=1, max=1000),
        resend_after_s=t.number("resend_after_s", d.resend_after_s, min=1.0, max=86_400.0),
        backoff_min_s=t.number("backoff_min_s", d.backoff_min_s, min=0.01, max=600.0),
        backoff_max_s=t.number("backoff_max_s", d.backoff_max_s, min=0.1, max=3600.0),
    )
    if (u.cert_file is None) != (u.key_file is None):
        raise t.error("cert_file", "cert_file and key_file go together")
    if u.password is not None and u.password_file is not None:
        raise t.error("password", "give password or password_file, not both")
    t.done()
    return u


def _outbox(t: Table, base: Path) -> OutboxConfig:
    o = OutboxConfig(
        path=_path(t, "path", base, str(OutboxConfig.path)) or OutboxConfig.path,
        max_mb=t.number("max_mb", OutboxConfig.max_mb, min=1.0),
        synchronous=t.text("synchronous", "normal", choices=("normal", "full")),
    )
    t.done()
    return o


def _qc(t: Table) -> dict[str, QcLimits]:
    out: dict[str, QcLimits] = {}
    for quantity in t:
        q = t.table(quantity)
        out[quantity] = QcLimits(
            min=q.number("min", None),
            max=q.number("max", None),
            spike_per_min=q.number("spike_per_min", None, min=0.0),
            flat_s=q.number("flat_s", None, min=0.0),
            rh_max=q.number("rh_max", None, min=0.0, max=100.0),
        )
        lim = out[quantity]
        if lim.min is not None and lim.max is not None and lim.min >= lim.max:
            raise q.error("max", f"must be above min ({lim.min:g})")
        q.done()
    t.done()
    return out


def _actuator(t: Table) -> ActuatorConfig:
    a = ActuatorConfig(
        name=t.text("name", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"),
        transport=t.text("transport", choices=("modbus-tcp", "modbus-rtu")),
        address=t.text("address"),
        unit_id=t.integer("unit_id", 1, min=0, max=247),
        coil=t.integer("coil", None, min=0, max=65535),
        register=t.integer("register", None, min=0, max=65535),
        on_value=t.integer("on_value", 1, min=0, max=65535),
        off_value=t.integer("off_value", 0, min=0, max=65535),
        max_on_s=t.number("max_on_s", 1800.0, min=1.0, max=86_400.0),
    )
    if (a.coil is None) == (a.register is None):
        raise t.error("coil", "give exactly one of coil or register")
    t.done()
    return a


def _rule(t: Table, actuators: set[str], sensors: set[str]) -> RuleConfig:
    r = RuleConfig(
        name=t.text("name"),
        quantity=t.text("quantity"),
        above=t.number("above"),
        for_s=t.number("for_s", 0.0, min=0.0),
        actuator=t.text("actuator"),
        hold_s=t.number("hold_s", 600.0, min=1.0),
        sensor=t.text("sensor", None),
    )
    if r.actuator not in actuators:
        raise t.error("actuator", f"no [[actuator]] named {r.actuator!r}")
    if r.sensor is not None and r.sensor not in sensors:
        raise t.error("sensor", f"no [[sensor]] named {r.sensor!r}")
    t.done()
    return r
