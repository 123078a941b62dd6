"""The central service's config file (DESIGN 4.5): TOML -> frozen, validated dataclasses.

Only ``[store] url`` is always required; ``[mqtt] url`` is required while ingest is on (the
default). Every part of ``cloud run`` is switchable: ``[ingest]``, ``[hj212]``, ``[fusion]``,
``[api]``, ``[inversion]`` and ``[alerts]`` each take ``enabled``. A part whose section is
absent keeps its default: ingest, fusion and api on (api only when ``[api]`` is given),
hj212, inversion and alerts off. Unknown sections and keys are rejected with the file, the
section and the key (``protocols.tomlconf``). ``[inversion]`` and ``[alerts]`` are read here
only for ``enabled``; the rest of those tables is handed, unread, to their owners, who must
reject what they do not know (``CloudConfig.part_table``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from protocols.errors import ConfigError
from protocols.tomlconf import Table, parse_toml

SECTIONS: Final = (
    "mqtt",
    "store",
    "ingest",
    "api",
    "hj212",
    "domain",
    "fusion",
    "inversion",
    "alerts",
)
HJ212_UNITS: Final = ("ug/m3", "mg/m3")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def default_client_id() -> str:
    """``airtrace-cloud-<host>``: fixed per machine, so a restarted worker resumes its session."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]) or "host"
    return f"airtrace-cloud-{host}"[:128]


@dataclass(frozen=True)
class MqttConfig:
    url: str
    host: str
    port: int
    tls: bool
    client_id: str
    share_group: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 86_400
    receive_max: int = 500
    protocol: str = "5"  # "5" or "3.1.1" (brokers without MQTT 5, e.g. the embedded amqtt)

    @property
    def up_filter(self) -> str:
        from protocols.telemetry import UP_FILTER

        return f"$share/{self.share_group}/{UP_FILTER}" if self.share_group else UP_FILTER


@dataclass(frozen=True)
class StoreConfig:
    url: str
    sqlite_synchronous: str = "full"  # full | normal (SQLite only)


@dataclass(frozen=True)
class IngestConfig:
    enabled: bool = True
    batch_max_messages: int = 200
    batch_max_readings: int = 50_000
    batch_wait_s: float = 0.02
    watermark_interval_s: float = 0.5
    quarantine_payload_max: int = 4096


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: tuple[str, ...] = field(default=(), repr=False)
    map_tiles: str | None = None  # the one-map page's basemap: an XYZ tile URL template
    map_attribution: str = ""

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Hj212Config:
    enabled: bool = False
    host: str = "0.0.0.0"  # noqa: S104 - data loggers dial in from the field
    port: int = 9212
    units: str = "ug/m3"  # what the loggers send for ug/m3 quantities (PM, gases)
    require_password: bool = True
    idle_timeout_s: float = 600.0
    utc_offset_h: float = 0.0  # DataTime is local time this many hours ahead of UTC


@dataclass(frozen=True)
class DomainConfig:
    origin_lat: float | None = None
    origin_lon: float | None = None
    cell_m: float = 100.0
    extent: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 (metres)

    @property
    def has_origin(self) -> bool:
        return self.origin_lat is not None and self.origin_lon is not None


@dataclass(frozen=True)
class FusionConfig:
    enabled: bool = True
    interval_s: float = 60.0
    max_sample_gap_s: float = 600.0
    min_capture: float = 0.75
    offline_after_s: float = 900.0
    stuck_minutes: float = 60.0
    neighbour_radius_m: float = 3000.0
    drift_ratio: float = 0.5
    drift_hours: int = 24
    colocation_radius_m: float = 150.0
    colocation_days: float = 7.0
    colocation_min_hours: int = 48
    colocation_quantities: tuple[str, ...] = ("pm25", "pm10")
    colocation_rh: bool = True
    colocation_push: bool = False


@dataclass(frozen=True)
class CloudConfig:
    source: str
    store: StoreConfig
    mqtt: MqttConfig | None
    ingest: IngestConfig
    api: ApiConfig
    hj212: Hj212Config
    domain: DomainConfig
    fusion: FusionConfig
    inversion_enabled: bool = False
    alerts_enabled: bool = False
    parts_raw: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def part_table(self, name: str) -> Table:
        """The ``[inversion]`` or ``[alerts]`` table for its owner to read (``enabled`` is
        already read; call ``done()`` after reading the rest)."""
        t = Table(self.parts_raw.get(name, {}), source=self.source, section=name)
        t.raw("enabled", None)
        return t


def load_config(path: str | os.PathLike[str]) -> CloudConfig:
    """Read and validate a cloud config file; any problem is one ConfigError line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}", source=source) from None
    return parse_config(text, source=source)


def parse_config(text: str, *, source: str = "cloud.toml") -> CloudConfig:
    doc = Table(parse_toml(text, source), source=source)
    for key in doc:
        if key not in SECTIONS:
            raise doc.error(None, f"unknown section [{key}]; known sections: {', '.join(SECTIONS)}")

    store = _store(doc.table("store", required=True))
    ingest = _ingest(doc.table("ingest"))
    mqtt_present = "mqtt" in doc
    if ingest.enabled and not mqtt_present:
        raise doc.error(
            "mqtt", "[mqtt] url is required while ingest is on (or set [ingest] enabled = false)"
        )
    mqtt = _mqtt(doc.table("mqtt")) if mqtt_present else None
    api = _api(doc.table("api"), present="api" in doc)
    hj212 = _hj212(doc.table("hj212"), present="hj212" in doc)
    domain = _domain(doc.table("domain"))
    fusion = _fusion(doc.table("fusion"))
    parts_raw: dict[str, Mapping[str, Any]] = {}
    enabled: dict[str, bool] = {}
    for name in ("inversion", "alerts"):
        t = doc.table(name)
        enabled[name] = t.flag("enabled", name in doc)
        parts_raw[name] = {k: t.raw(k) for k in t}  # handed whole to its owner
    doc.done()
    return CloudConfig(
        source=source,
        store=store,
        mqtt=mqtt,
        ingest=ingest,
        api=api,
        hj212=hj212,
        domain=domain,
        fusion=fusion,
        inversion_enabled=enabled["inversion"],
        alerts_enabled=enabled["alerts"],
        parts_raw=parts_raw,
    )


# --------------------------------------------------------------------------- sections


def _store(t: Table) -> StoreConfig:
    url = t.text("url")
    from cloud.store import parse_store_url

    try:
        parse_store_url(url)
    except ConfigError as exc:
        raise t.error("url", exc.message) from None
    sync = t.text("sqlite_synchronous", "full", choices=("full", "normal"))
    t.done()
    return StoreConfig(url=url, sqlite_synchronous=sync)


def _ingest(t: Table) -> IngestConfig:
    d = IngestConfig()
    cfg = IngestConfig(
        enabled=t.flag("enabled", True),
        batch_max_messages=t.integer("batch_max_messages", d.batch_max_messages, min=1),
        batch_max_readings=t.integer("batch_max_readings", d.batch_max_readings, min=1),
        batch_wait_s=t.number("batch_wait_s", d.batch_wait_s, min=0.0, max=5.0),
        watermark_interval_s=t.number(
            "watermark_interval_s", d.watermark_interval_s, min=0.0, max=60.0
        ),
        quarantine_payload_max=t.integer(
            "quarantine_payload_max", d.quarantine_payload_max, min=0, max=1_048_576
        ),
    )
    t.done()
    return cfg


def _hostport(t: Table, key: str, text: str, default_host: str | None = None) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})", text)
    if not m:
        raise t.error(key, f"must be HOST:PORT, got {text!r}")
    host = m.group("v6") or m.group("host") or default_host
    port = int(m.group("port"))
    if not host:
        raise t.error(key, f"needs a host in {text!r}")
    if not 0 <= port < 65536:
        raise t.error(key, f"port must be 0-65535 (0: any free port), got {port}")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mqtt(t: Table) -> MqttConfig:
    url = t.text("url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise t.error("url", f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise t.error("url", f"scheme must be mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise t.error("url", f"needs a host: {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    username = t.text("username", None)
    password = t.text("password", None)
    password_file = t.text("password_file", None)
    if password_file is not None:
        if password is not None:
            raise t.error("password_file", "give password or password_file, not both")
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise t.error("password_file", f"cannot read {password_file}: {exc}") from None
    if username is None and parts.username:  # keys win over the URL's user:password@
        username = unquote(parts.username)
    if password is None and parts.password:
        password = unquote(parts.password)
    files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        value = t.text(key, None)
        if value is not None and not Path(value).is_file():
            raise t.error(key, f"no such file: {value}")
        files[key] = Path(value) if value is not None else None
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise t.error("cert_file", "cert_file and key_file go together")
    if any(files.values()) and not tls:
        raise t.error("url", "ca_file/cert_file/key_file need an mqtts:// url")
    share = t.text("share_group", None)
    if share is not None and not _GROUP_RE.match(share):
        raise t.error("share_group", f"must be 1-64 of A-Z a-z 0-9 _ . -, got {share!r}")
    client_id = t.text("client_id", None) or default_client_id()
    if not _CLIENT_ID_RE.match(client_id):
        raise t.error("client_id", f"must be 1-128 of A-Z a-z 0-9 _ . : -, got {client_id!r}")
    cfg = MqttConfig(
        url=url,
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        client_id=client_id,
        share_group=share,
        username=username,
        password=password,
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        keepalive_s=t.integer("keepalive_s", 30, min=5, max=3600),
        session_expiry_s=t.integer("session_expiry_s", 86_400, min=60),
        receive_max=t.integer("receive_max", 500, min=1, max=65_535),
        protocol=t.text("protocol", "5", choices=("5", "3.1.1")),
    )
    if cfg.protocol != "5" and share is not None:
        raise t.error("share_group", 'shared subscriptions need protocol = "5"')
    t.done()
    return cfg


def _api(t: Table, *, present: bool) -> ApiConfig:
    enabled = t.flag("enabled", present)
    host, port = _hostport(t, "listen", t.text("listen", "127.0.0.1:8080"))
    tokens = list(t.array("tokens", str, []))
    token_file = t.text("token_file", None)
    if token_file is not None:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise t.error("token_file", f"cannot read {token_file}: {exc}") from None
        tokens += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    for tok in tokens:
        if len(tok) < 16:
            raise t.error("tokens", "every API token must be at least 16 characters")
    if enabled and not tokens and not _is_loopback(host):
        raise t.error(
            "listen",
            f"{host} is not a loopback address: give tokens or token_file so the API is not open",
        )
    tiles = t.text("map_tiles", None)
    if tiles is not None and not (
        re.match(r"^(https?://|/)", tiles) and all(k in tiles for k in ("{z}", "{x}", "{y}"))
    ):
        raise t.error(
            "map_tiles", f"must be an http(s):// or /path URL with {{z}}, {{x}}, {{y}}: {tiles!r}"
        )
    attribution = t.text("map_attribution", "")
    t.done()
    return ApiConfig(
        enabled=enabled, host=host, port=port, tokens=tuple(tokens), map_tiles=tiles,
        map_attribution=attribution,
    )


def _hj212(t: Table, *, present: bool) -> Hj212Config:
    d = Hj212Config()
    enabled = t.flag("enabled", present)
    host, port = _hostport(t, "listen", t.text("listen", f"{d.host}:{d.port}"))
    cfg = Hj212Config(
        enabled=enabled,
        host=host,
        port=port,
        units=t.text("units", d.units, choices=HJ212_UNITS),
        require_password=t.flag("require_password", True),
        idle_timeout_s=t.number("idle_timeout_s", d.idle_timeout_s, positive=True),
        utc_offset_h=t.number("utc_offset_h", d.utc_offset_h, min=-14.0, max=14.0),
    )
    t.done()
    return cfg


def _domain(t: Table) -> DomainConfig:
    lat = t.number("origin_lat", None, min=-89.0, max=89.0)
    lon = t.number("origin_lon", None, min=-180.0, max=180.0)
    if (lat is None) != (lon is None):
        raise t.error("origin_lat", "origin_lat and origin_lon go together")
    extent = t.array("extent", float, None)
    if extent is not None:
        if len(extent) != 4 or not (extent[0] < extent[2] and extent[1] < extent[3]):
            raise t.error("extent", "must be [x0, y0, x1, y1] in metres with x0 < x1, y0 < y1")
        extent = tuple(extent)
    cfg = DomainConfig(
        origin_lat=lat,
        origin_lon=lon,
        cell_m=t.number("cell_m", 100.0, positive=True),
        extent=extent,
    )
    t.done()
    return cfg


def _fusion(t: Table) -> FusionConfig:
    d = FusionConfig()
    cfg = FusionConfig(
        enabled=t.flag("enabled", True),
        interval_s=t.number("interval_s", d.interval_s, min=1.0),
        max_sample_gap_s=t.number("max_sample_gap_s", d.max_sample_gap_s, positive=True),
        min_capture=t.number("min_capture", d.min_capture, min=0.0, max=1.0),
        offline_after_s=t.number("offline_after_s", d.offline_after_s, positive=True),
        stuck_minutes=t.number("stuck_minutes", d.stuck_minutes, positive=True),
        neighbour_radius_m=t.number("neighbour_radius_m", d.neighbour_radius_m, positive=True),
        drift_ratio=t.number("drift_ratio", d.drift_ratio, positive=True),
        drift_hours=t.integer("drift_hours", d.drift_hours, min=3),
        colocation_radius_m=t.number("colocation_radius_m", d.colocation_radius_m, positive=True),
        colocation_days=t.number("colocation_days", d.colocation_days, positive=True),
        colocation_min_hours=t.integer("colocation_min_hours", d.colocation_min_hours, min=3),
        colocation_quantities=tuple(
            t.array("colocation_quantities", str, list(d.colocation_quantities))
        ),
        colocation_rh=t.flag("colocation_rh", d.colocation_rh),
        colocation_push=t.flag("colocation_push", d.colocation_push),
    )
    t.done()
    return cfg
