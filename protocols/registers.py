"""Modbus register values per a device profile: decode words, encode values, plan reads.

A ``RegisterSpec`` is one ``[[register]]`` entry of a device profile (DESIGN 4.6): where
a quantity lives (zero-based address, function 3 holding or 4 input), how it is stored
(int16, uint16, int32, uint32, float32; word order for 32-bit types; optionally bytes
swapped inside each word) and how raw becomes engineering value (``raw * scale + offset``).
``decode`` and ``encode`` convert between register words and values; ``plan_reads`` groups
specs into as few read requests as Modbus limits allow. A float32 that decodes to NaN or
infinity raises ``RegisterError``: devices send those for a missing or failed sensor, and
the caller reports that as a device fault rather than storing a number.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from protocols.errors import CodecError

__all__ = [
    "TYPES",
    "Block",
    "RegisterError",
    "RegisterSpec",
    "decode",
    "encode",
    "modbus_crc16",
    "plan_reads",
    "words_from_bytes",
]

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]

#: type -> (struct code, number of 16-bit registers)
TYPES: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "float32": ("f", 2),
}
MAX_READ = 125  # registers in one Modbus read (FC 3/4)


class RegisterError(CodecError):
    """A register spec, register words or a value that do not fit together."""


@dataclass(frozen=True)
class RegisterSpec:
    """Where one quantity lives in a device's registers and how to read it."""

    quantity: str
    address: int
    function: int = 3
    type: RegisterType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    count: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> RegisterError:
            value = getattr(self, name)
            return RegisterError(
                f"register {self.quantity!r}: {name} = {value!r} {why}", field=name, value=value
            )

        if not isinstance(self.quantity, str) or not self.quantity:
            raise bad("quantity", "must be a non-empty name")
        if not isinstance(self.type, str) or self.type not in TYPES:
            raise bad("type", f"must be one of {', '.join(TYPES)}")
        count = TYPES[self.type][1]
        object.__setattr__(self, "count", count)
        if not _is_int(self.address) or not 0 <= self.address <= 0x10000 - count:
            raise bad("address", f"must be a zero-based register number 0..{0x10000 - count}")
        if not _is_int(self.function) or self.function not in (3, 4):
            raise bad("function", "must be 3 (holding) or 4 (input)")
        for name in ("word_order", "byte_order"):
            if getattr(self, name) not in ("big", "little"):
                raise bad(name, 'must be "big" or "little"')
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number")
            if not math.isfinite(value):
                raise bad(name, "must be finite")
        if self.scale == 0:
            raise bad("scale", "must not be zero")
        if not isinstance(self.unit, str):
            raise bad("unit", "must be a string")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _raw_bytes(words: Sequence[int], spec: RegisterSpec) -> bytes:
    if len(words) != spec.count:
        raise RegisterError(
            f"register {spec.quantity!r}: {spec.type} needs {spec.count} words, got {len(words)}",
            quantity=spec.quantity,
        )
    for w in words:
        if not _is_int(w) or not 0 <= w <= 0xFFFF:
            raise RegisterError(f"register {spec.quantity!r}: {w!r} is not a 16-bit word")
    ordered = list(words) if spec.word_order == "big" else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    if spec.byte_order == "little":
        data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
    return data


def _words(data: bytes, spec: RegisterSpec) -> list[int]:
    if spec.byte_order == "little":
        data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if spec.word_order == "big" else list(reversed(words))


def decode(words: Sequence[int], spec: RegisterSpec) -> float:
    """The engineering value of ``spec``'s words: raw * scale + offset."""
    code = TYPES[spec.type][0]
    (raw,) = struct.unpack(">" + code, _raw_bytes(words, spec))
    if not math.isfinite(raw):
        raise RegisterError(
            f"register {spec.quantity!r} at {spec.address} holds {raw} (the device reports "
            "no valid measurement)",
            quantity=spec.quantity,
            address=spec.address,
        )
    value = float(raw) * spec.scale + spec.offset
    if not math.isfinite(value):
        raise RegisterError(f"register {spec.quantity!r}: {raw} * scale overflows")
    return value


def encode(value: float, spec: RegisterSpec) -> list[int]:
    """The words that ``decode`` turns back into ``value``, rounded to the register's
    resolution. A value the type cannot hold raises ``RegisterError``; nothing is clamped."""
    try:
        if isinstance(value, bool) or not math.isfinite(value):
            raise TypeError
        raw = (float(value) - spec.offset) / spec.scale
    except (TypeError, OverflowError) as exc:
        raise RegisterError(
            f"register {spec.quantity!r}: {value!r} is not a finite number", quantity=spec.quantity
        ) from exc
    code = TYPES[spec.type][0]
    if code == "f":
        try:
            data = struct.pack(">f", raw)
        except OverflowError as exc:
            raise RegisterError(
                f"register {spec.quantity!r}: {value} is beyond float32", quantity=spec.quantity
            ) from exc
        return _words(data, spec)
    n = round(raw)
    bits = 16 * spec.count
    low, high = (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code in "hi" else (0, (1 << bits) - 1)
    )
    if not low <= n <= high:
        lo, hi = low * spec.scale + spec.offset, high * spec.scale + spec.offset
        raise RegisterError(
            f"register {spec.quantity!r}: {value} is outside what {spec.type} with scale "
            f"{spec.scale} and offset {spec.offset} can hold ({min(lo, hi)} .. {max(lo, hi)})",
            quantity=spec.quantity,
        )
    return _words(struct.pack(">" + code, n), spec)


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers from ``address`` with ``function``, and the
    specs whose words it returns."""

    function: int
    address: int
    count: int
    specs: tuple[RegisterSpec, ...]

    def extract(self, words: Sequence[int], spec: RegisterSpec) -> list[int]:
        """``spec``'s words out of this block's read result."""
        if len(words) != self.count:
            raise RegisterError(
                f"block at {self.address} expects {self.count} words, got {len(words)}"
            )
        start = spec.address - self.address
        if spec.function != self.function or start < 0 or start + spec.count > self.count:
            raise RegisterError(f"register {spec.quantity!r} is not in the block at {self.address}")
        return list(words[start : start + spec.count])


def plan_reads(
    specs: Iterable[RegisterSpec], *, max_gap: int = 0, max_count: int = MAX_READ
) -> list[Block]:
    """Group specs into as few read requests as the limits allow: per function, by
    address, a block spans at most ``max_count`` registers and bridges gaps of at most
    ``max_gap`` unused registers (0 by default: many devices refuse to read unmapped ones)."""
    if not 1 <= max_count <= MAX_READ:
        raise RegisterError(f"max_count = {max_count} must be within 1..{MAX_READ}")
    if max_gap < 0:
        raise RegisterError(f"max_gap = {max_gap} must not be negative")
    blocks: list[Block] = []
    ordered = sorted(specs, key=lambda s: (s.function, s.address, s.count))
    group: list[RegisterSpec] = []
    end = 0  # one past the last register of the open block
    for spec in ordered:
        if spec.count > max_count:
            raise RegisterError(f"register {spec.quantity!r} needs {spec.count} > max_count")
        if group and (
            spec.function == group[0].function
            and spec.address - end <= max_gap
            and max(end, spec.address + spec.count) - group[0].address <= max_count
        ):
            group.append(spec)
            end = max(end, spec.address + spec.count)
            continue
        if group:
            blocks.append(_block(group, end))
        group, end = [spec], spec.address + spec.count
    if group:
        blocks.append(_block(group, end))
    return blocks


def _block(group: list[RegisterSpec], end: int) -> Block:
    start = group[0].address
    return Block(group[0].function, start, end - start, tuple(group))


def words_from_bytes(data: bytes) -> list[int]:
    """Big-endian 16-bit words of a Modbus response's data bytes."""
    if len(data) % 2:
        raise RegisterError(f"{len(data)} data bytes do not make whole 16-bit words")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def modbus_crc16(data: bytes) -> int:
    """Modbus RTU CRC (init 0xFFFF, reflected 0xA001; sent low byte first): 0x4B37 for
    b"123456789". Not HJ 212's CRC."""
    reg = 0xFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg
