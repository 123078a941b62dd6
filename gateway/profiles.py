"""Device profiles: a sensor model described as data (DESIGN 4.6), loaded and checked.

A profile is a TOML file. ``[model]`` names it and its protocol; a Modbus model lists its
``[[register]]`` entries (where each quantity lives and how to scale it, see
``protocols.registers.RegisterSpec``); a serial particle sensor or an HJ 212 data logger
lists ``[[field]]`` entries (which field of the decoded frame, or which HJ 212 factor
code, is which quantity). ``[defaults]`` records what the device ships with (unit id,
baud rate, parity, stop bits), which ``scan`` tries first::

    [model]
    name = "rs-ws-n01"
    protocol = "modbus"            # modbus | pms5003 | sds011 | hj212
    vendor = "Renke"
    description = "RS485 temperature and humidity transmitter"

    [defaults]
    unit_id = 1
    baudrate = 4800

    [[register]]
    quantity = "rh"
    address = 0
    type = "uint16"
    scale = 0.1
    unit = "%RH"

Built-in profiles live in ``gateway/profiles/NAME.toml``; a station names one by its name
or points at its own file. Every problem raises ``ConfigError`` naming the file, the
table and the key. Quantities come from ``protocols.quantities`` and must be given in
that quantity's unit (convert with ``scale`` and ``offset``), so every reading of a
quantity means the same thing wherever it came from.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from protocols.errors import ConfigError
from protocols.quantities import QUANTITIES
from protocols.registers import MAX_READ, TYPES, Block, RegisterError, RegisterSpec, plan_reads
from protocols.tomlconf import Table, parse_toml

__all__ = [
    "BUILTIN_DIR",
    "FIELDS",
    "PROTOCOLS",
    "Defaults",
    "FieldSpec",
    "Profile",
    "builtin_profiles",
    "load_profile",
    "loads_profile",
    "transports_for",
]

BUILTIN_DIR = Path(__file__).with_name("profiles")
PROTOCOLS = ("modbus", "pms5003", "sds011", "hj212")

#: protocol -> the station-config transports that can carry it
_TRANSPORTS = {
    "modbus": ("modbus-tcp", "modbus-rtu"),
    "pms5003": ("serial",),
    "sds011": ("serial",),
    "hj212": ("hj212-tcp",),
}

_PM = ("pm1", "pm25", "pm10", "pm1_cf1", "pm25_cf1", "pm10_cf1")
_COUNTS = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")
#: frame layout -> the numeric fields its decoded frames carry (``protocols.pms5003``,
#: ``protocols.sds011``); an HJ 212 field is a factor code instead.
FIELDS: dict[str, tuple[str, ...]] = {
    "pms3003": _PM,
    "pms5003": (*_PM, *_COUNTS),
    "pms5003t": (*_PM, *_COUNTS[:4], "temp", "rh"),
    "pms5003st": (*_PM, *_COUNTS, "hcho", "temp", "rh"),
    "sds011": ("pm25", "pm10", "pm100"),
}
PMS_VARIANTS = ("pms3003", "pms5003", "pms5003t", "pms5003st")
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_FACTOR = r"[A-Za-z0-9]{1,16}"


def transports_for(protocol: str) -> tuple[str, ...]:
    """The ``[[sensor]] transport`` values that can carry ``protocol``."""
    return _TRANSPORTS[protocol]


@dataclass(frozen=True)
class FieldSpec:
    """One quantity of a serial sensor or HJ 212 logger: ``field`` of the decoded frame
    (an HJ 212 factor code such as ``a34004``), engineering value = raw * scale + offset."""

    quantity: str
    field: str
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""

    def value(self, raw: float) -> float:
        return raw * self.scale + self.offset


@dataclass(frozen=True)
class Defaults:
    """How the device ships: what ``scan`` tries first; ``None`` where not documented."""

    unit_id: int | None = None
    baudrate: int | None = None
    parity: str | None = None
    stopbits: int | None = None


@dataclass(frozen=True)
class Profile:
    """A sensor model: its protocol, and where each quantity comes from."""

    name: str
    protocol: str
    registers: tuple[RegisterSpec, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    vendor: str = ""
    description: str = ""
    reference: str = ""  # where the register map or field list comes from
    variant: str | None = None  # pms5003: the frame layout (pms5003t carries temp and rh)
    defaults: Defaults = field(default_factory=Defaults)
    max_gap: int = 0  # modbus: unused registers one read request may bridge
    max_count: int = MAX_READ  # modbus: registers one read request may span
    path: str = ""  # the file it was loaded from

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"profile {self.name!r}: unknown protocol {self.protocol!r}")
        if self.protocol == "modbus" and (self.fields or not self.registers):
            raise ConfigError(f"profile {self.name!r}: a modbus profile has [[register]]s")
        if self.protocol != "modbus" and (self.registers or not self.fields):
            raise ConfigError(f"profile {self.name!r}: a {self.protocol} profile has [[field]]s")

    @property
    def quantities(self) -> tuple[str, ...]:
        """The quantities this model reports, in profile order."""
        return tuple(s.quantity for s in (self.registers or self.fields))

    def unit(self, quantity: str) -> str:
        for s in self.registers or self.fields:
            if s.quantity == quantity:
                return s.unit
        raise KeyError(quantity)

    def blocks(self) -> list[Block]:
        """Modbus: the read requests one poll makes (as few as the limits allow)."""
        return plan_reads(self.registers, max_gap=self.max_gap, max_count=self.max_count)

    @property
    def builtin(self) -> bool:
        return bool(self.path) and Path(self.path).parent == BUILTIN_DIR


# --------------------------------------------------------------------------- loading


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``gateway/profiles/``, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def _is_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith(".toml")


def load_profile(ref: str) -> Profile:
    """A profile by built-in name (``rs-pm-n01``) or by path to its TOML file."""
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError("a profile reference must be a built-in name or a file path")
    if _is_path(ref):
        return _load_file(Path(ref).expanduser())
    names = builtin_profiles()
    if ref not in names:
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown profile {ref!r}{hint}; built-in profiles: {', '.join(names)}; "
            "or give the path to a profile file",
            profile=ref,
        )
    return _load_builtin(ref)


@functools.lru_cache(maxsize=64)
def _load_builtin(name: str) -> Profile:
    return _load_file(BUILTIN_DIR / f"{name}.toml")


def _load_file(path: Path) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such profile file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc}", source=str(path)) from None
    return loads_profile(text, source=str(path))


def loads_profile(text: str, *, source: str = "profile.toml") -> Profile:
    """Parse and check a profile's TOML text; errors name ``source``."""
    root = Table(parse_toml(text, source), source=source)
    model = root.table("model", required=True)
    name = model.text("name", pattern=_NAME)
    protocol = model.text("protocol", choices=PROTOCOLS)
    vendor = model.text("vendor", "")
    description = model.text("description", "")
    reference = model.text("reference", "")
    variant = None
    max_gap, max_count = 0, MAX_READ
    if protocol == "pms5003":
        variant = model.text("variant", "pms5003", choices=PMS_VARIANTS)
    if protocol == "modbus":
        max_gap = model.integer("max_gap", 0, min=0, max=MAX_READ - 1)
        max_count = model.integer("max_count", MAX_READ, min=1, max=MAX_READ)
    model.done()
    if Path(source).parent == BUILTIN_DIR and Path(source).stem != name:
        raise model.error("name", f"must match the file name {Path(source).stem!r}")

    d = root.table("defaults")
    defaults = Defaults(
        unit_id=d.integer("unit_id", None, min=0, max=247),
        baudrate=d.integer("baudrate", None, min=300, max=921_600),
        parity=d.text("parity", None, choices=("N", "E", "O")),
        stopbits=d.integer("stopbits", None, min=1, max=2),
    )
    d.done()

    registers: tuple[RegisterSpec, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    if protocol == "modbus":
        if "field" in root:
            raise root.error("field", "a modbus profile describes [[register]]s, not [[field]]s")
        registers = tuple(_register(t) for t in root.tables("register", required=True))
        specs: tuple[RegisterSpec | FieldSpec, ...] = registers
    else:
        if "register" in root:
            raise root.error("register", f"a {protocol} profile describes [[field]]s")
        fields = tuple(_field(t, protocol, variant) for t in root.tables("field", required=True))
        specs = fields
    if not specs:
        raise root.error("register" if protocol == "modbus" else "field", "lists nothing")
    seen: set[str] = set()
    for s in specs:
        if s.quantity in seen:
            raise ConfigError(
                f"{source}: quantity {s.quantity!r} is listed twice", source=source, key="quantity"
            )
        seen.add(s.quantity)
    root.done()
    profile = Profile(
        name=name,
        protocol=protocol,
        registers=registers,
        fields=fields,
        vendor=vendor,
        description=description,
        reference=reference,
        variant=variant,
        defaults=defaults,
        max_gap=max_gap,
        max_count=max_count,
        path=source,
    )
    if registers:
        try:
            profile.blocks()
        except RegisterError as exc:
            raise ConfigError(f"{source} [model]: {exc}", source=source) from None
    return profile


_REGISTER_KEYS = (
    "quantity", "address", "function", "type", "word_order", "byte_order", "scale", "offset",
    "unit",
)  # fmt: skip
_FIELD_KEYS = ("quantity", "field", "scale", "offset", "unit")


def _known_keys(t: Table, known: tuple[str, ...]) -> None:
    """Reject a misspelt key before a required one is missed: 'adress' beats 'address
    is required'."""
    for key in t:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise t.error(None, f'unknown key "{key}"{hint}; known keys: {", ".join(known)}')


def _quantity_unit(t: Table) -> tuple[str, str]:
    quantity = t.text("quantity")
    if quantity not in QUANTITIES:
        close = difflib.get_close_matches(quantity, list(QUANTITIES), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise t.error(
            "quantity", f"unknown quantity {quantity!r}{hint}; known: {', '.join(QUANTITIES)}"
        )
    canonical = QUANTITIES[quantity].unit
    unit = t.text("unit", canonical)
    if unit != canonical:
        raise t.error(
            "unit",
            f"{quantity} is reported in {canonical}, not {unit!r}: convert with scale and offset",
        )
    return quantity, unit


def _register(t: Table) -> RegisterSpec:
    _known_keys(t, _REGISTER_KEYS)
    quantity, unit = _quantity_unit(t)
    kwargs = {
        "quantity": quantity,
        "address": t.integer("address", min=0, max=0xFFFF),
        "function": t.integer("function", 3),
        "type": t.text("type", "uint16", choices=tuple(TYPES)),
        "word_order": t.text("word_order", "big", choices=("big", "little")),
        "byte_order": t.text("byte_order", "big", choices=("big", "little")),
        "scale": t.number("scale", 1.0),
        "offset": t.number("offset", 0.0),
        "unit": unit,
    }
    t.done()
    try:
        return RegisterSpec(**kwargs)
    except RegisterError as exc:
        key = exc.fields.get("field")
        raise t.error(key if isinstance(key, str) else None, str(exc)) from None


def _field(t: Table, protocol: str, variant: str | None) -> FieldSpec:
    _known_keys(t, _FIELD_KEYS)
    quantity, unit = _quantity_unit(t)
    name = t.text("field")
    layout = variant or protocol
    if protocol == "hj212":
        if not re.fullmatch(_FACTOR, name):
            raise t.error("field", f"must be an HJ 212 factor code such as a34004, got {name!r}")
    elif name not in FIELDS[layout]:
        known = ", ".join(FIELDS[layout])
        raise t.error("field", f"a {layout} frame has no {name!r}; known: {known}")
    scale = t.number("scale", 1.0)
    if scale == 0:
        raise t.error("scale", "must not be zero")
    spec = FieldSpec(quantity, name, scale, t.number("offset", 0.0), unit)
    t.done()
    return spec
