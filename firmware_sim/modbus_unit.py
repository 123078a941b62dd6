"""One simulated Modbus device (one unit id): registers computed at request time.

A ``ModbusUnit`` answers read and write requests for one unit id of a bus as the model's
manual says: a read computes each register it touches from the value source at the moment
of the request (clock time), passes it through the unit's faults (stuck, drift), clamps it
to the device's range and encodes it with ``protocols.registers``; an address the model does
not have answers "illegal data address" (exception 2), as real transmitters do; a quantity
the source cannot give is shown at a typical value (counted in ``missing``), and a value
that is not a number makes the device report a failure (exception 4; float registers carry
NaN instead, as devices do for "no measurement").

Coils (a site's spray system) are switched by FC 5/15 (or by writing 0/1 to the mirror
holding registers with FC 6/16); every change is recorded in ``history`` with the simulated
time, so a test or the demo sees when the gateway switched what. A reboot switches all
relays off (recorded too), as a power cut does.
"""

from __future__ import annotations

import math
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from firmware_sim.clock import Clock
from firmware_sim.faults import Faults
from firmware_sim.models import (
    BAUD_CODES,
    CONFIG_BAUD,
    CONFIG_UNIT_ID,
    ModbusModel,
    SimRegister,
    daylight_lux,
    model,
)
from firmware_sim.sources import DEFAULTS, SourceLike, Values
from protocols.registers import RegisterError, encode

__all__ = ["ILLEGAL_ADDRESS", "ILLEGAL_FUNCTION", "ModbusUnit", "SwitchEvent"]

# Modbus exception codes (the values of pymodbus.constants.ExcCodes)
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4

#: derived quantities a unit computes itself when its source does not know them
_DERIVED: dict[str, Callable[[float], float]] = {"illuminance": daylight_lux}


#: a write request reads back what it wrote: FC 5/15 from the coils, FC 6/16 from holding
_READ_BACK = {5: 1, 15: 1, 6: 3, 16: 3}


@dataclass(frozen=True)
class SwitchEvent:
    """A relay changed state: at simulated time ``t``, channel ``channel`` of unit
    ``unit_id`` went ``on`` or off, by a ``coil`` write, a ``register`` write or a
    ``reboot``."""

    t: float
    unit_id: int
    channel: int
    on: bool
    via: str


class ModbusUnit:
    """The registers, coils and faults of one unit id."""

    def __init__(
        self,
        device_model: ModbusModel | str,
        unit_id: int = 1,
        *,
        source: SourceLike = None,
        clock: Clock,
        seed: int | None = 0,
    ) -> None:
        self.model = model(device_model) if isinstance(device_model, str) else device_model
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit id {unit_id} is not 1..247")
        self.unit_id = unit_id
        self.clock = clock
        self.values = Values(source)
        self.faults = Faults(clock, seed=seed)
        self.coils = [False] * self.model.coils
        self.history: list[SwitchEvent] = []
        self.requests: Counter[int] = Counter()  # function code -> requests answered
        self.missing: set[str] = set()  # quantities the source did not know
        self.baud_code = next((c for c, b in BAUD_CODES.items() if b == self.model.baudrate), 2)
        self.on_readdress: Callable[[ModbusUnit, int], None] | None = None
        self._lock = threading.Lock()
        self._layout: dict[tuple[int, int], tuple[SimRegister, int]] = {}
        for reg in self.model.registers:
            for i in range(reg.count):
                self._layout[(reg.function, reg.address + i)] = (reg, i)
        self.faults.on_reboot(self._power_cut)

    def __repr__(self) -> str:
        return f"ModbusUnit({self.model.name!r}, unit_id={self.unit_id})"

    # -- values -----------------------------------------------------------------------------

    def reading(self, quantity: str, t: float | None = None) -> float:
        """The value the unit shows for ``quantity`` at ``t`` (now by default): the source's,
        through the faults."""
        t = self.clock.now() if t is None else t
        try:
            value = self.values(quantity, t)
        except KeyError:
            self.missing.add(quantity)
            if quantity in _DERIVED:
                value = _DERIVED[quantity](t)
            else:
                value = DEFAULTS.get(quantity, math.nan)
        return self.faults.value(quantity, t, value)

    def _register_words(self, reg: SimRegister, t: float, cache: dict[str, float]) -> list[int]:
        if reg.quantity not in cache:
            cache[reg.quantity] = self.reading(reg.quantity, t)
        value = cache[reg.quantity]
        if not math.isnan(value) and reg.derive is not None:
            value = reg.derive(value)
        if math.isnan(value):
            if reg.spec.type != "float32":
                raise _Failure
            data = struct.pack(">f", math.nan)
            words = [int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")]
            return words if reg.spec.word_order == "big" else words[::-1]
        value = min(max(value, reg.low), reg.high)
        try:
            return encode(value, reg.spec)
        except RegisterError:
            raise _Failure from None

    # -- requests ---------------------------------------------------------------------------

    def read(self, function: int, address: int, count: int) -> list[int] | list[bool] | int:
        """Answer a read: the words (FC 3/4) or bits (FC 1/2), or an exception code."""
        t = self.clock.now()
        function = _READ_BACK.get(function, function)
        if function in (1, 2):
            if address < 0 or address + count > len(self.coils):
                return ILLEGAL_ADDRESS
            self.requests[function] += 1
            return list(self.coils[address : address + count])
        if function not in (3, 4):
            return ILLEGAL_FUNCTION
        words: list[int] = []
        cache: dict[str, float] = {}
        try:
            for a in range(address, address + count):
                word = self._special(function, a)
                if word is None:
                    slot = self._layout.get((function, a))
                    if slot is None:
                        return ILLEGAL_ADDRESS
                    reg, i = slot
                    word = self._register_words(reg, t, cache)[i]
                words.append(word)
        except _Failure:
            return DEVICE_FAILURE
        self.requests[function] += 1
        return words

    def _special(self, function: int, address: int) -> int | None:
        """Coil mirrors and configuration registers (holding only)."""
        if function != 3:
            return None
        if address < len(self.coils):
            return int(self.coils[address])
        if self.model.config_registers and address == CONFIG_UNIT_ID:
            return self.unit_id
        if self.model.config_registers and address == CONFIG_BAUD:
            return self.baud_code
        return None

    def write(self, function: int, address: int, values: Sequence[int | bool]) -> int | None:
        """Apply a write (FC 5/15 coils, FC 6/16 registers); an exception code or None."""
        t = self.clock.now()
        if function in (5, 15):
            if address < 0 or address + len(values) > len(self.coils):
                return ILLEGAL_ADDRESS
            for i, v in enumerate(values):
                self._switch(address + i, bool(v), t, "coil")
            self.requests[function] += 1
            return None
        if function not in (6, 16):
            return ILLEGAL_FUNCTION
        error = self._check_write(address, values)
        if error is not None:
            return error
        for i, v in enumerate(values):
            a = address + i
            if a < len(self.coils):
                self._switch(a, bool(v), t, "register")
            elif a == CONFIG_UNIT_ID:
                if int(v) != self.unit_id and self.on_readdress is not None:
                    self.on_readdress(self, int(v))
            else:
                self.baud_code = int(v)
        self.requests[function] += 1
        return None

    def _check_write(self, address: int, values: Sequence[int | bool]) -> int | None:
        """Every address first: a rejected write changes nothing."""
        for i, v in enumerate(values):
            a = address + i
            if a < len(self.coils):
                ok = v in (0, 1)
            elif self.model.config_registers and a == CONFIG_UNIT_ID:
                ok = 1 <= int(v) <= 247
            elif self.model.config_registers and a == CONFIG_BAUD:
                ok = int(v) in BAUD_CODES
            else:
                return ILLEGAL_ADDRESS  # measurement registers are read only
            if not ok:
                return ILLEGAL_VALUE
        return None

    def _switch(self, channel: int, on: bool, t: float, via: str) -> None:
        with self._lock:
            if self.coils[channel] != on:
                self.coils[channel] = on
                self.history.append(SwitchEvent(t, self.unit_id, channel, on, via))

    def _power_cut(self) -> None:
        t = self.clock.now()
        for channel, on in enumerate(self.coils):
            if on:
                self._switch(channel, False, t, "reboot")


class _Failure(Exception):
    """A register cannot hold what the sensor shows: the device reports a failure."""
