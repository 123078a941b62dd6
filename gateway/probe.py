"""``airtrace gateway probe``: one device, what it sent and what the profile makes of it.

For a Modbus device every read request of its profile is shown with the raw register
words, then each register with its type, words and decoded value; ``raw`` reads (function,
address, count) dump registers the profile does not map, for a technician writing a new
profile. For a serial particle sensor or an HJ 212 monitor one poll is shown: the decoded
frame (or packet) and the samples it gives. Nothing here retries or backs off: a probe
answers "what does this device say right now".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.config import SensorConfig
from gateway.drivers import open_driver
from gateway.drivers.modbus import ModbusDriver
from gateway.errors import DeviceError
from gateway.model import Sample
from gateway.profiles import Profile, load_profile
from protocols.errors import InputError
from protocols.registers import Block, RegisterError, decode

__all__ = ["ProbeResult", "RawRead", "parse_raw", "probe", "render", "target"]


@dataclass(frozen=True)
class RawRead:
    function: int
    address: int
    count: int
    words: tuple[int, ...] | None = None  # None: the device refused (see error)
    error: str | None = None
    mapped: tuple[tuple[str, str, tuple[int, ...], float | None, str, str | None], ...] = ()
    # (quantity, type, words, value, unit, problem) for the profile's registers in the read

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function, "address": self.address, "count": self.count,
            "words": None if self.words is None else list(self.words), "error": self.error,
            "registers": [
                {"quantity": q, "type": t, "words": list(w), "value": v, "unit": u,
                 "problem": p}
                for q, t, w, v, u, p in self.mapped
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class ProbeResult:
    sensor: SensorConfig
    profile: Profile
    reads: tuple[RawRead, ...] = ()  # Modbus
    frame: dict[str, Any] | None = None  # serial: the decoded frame
    packets: tuple[str, ...] = ()  # hj212: the data segments received
    samples: tuple[Sample, ...] = ()
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor.name,
            "profile": self.profile.name,
            "protocol": self.profile.protocol,
            "bus": self.sensor.bus,
            "unit_id": self.sensor.unit_id if self.profile.protocol == "modbus" else None,
            "reads": [r.to_json() for r in self.reads],
            "frame": self.frame,
            "packets": list(self.packets),
            "samples": [
                {"quantity": s.quantity, "raw": s.raw, "unit": s.unit, "flag": str(s.flag),
                 "reason": s.why}
                for s in self.samples
            ],
            "error": self.error,
        }  # fmt: skip


def target(
    config: Path | None,
    sensor: str | None,
    port: str | None,
    profile: str | None,
    unit: int,
    baud: int | None,
    parity: str | None,
    stopbits: int | None,
    mode: str,
    timeout_s: float,
) -> tuple[SensorConfig, Profile]:
    """The sensor to probe: ``--config`` + ``--sensor``, or built from the explicit
    transport arguments (the profile's documented defaults fill what is not given)."""
    from gateway import config as station_config
    from gateway.scan import parse_port

    if config is not None:
        if port or profile:
            raise InputError("give --config with --sensor, or --port with --profile, not both")
        if not sensor:
            raise InputError("--config needs --sensor NAME")
        cfg = station_config.load(config)
        try:
            target = cfg.sensor(sensor)
        except KeyError:
            names = ", ".join(s.name for s in cfg.sensors)
            raise InputError(f"{config}: no [[sensor]] {sensor!r}; there are: {names}") from None
        return target, load_profile(target.profile)
    if not (port and profile):
        raise InputError("give --config and --sensor, or --port and --profile")
    if "/" in profile or profile.endswith(".toml"):
        profile = str(Path(profile).resolve())
    model = load_profile(profile)
    if model.protocol == "modbus":
        transport = parse_port(port)
    elif model.protocol == "hj212":
        transport = "hj212-tcp"
    else:
        transport = "serial"
    d = model.defaults
    target = station_config.SensorConfig(
        name="probe",
        profile=profile,
        transport=transport,
        address=port,
        unit_id=unit,
        baudrate=baud or d.baudrate or 9600,
        parity=parity or d.parity or "N",
        stopbits=stopbits or d.stopbits or 1,
        timeout_s=timeout_s,
        retries=0,
        mode=mode,
    )
    return target, model


def parse_raw(text: str) -> tuple[int, int, int]:
    """``FC:ADDRESS:COUNT`` (``3:0:10``; the address may be hex, ``4:0x1F4:6``)."""
    try:
        fc, address, count = (int(x, 0) for x in text.split(":"))
    except ValueError:
        raise InputError(f"--raw {text!r}: expected FUNCTION:ADDRESS:COUNT, e.g. 3:0:10") from None
    if fc not in (3, 4) or not 0 <= address <= 0xFFFF or not 1 <= count <= 125:
        raise InputError(f"--raw {text!r}: function 3 or 4, address 0..65535, count 1..125")
    return fc, address, count


def probe(
    sensor: SensorConfig,
    profile: Profile,
    *,
    clock: Clock,
    raw: list[tuple[int, int, int]] | None = None,
) -> ProbeResult:
    """Read ``sensor`` once per ``profile`` (and the ``raw`` extra reads for Modbus)."""
    driver = open_driver(sensor, profile, clock=clock)
    try:
        if isinstance(driver, ModbusDriver):
            return _probe_modbus(driver, raw or [])
        if raw:
            raise InputError("--raw reads registers: only for Modbus devices")
        try:
            samples = driver.read()
        except DeviceError as exc:
            return ProbeResult(sensor, profile, error=exc.message)
        frame = getattr(driver, "last_frame", None)
        packets = tuple(r.packet.segment for r in getattr(driver, "last_packets", []))
        return ProbeResult(sensor, profile, frame=frame, packets=packets, samples=tuple(samples))
    finally:
        driver.close()


def _probe_modbus(driver: ModbusDriver, raw: list[tuple[int, int, int]]) -> ProbeResult:
    sensor, link = driver.sensor, driver.link
    reads: list[RawRead] = []
    requests: list[tuple[int, int, int, Block | None]] = [
        (b.function, b.address, b.count, b) for b in driver.blocks
    ]
    requests += [(fc, a, n, None) for fc, a, n in raw]
    for fc, address, count, block in requests:
        try:
            words = link.read(sensor.unit_id, fc, address, count, timeout_s=sensor.timeout_s,
                              retries=sensor.retries, who=sensor.name)  # fmt: skip
        except DeviceError as exc:
            if exc.fields.get("comm"):  # nothing to show: the device did not answer
                return ProbeResult(sensor, driver.profile, tuple(reads), error=exc.message)
            reads.append(RawRead(fc, address, count, None, exc.message))
            continue
        mapped = []
        if block is not None:  # a raw read (--raw) maps nothing
            for spec in block.specs:
                part = block.extract(words, spec)
                try:
                    value, problem = decode(part, spec), None
                except RegisterError as exc:
                    value, problem = None, str(exc)
                mapped.append((spec.quantity, spec.type, tuple(part), value, spec.unit, problem))
        reads.append(RawRead(fc, address, count, tuple(words), None, tuple(mapped)))
    return ProbeResult(sensor, driver.profile, tuple(reads))


def render(result: ProbeResult) -> str:
    """The technician's view, as plain text."""
    s, p = result.sensor, result.profile
    where = f"unit {s.unit_id} on {s.bus}" if p.protocol == "modbus" else s.bus
    lines = [f"{s.name}: profile {p.name} ({p.protocol}), {where}"]
    kinds = {3: "holding", 4: "input"}
    for r in result.reads:
        last = r.address + r.count - 1
        hexes = f"{r.address:04X}H..{last:04X}H"
        span = f"FC{r.function} {kinds[r.function]} {r.address}..{last} ({hexes})"
        if r.words is None:
            lines.append(f"  {span}: {r.error}")
            continue
        lines.append(f"  {span}: " + " ".join(f"{w:04X}" for w in r.words))
        for q, t, w, v, u, problem in r.mapped:
            hexw = " ".join(f"{x:04X}" for x in w)
            shown = f"{v:g} {u}" if v is not None else f"no value ({problem})"
            lines.append(f"    {q:<11} {t:<8} [{hexw}] -> {shown}")
    if result.frame is not None:
        lines.append("  frame: " + ", ".join(f"{k}={v}" for k, v in result.frame.items()))
    lines.extend(f"  packet: {seg}" for seg in result.packets)
    for smp in result.samples:
        value = f"{smp.raw:g} {smp.unit}" if smp.raw is not None else "no value"
        flag = "" if smp.flag.valid and not smp.why else f"  [{smp.flag}] {smp.why or ''}"
        lines.append(f"    {smp.quantity:<11} -> {value}{flag}")
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.reads and not any(r.words for r in result.reads) and not result.error:
        lines.append("  the device answers but refuses every read: wrong profile or function?")
    return "\n".join(lines)
