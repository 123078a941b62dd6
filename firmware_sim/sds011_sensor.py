"""A simulated Nova Fitness SDS011 on a virtual serial line.

Behaves as the Laser Dust Sensor Control Protocol V1.3 and protocols.md §3 describe:

- **Active reporting** (factory default): a 10-byte data frame ``AA C0 ... AB`` every second,
  or, with a working period of n minutes (command 8), one frame every n minutes (the real
  sensor sleeps in between and works 30 s before each report).
- **Query mode** (command 2): no frames of its own; command 4 gets one.
- **Sleep/work** (command 6): asleep it sends nothing and hears only command 6.
- **Set device id** (5), **firmware version** (7), **working period** (8), each answered
  with an ``AA C5`` reply, as the sensor sends them. Commands to another device id are
  ignored; ``FF FF`` addresses every sensor.
- Reporting mode, working period and device id are kept in flash and survive a reboot;
  sleep does not (the sensor wakes up working).

A reply leaves ``reply_delay_s`` real seconds after the command (real sensors take up to
about a second; in active mode a reply may come between data frames).
"""

from __future__ import annotations

import asyncio
import random

from firmware_sim.clock import Clock
from firmware_sim.loop import SimLoop
from firmware_sim.serial_sensor import SerialSensor
from firmware_sim.sources import SourceLike
from protocols import sds011 as codec

__all__ = ["Sds011Sensor"]

MAX_PM = 999.9  # ug/m3, the sensor's range


class Sds011Sensor(SerialSensor[codec.Command]):
    """An SDS011 writing to a pty; ``address`` is the gateway's end."""

    model = "sds011"
    checksum_at = -2

    def __init__(
        self,
        *,
        port: str | None = None,
        source: SourceLike = None,
        clock: Clock | None = None,
        loop: SimLoop | None = None,
        device_id: int | None = None,
        firmware: str = "18-11-16",
        reply_delay_s: float = 0.05,
        seed: int = 0,
        pty_backend: str = "auto",
        name: str = "",
    ) -> None:
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
        if device_id is None:
            device_id = random.Random(seed).randrange(1, 0xFFFF)
        self.device_id = device_id
        self.firmware = firmware
        self.reply_delay_s = reply_delay_s
        self.mode = "active"  # kept in flash
        self.period_min = 0  # kept in flash
        self.asleep = False
        self._changed = False
        self.commands: list[codec.Command] = []  # every command addressed to this sensor
        self.faults.on_reboot(lambda: self.loop.call(self._power_cycle))

    def _power_cycle(self) -> None:
        self.asleep = False
        self._changed = True

    # -- values -----------------------------------------------------------------------------

    def reading(self, quantity: str, t: float) -> float:
        """What the sensor shows for ``quantity`` at ``t`` (source, through the faults)."""
        value = self.values.get(quantity, t)
        if value is None:
            return 1.3 * self.reading("pm25", t) if quantity == "pm10" else 0.0
        return self.faults.value(quantity, t, value)

    def frame(self, t: float | None = None) -> bytes:
        """The data frame the sensor would send at ``t`` (now by default)."""
        t = self.clock.now() if t is None else t
        pm25, pm10 = (max(0.0, min(self.reading(q, t), MAX_PM)) for q in ("pm25", "pm10"))
        return codec.build_frame(pm25=pm25, pm10=pm10, device_id=self.device_id)

    # -- life cycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        self._changed = False
        await super().astart()

    async def _stream(self) -> None:
        while True:
            interval = 1.0 if self.period_min == 0 else 60.0 * self.period_min
            if self.mode == "active" and not self.asleep and not self.faults.down:
                self._send(self.frame())
            # sleep in steps of at most a second, so a new mode or period acts at once
            self._changed = False
            while interval > 0 and not self._changed:
                await self.clock.sleep(min(interval, 1.0))
                interval -= 1.0

    # -- commands ---------------------------------------------------------------------------

    def _heard(self, command: codec.Command) -> bool:
        return command.device_id in (codec.ALL_DEVICES, self.device_id)

    async def _command(self, cmd: codec.Command) -> None:
        if self.faults.dead or self.faults.down:
            return
        if self.asleep and cmd.name != "sleep_work":
            return
        self.commands.append(cmd)
        await asyncio.sleep(self.reply_delay_s + self.faults.delay())
        self._send(self._execute(cmd))
        self._changed = True  # a new mode or period takes effect now

    def _execute(self, cmd: codec.Command) -> bytes:
        name = cmd.name
        if name == "query_data":
            return self.frame()
        value: int | str
        if name == "reporting_mode":
            if cmd.set:
                self.mode = ("active", "query")[cmd.value]
            value = self.mode
        elif name == "sleep_work":
            if cmd.set:
                self.asleep = cmd.value == 0
            value = "sleep" if self.asleep else "work"
        elif name == "working_period":
            if cmd.set:
                self.period_min = cmd.value
            value = self.period_min
        elif name == "firmware":
            value = self.firmware
        else:  # device_id: the reply carries the new id
            self.device_id = cmd.value
            value = 0
        return codec.build_reply(cmd, value=value, device_id=self.device_id)
