"""Faults on demand: what a simulated device does wrong, switchable while it runs.

Every simulated device (each unit id of a Modbus bus, each serial sensor, each HJ 212
monitor) owns one ``Faults``. A test, the demo or a CLI flag switches faults on and off at
run time; the device consults it on every request, frame or packet:

==========================  ===============================================================
``kill()`` / ``revive()``   a dead device: no answer, no frame, no packet
``slow(delay_s)``           answers arrive ``delay_s`` real seconds late
``corrupt_crc(rate)``       that share of frames leave with a wrong CRC/checksum
``garbage(n, where)``       ``n`` noise bytes on the line after (or before) each frame
``stick(q, value)``         quantity ``q`` (``"*"``: all) frozen at ``value`` (default: the
                            first value it shows once the fault is on)
``drift(q, per_hour)``      ``q`` drifts by ``per_hour`` engineering units per simulated hour
``dropout(rate)``           that share of requests/frames/packets silently lost
``reboot(down_s)``          silent for ``down_s`` simulated seconds, then back with fresh
                            state (modes, coils, connections, counters reset)
``skew(seconds)``           the device's own clock is off (HJ 212 DataTime and QN)
``clear()``                 all of the above off
==========================  ===============================================================

``events`` counts what the faults made happen (``silent``, ``dropped``, ``crc``,
``garbage``, ``delayed``, ``reboots``), so a test can check the device really misbehaved.
Random choices come from a seeded generator: a run is reproducible.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable

from firmware_sim.clock import Clock

__all__ = ["Faults", "flip_byte"]

WHERE = ("after", "before")


def flip_byte(index: int) -> Callable[[bytes], bytes]:
    """A corrupter that inverts the byte at ``index`` (e.g. -1: the CRC's high byte in RTU)."""

    def corrupt(frame: bytes) -> bytes:
        b = bytearray(frame)
        b[index] ^= 0xFF
        return bytes(b)

    return corrupt


class Faults:
    """The faults one device shows; see the module docstring. Thread safe."""

    def __init__(self, clock: Clock, *, seed: int | None = 0) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self.events: Counter[str] = Counter()
        self.boots = 1
        self._reset()

    def _reset(self) -> None:
        self.dead = False
        self.delay_s = 0.0
        self.crc_rate = 0.0
        self.garbage_bytes = 0
        self.garbage_where = "after"
        self.dropout_rate = 0.0
        self.skew_s = 0.0
        self._stuck: dict[str, float | None] = {}
        self._frozen: dict[str, float] = {}  # under stick("*"): each quantity's frozen value
        self._drift: dict[str, tuple[float, float]] = {}
        self._down_until: float | None = None

    # -- switches ---------------------------------------------------------------------------

    def kill(self) -> None:
        """The device stops answering (a dead unit id, an unplugged sensor)."""
        self.dead = True

    def revive(self) -> None:
        self.dead = False

    def slow(self, delay_s: float) -> None:
        """Answer ``delay_s`` real seconds late (0: on time)."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.delay_s = float(delay_s)

    def corrupt_crc(self, rate: float = 1.0) -> None:
        """Send that share of frames (0..1) with a wrong CRC or checksum."""
        self.crc_rate = _rate(rate)

    def garbage(self, nbytes: int = 8, where: str = "after") -> None:
        """Put ``nbytes`` random noise bytes on the line with every frame: ``after`` it (noise
        on the idle line between frames) or ``before`` it (noise glued to the frame's start)."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        if where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}")
        self.garbage_bytes = int(nbytes)
        self.garbage_where = where

    def stick(self, quantity: str = "*", value: float | None = None) -> None:
        """Freeze ``quantity`` (``"*"``: every quantity) at ``value``, or at the value the
        device shows next when ``value`` is None."""
        with self._lock:
            self._stuck[quantity] = value
            if quantity == "*":
                self._frozen.clear()

    def unstick(self, quantity: str | None = None) -> None:
        with self._lock:
            if quantity is None:
                self._stuck.clear()
            else:
                self._stuck.pop(quantity, None)
            if quantity in (None, "*"):
                self._frozen.clear()

    def drift(self, quantity: str, per_hour: float) -> None:
        """From now on ``quantity`` (``"*"``: every one) reads ``per_hour`` engineering units
        higher per simulated hour (negative: lower); 0 ends the drift."""
        with self._lock:
            if per_hour == 0:
                self._drift.pop(quantity, None)
            else:
                self._drift[quantity] = (float(per_hour), self._clock.now())

    def dropout(self, rate: float) -> None:
        """Silently lose that share (0..1) of requests, frames or packets."""
        self.dropout_rate = _rate(rate)

    def skew(self, seconds: float) -> None:
        """The device's own clock runs ``seconds`` ahead (negative: behind)."""
        self.skew_s = float(seconds)

    def reboot(self, down_s: float = 5.0) -> None:
        """Power-cycle: silent for ``down_s`` simulated seconds, then back with fresh state."""
        if down_s < 0:
            raise ValueError("down_s must be >= 0")
        with self._lock:
            self._down_until = self._clock.now() + down_s
            self.boots += 1
            hooks = list(self._hooks)
        self.events["reboots"] += 1
        for hook in hooks:
            hook()

    def on_reboot(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (from the caller's thread) when a reboot starts: the device drops its
        volatile state there."""
        self._hooks.append(hook)

    def clear(self) -> None:
        """Every fault off (a reboot in progress ends too)."""
        with self._lock:
            self._reset()

    # -- what devices ask -------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """True while rebooting."""
        until = self._down_until
        if until is None:
            return False
        if self._clock.now() >= until:
            self._down_until = None
            return False
        return True

    def answers(self) -> bool:
        """Whether the device answers this request (or sends this frame) at all; counts
        the reason when it does not."""
        if self.dead or self.down:
            self.events["silent"] += 1
            return False
        if self.dropout_rate and self._draw() < self.dropout_rate:
            self.events["dropped"] += 1
            return False
        return True

    def delay(self) -> float:
        """Real seconds to hold the answer back."""
        if self.delay_s:
            self.events["delayed"] += 1
        return self.delay_s

    def value(self, quantity: str, t: float, value: float) -> float:
        """The value the device shows for ``quantity`` at ``t``, given the true ``value``."""
        with self._lock:
            for key in (quantity, "*"):
                if key in self._drift:
                    per_hour, since = self._drift[key]
                    value += per_hour * (t - since) / 3600.0
                    break
            if quantity in self._stuck:
                frozen = self._stuck[quantity]
                if frozen is None:
                    frozen = self._stuck[quantity] = value
                return frozen
            if "*" in self._stuck:
                all_value = self._stuck["*"]
                if all_value is not None:
                    return all_value
                return self._frozen.setdefault(quantity, value)
        return value

    def time(self, t: float) -> float:
        """What the device's own clock says when the true time is ``t``."""
        return t + self.skew_s

    def frame(self, frame: bytes, corrupt: Callable[[bytes], bytes]) -> bytes:
        """The bytes that go on the line for ``frame``: with a broken check (``corrupt``
        breaks it the device's way) and noise, as switched on."""
        if self.crc_rate and self._draw() < self.crc_rate:
            frame = corrupt(frame)
            self.events["crc"] += 1
        if self.garbage_bytes:
            noise = self.noise(self.garbage_bytes)
            frame = frame + noise if self.garbage_where == "after" else noise + frame
            self.events["garbage"] += 1
        return frame

    def noise(self, n: int) -> bytes:
        """``n`` random bytes (seeded)."""
        with self._lock:
            return bytes(self._rng.randrange(256) for _ in range(n))

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def __repr__(self) -> str:
        on = [
            name
            for name, flag in (
                ("dead", self.dead),
                (f"slow={self.delay_s}", self.delay_s),
                (f"crc={self.crc_rate}", self.crc_rate),
                (f"garbage={self.garbage_bytes}", self.garbage_bytes),
                (f"dropout={self.dropout_rate}", self.dropout_rate),
                (f"skew={self.skew_s}", self.skew_s),
                (f"stuck={sorted(self._stuck)}", self._stuck),
                (f"drift={sorted(self._drift)}", self._drift),
            )
            if flag
        ]
        return f"Faults({', '.join(on) or 'none'})"


def _rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a rate is 0..1, got {rate!r}")
    return float(rate)
