"""A simulated Plantower PMS5003 on a virtual serial line.

Behaves as the datasheet describes (protocols.md §2; Plantower PMS5003/7003 manual):

- **Active mode** (the default after power-up) streams a 32-byte frame on its own: every
  2.3 s while the concentration is steady ("stable mode"), every 0.2-0.8 s while it changes
  fast ("fast mode"; the higher the concentration, the shorter the interval). Intervals are
  simulated seconds on the device's clock, so an accelerated clock speeds the rhythm up.
- **Passive mode** (``42 4D E1 00 00``, acked) sends a frame only for a read command
  (``E2``).
- **Sleep** (``E4 00 00``, acked) stops the fan and the output; only wake (``E4 00 01``)
  is heard then, answered with a frame. Data within 30 s of waking is not settled on a
  real sensor; here it is.

Frames carry the atmospheric PM1/PM2.5/PM10 from the value source; the CF=1 ("standard
particle") values and the particle counts are derived from them (approximations: CF=1
equals atmospheric up to 30 ug/m3 and rises 1.5 times as fast above; counts scale with
mass). The ``pms5003t`` variant also carries temperature and humidity.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from firmware_sim.clock import Clock
from firmware_sim.loop import SimLoop
from firmware_sim.serial_sensor import SerialSensor
from firmware_sim.sources import SourceLike
from protocols import pms5003 as codec

__all__ = ["Pms5003Sensor"]


class _Fields(TypedDict, total=False):
    """The measurement fields of ``codec.build_frame`` a frame sets (the rest default)."""

    pm1: float
    pm25: float
    pm10: float
    pm1_cf1: float
    pm25_cf1: float
    pm10_cf1: float
    n0_3: float
    n0_5: float
    n1_0: float
    n2_5: float
    n5_0: float
    n10: float
    temp: float
    rh: float

STABLE_S = 2.3
FAST_S = (0.2, 0.8)
VARIANTS = ("pms5003", "pms5003t")


class Pms5003Sensor(SerialSensor[codec.Command]):
    """A PMS5003 (or PMS5003T) writing to a pty; ``address`` is the gateway's end."""

    model = "pms5003"
    checksum_at = -1

    def __init__(
        self,
        *,
        port: str | None = None,
        source: SourceLike = None,
        clock: Clock | None = None,
        loop: SimLoop | None = None,
        variant: str = "pms5003",
        version: int = 0x97,
        seed: int = 0,
        pty_backend: str = "auto",
        name: str = "",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        super().__init__(
            commands=codec.CommandStream(),
            port=port,
            source=source,
            clock=clock,
            loop=loop,
            seed=seed,
            pty_backend=pty_backend,
            name=name,
        )
        self.variant = variant
        self.version = version
        self._last_pm25: float | None = None
        self.commands: list[str] = []  # every command heard, in order
        self._fresh_state()
        self.faults.on_reboot(lambda: self.loop.call(self._fresh_state))

    def _fresh_state(self) -> None:
        self.mode = "active"
        self.asleep = False
        self._last_pm25 = None

    # -- values -----------------------------------------------------------------------------

    def reading(self, quantity: str, t: float) -> float:
        """What the sensor shows for ``quantity`` at ``t`` (source, through the faults)."""
        value = self.values.get(quantity, t)
        if value is None:
            if quantity == "pm1":
                value = 0.7 * self.reading("pm25", t)
            elif quantity == "pm10":
                value = 1.3 * self.reading("pm25", t)
            else:
                value = 0.0
            return value
        return self.faults.value(quantity, t, value)

    def frame(self, t: float | None = None) -> bytes:
        """The data frame the sensor would send at ``t`` (now by default)."""
        t = self.clock.now() if t is None else t
        pm1, pm25, pm10 = (max(0.0, min(self.reading(q, t), 9999.0)) for q in _PM)
        fields: _Fields = {
            "pm1": pm1,
            "pm25": pm25,
            "pm10": pm10,
            "pm1_cf1": _cf1(pm1),
            "pm25_cf1": _cf1(pm25),
            "pm10_cf1": _cf1(pm10),
            "n0_3": _count(pm1 * 60 + 40),
            "n0_5": _count(pm1 * 18 + 12),
            "n1_0": _count(pm1 * 2.5),
            "n2_5": _count(max(pm25 - pm1, 0) * 1.5),
        }
        if self.variant == "pms5003":
            fields["n5_0"] = _count(max(pm10 - pm25, 0) * 0.3)
            fields["n10"] = _count(max(pm10 - pm25, 0) * 0.1)
        else:
            fields["temp"] = max(-40.0, min(self.reading("temp", t), 80.0))
            fields["rh"] = max(0.0, min(self.reading("rh", t), 100.0))
        self._last_pm25 = pm25
        return codec.build_frame(model=self.variant, version=self.version, **fields)

    def _interval(self, t: float) -> float:
        """Seconds to the next active-mode frame: stable 2.3 s, fast 0.2-0.8 s."""
        last = self._last_pm25
        now = self.values.get("pm25", t)
        if last is None or now is None or abs(now - last) <= max(5.0, 0.1 * last):
            return STABLE_S
        share = min(1.0, max(now, 0.0) / 500.0)
        return FAST_S[1] - (FAST_S[1] - FAST_S[0]) * share

    # -- life cycle -------------------------------------------------------------------------

    async def _stream(self) -> None:
        while True:
            t = self.clock.now()
            interval = STABLE_S
            if self.mode == "active" and not self.asleep and not self.faults.down:
                interval = self._interval(t)
                self._send(self.frame(t))
            await self.clock.sleep(interval)

    # -- commands ---------------------------------------------------------------------------

    async def _command(self, command: codec.Command) -> None:
        if self.faults.dead or self.faults.down:
            return
        name = command.name
        self.commands.append(name)
        delay = self.faults.delay()
        if delay:
            await asyncio.sleep(delay)
        if self.asleep and name != "wake":
            return
        if name == "passive":
            self.mode = "passive"
            self._send(codec.build_ack("passive"))
        elif name == "sleep":
            self.asleep = True
            self._send(codec.build_ack("sleep"))
        elif name == "active":
            self.mode = "active"
            self._send(self.frame())
        elif name == "wake":
            self.asleep = False
            self._send(self.frame())
        elif name == "read":
            self._send(self.frame())


_PM = ("pm1", "pm25", "pm10")


def _cf1(atmospheric: float) -> float:
    return atmospheric if atmospheric <= 30 else 30 + (atmospheric - 30) * 1.5


def _count(n: float) -> float:
    return float(min(max(round(n), 0), 0xFFFF))
