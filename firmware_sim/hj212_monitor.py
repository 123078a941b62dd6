"""A simulated HJ 212-2017 dust monitor (data logger): a TCP client reporting to a platform.

Like a construction-site dust monitor's data logger (数采仪) it connects to the platform
(``host:port``: a gateway's hj212-tcp listener or the central service) and sends, with
``Flag=5`` (HJ 212-2017, reply requested):

- ``CN=2011`` real-time data (``-Rtd``) every ``rtd_interval_s`` simulated seconds;
- ``CN=2051`` minute data (``-Min/-Avg/-Max``) at the end of each ``minute_interval_min``
  window, ``DataTime`` = the window's start;
- ``CN=2061`` hourly data, likewise for each hour.

Like a logger it samples every quantity every ``sample_s`` simulated seconds and makes the
window statistics from those samples (a window it slept through, when the clock jumps, is
filled with readings spread over it).

For each packet it waits up to ``timeout_s`` (real seconds: a network wait) for the
platform's ``CN=9014`` with the same QN, resends the same frame up to ``retries`` times,
then gives it up, as loggers do with ``OverTime``/``ReCount``. Packets made while the
platform is away wait in a bounded buffer; the logger reconnects with backoff. ``ST`` (39
construction dust or 22 air quality), ``MN``, ``PW`` and the particulate unit (ug/m3 or
mg/m3) are configurable; air pressure goes out in kPa. ``DataTime`` and ``QN`` are the
logger's own clock: simulated time plus ``utc_offset_h`` (Chinese loggers send Beijing
time; airtrace's default is UTC) plus the clock-skew fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from firmware_sim.clock import Clock, as_clock
from firmware_sim.device import Device
from firmware_sim.faults import Faults
from firmware_sim.loop import SimLoop
from firmware_sim.sources import SourceLike, Values
from protocols import hj212

__all__ = ["DUST_QUANTITIES", "Hj212Monitor"]

log = logging.getLogger(__name__)

#: what a construction-site dust monitor reports (protocols.md vector H5)
DUST_QUANTITIES = (
    "tsp",
    "pm10",
    "pm25",
    "noise",
    "temp",
    "rh",
    "pressure",
    "wind_speed",
    "wind_dir",
)
_PM = frozenset({"tsp", "pm10", "pm25", "pm1"})
UNITS = ("ug/m3", "mg/m3")
CLOSE_WAIT_S = 1.0  # how long a closing connection may take to flush before it is cut


@dataclass
class _Outgoing:
    qn: str
    cn: str
    frame: bytes
    attempts: int = 0


class Hj212Monitor(Device):
    """A dust monitor sending HJ 212-2017 packets to ``host:port``."""

    transport = "hj212-tcp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mn: str = "AIRTRACE0000000000000001",
        pw: str = "123456",
        st: str = "39",
        units: str = "ug/m3",
        quantities: Sequence[str] = DUST_QUANTITIES,
        rtd_interval_s: float = 30.0,
        sample_s: float = 10.0,
        minute_interval_min: int = 1,
        hourly: bool = True,
        flag: int = 5,
        timeout_s: float = 5.0,
        retries: int = 3,
        reconnect_s: tuple[float, float] = (0.2, 10.0),
        buffer: int = 1000,
        utc_offset_h: float = 0.0,
        source: SourceLike = None,
        clock: Clock | None = None,
        loop: SimLoop | None = None,
        seed: int = 0,
        name: str = "",
    ) -> None:
        super().__init__(loop=loop, name=name)
        if st not in ("39", "22"):
            raise ValueError(f"st must be '39' (construction dust) or '22' (air quality): {st!r}")
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {units!r}")
        for q in quantities:
            if q not in hj212.FACTOR_FOR_QUANTITY:
                raise ValueError(f"no HJ 212 factor code for quantity {q!r}")
        self.host, self.port = host, port
        self.mn, self.pw, self.st, self.units = mn, pw, st, units
        self.quantities = tuple(quantities)
        self.rtd_interval_s = rtd_interval_s
        if not sample_s > 0:
            raise ValueError(f"sample_s must be > 0, got {sample_s!r}")
        self.sample_s = sample_s
        self.minute_interval_min = minute_interval_min
        self.hourly = hourly
        self.flag = flag
        self.timeout_s = timeout_s
        self.retries = retries
        self.reconnect_s = reconnect_s
        self.buffer = buffer
        self.utc_offset_h = utc_offset_h
        self.clock = as_clock(clock)
        self.values = Values(source)
        self.faults = Faults(self.clock, seed=seed)
        self._rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.acked: list[str] = []  # QNs the platform acknowledged, in order
        self._queue: deque[_Outgoing] = deque()
        self._current: _Outgoing | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queued = asyncio.Event()
        self._last_qn = ""
        self._samples: dict[tuple[str, float], dict[str, list[float]]] = {}
        self.faults.on_reboot(lambda: self.loop.call(self._power_cut))

    @property
    def address(self) -> str:
        """The platform this monitor reports to (the gateway's hj212-tcp listen address)."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def pending(self) -> int:
        """Packets not yet acknowledged or given up."""
        return len(self._queue) + (self._current is not None)

    # -- packets ----------------------------------------------------------------------------

    def reading(self, quantity: str, t: float) -> float:
        """What the monitor measures for ``quantity`` at ``t`` (source, through the faults)."""
        return self.faults.value(quantity, t, self.values(quantity, t))

    def _wire(self, quantity: str, value: float) -> float:
        """A value in the packet's unit and resolution."""
        if quantity in _PM:
            return round(value / 1000.0, 3) if self.units == "mg/m3" else round(value, 1)
        if quantity == "pressure":
            return round(value / 10.0, 2)  # hPa -> kPa
        if quantity == "wind_dir":
            return float(round(value) % 360)
        return round(value, 1)

    def _stamp(self, t: float, ms: bool = False) -> str:
        local = self.faults.time(t) + self.utc_offset_h * 3600.0
        dt = datetime.fromtimestamp(local, UTC)
        text = dt.strftime("%Y%m%d%H%M%S")
        return text + f"{dt.microsecond // 1000:03d}" if ms else text

    def _next_qn(self, t: float) -> str:
        qn = self._stamp(t, ms=True)
        if qn <= self._last_qn:  # two packets in one millisecond: QNs stay unique
            qn = str(int(self._last_qn) + 1)
        self._last_qn = qn
        return qn

    def packet(self, cn: str, t: float, t0: float | None = None) -> bytes:
        """The frame for real-time data at ``t`` (``cn`` 2011) or for the window
        [``t0``, ``t``) (2051, 2061): its min/avg/max over the samples the logger took in
        the window, or, where it took none (time jumped), over readings spread across it."""
        return self._build(cn, t, t0).frame

    def _build(self, cn: str, t: float, t0: float | None = None) -> _Outgoing:
        cp: dict[str, object] = {}
        if cn == "2011":
            cp["DataTime"] = self._stamp(t)
            for q in self.quantities:
                value = self.reading(q, t)
                if math.isfinite(value):
                    cp[hj212.FACTOR_FOR_QUANTITY[q]] = {"Rtd": self._wire(q, value), "Flag": "N"}
        else:
            if t0 is None:
                raise ValueError("a window packet needs t0")
            taken = self._samples.pop((cn, t0), {})
            step = self.sample_s if cn == "2051" else 60.0
            n = max(1, round((t - t0) / step))
            times = [t0 + (k + 0.5) * (t - t0) / n for k in range(n)]
            cp["DataTime"] = self._stamp(t0)
            for q in self.quantities:
                samples = taken.get(q) or [self.reading(q, x) for x in times]
                samples = [v for v in samples if math.isfinite(v)]
                if not samples:
                    continue
                avg = sum(samples) / len(samples)
                if q == "wind_dir":
                    avg = _circular_mean(samples)
                cp[hj212.FACTOR_FOR_QUANTITY[q]] = {
                    "Min": self._wire(q, min(samples)),
                    "Avg": self._wire(q, avg),
                    "Max": self._wire(q, max(samples)),
                    "Flag": "N",
                }
        qn = self._next_qn(t)
        frame = hj212.build(self.st, cn, self.pw, self.mn, cp, qn=qn, flag=self.flag)
        return _Outgoing(qn, cn, frame)

    def _sample(self, t: float) -> None:
        """Take one reading of every quantity into the open minute and hour windows."""
        minute = 60.0 * self.minute_interval_min
        windows = []
        if minute > 0:
            windows.append(("2051", math.floor(t / minute) * minute))
        if self.hourly:
            windows.append(("2061", math.floor(t / 3600.0) * 3600.0))
        values = {q: self.reading(q, t) for q in self.quantities}
        self.stats["samples"] += 1
        for window in windows:
            acc = self._samples.setdefault(window, {})
            for q, v in values.items():
                acc.setdefault(q, []).append(v)

    def _enqueue(self, out: _Outgoing) -> None:
        self._queue.append(out)
        self.stats["produced"] += 1
        while len(self._queue) > self.buffer:
            self._queue.popleft()
            self.stats["overflow"] += 1
        self._queued.set()

    # -- life cycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        self._queued = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._produce(), name=f"hj212 produce {self.mn}"),
            asyncio.create_task(self._send_loop(), name=f"hj212 send {self.mn}"),
        ]
        self.running = True

    async def astop(self) -> None:
        self.running = False
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []
        await self._disconnect()

    def _power_cut(self) -> None:
        """Reboot: the connection drops, the buffer and the unsent packet are lost."""
        self._queue.clear()
        self._current = None
        self._last_qn = ""
        self._samples.clear()
        asyncio.get_running_loop().create_task(self._disconnect())

    # -- producing --------------------------------------------------------------------------

    async def _produce(self) -> None:
        now = self.clock.now()
        minute = 60.0 * self.minute_interval_min
        next_rtd = next_sample = now
        next_min = (math.floor(now / minute) + 1) * minute if minute > 0 else math.inf
        next_hour = (math.floor(now / 3600.0) + 1) * 3600.0 if self.hourly else math.inf
        while True:
            now = self.clock.now()
            quiet = self.faults.dead or self.faults.down
            # every window that ended, even after a jump in time; a window without samples
            # is computed from readings spread over it (costly): the loop's other devices,
            # and a stop, get their turn between two of them
            while now >= next_min:
                if not quiet:
                    self._enqueue(self._build("2051", next_min, next_min - minute))
                    await asyncio.sleep(0)
                next_min += minute
            while now >= next_hour:
                if not quiet:
                    self._enqueue(self._build("2061", next_hour, next_hour - 3600.0))
                    await asyncio.sleep(0)
                next_hour += 3600.0
            if now >= next_sample:
                if not quiet:
                    self._sample(now)
                next_sample = _next(next_sample, now, self.sample_s)
            if now >= next_rtd:
                if not quiet and self.rtd_interval_s > 0:
                    self._enqueue(self._build("2011", now))
                next_rtd = _next(next_rtd, now, self.rtd_interval_s)
            wake = min(next_rtd, next_sample, next_min, next_hour)
            await self.clock.sleep(max(0.0, wake - now))

    # -- sending ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        backoff = self.reconnect_s[0]
        while True:
            if self.faults.dead or self.faults.down:
                await self._disconnect()
                await asyncio.sleep(0.05)
                continue
            if self._writer is None:
                try:
                    await self._connect()
                    backoff = self.reconnect_s[0]
                except OSError as exc:
                    self.stats["connect_failures"] += 1
                    log.debug("%s: cannot connect to %s: %s", self, self.address, exc)
                    await asyncio.sleep(backoff * (0.5 + self._rng.random()))
                    backoff = min(backoff * 2, self.reconnect_s[1])
                    continue
            if self._current is None:
                if not self._queue:
                    self._queued.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await self._queued.wait()
                    continue
                self._current = self._queue.popleft()
            await self._deliver(self._current)

    async def _deliver(self, out: _Outgoing) -> None:
        if out.attempts > self.retries:
            self.stats["given_up"] += 1
            log.debug("%s: gave up on QN=%s after %d tries", self, out.qn, out.attempts)
            self._current = None
            return
        out.attempts += 1
        if out.attempts > 1:
            self.stats["resent"] += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[out.qn] = future
        try:
            if not await self._write(out.frame):
                out.attempts -= 1  # the line broke: not a try, the logger reconnects
                return
            if not self.flag & 1:  # no reply requested
                self._current = None
                return
            try:
                async with asyncio.timeout(self.timeout_s):
                    await future
            except TimeoutError:
                self.stats["timeouts"] += 1
                return
            except ConnectionError:
                out.attempts -= 1
                return
            self.stats["acked"] += 1
            self.acked.append(out.qn)
            if self._current is out:
                self._current = None
        finally:
            self._waiting.pop(out.qn, None)

    async def _write(self, frame: bytes) -> bool:
        writer = self._writer
        if writer is None:
            return False
        delay = self.faults.delay()
        if delay:
            await asyncio.sleep(delay)
        if not self.faults.answers():
            return True  # lost on the way: the platform never sees it
        data = self.faults.frame(frame, _break_crc)
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError):
            await self._disconnect()
            return False
        self.stats["sent"] += 1
        return True

    async def _connect(self) -> None:
        async with asyncio.timeout(self.timeout_s):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        self._reader, self._writer = reader, writer
        self.stats["connects"] += 1
        self._read_task = asyncio.create_task(self._read(reader), name=f"hj212 read {self.mn}")
        log.debug("%s connected to %s", self, self.address)

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        task, self._read_task = self._read_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        if writer is not None:
            self.stats["disconnects"] += 1
            writer.close()
            try:  # a peer that reads nothing would keep unsent bytes, and us, forever
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except Exception as exc:  # the connection is gone either way
                log.debug("%s: closing the connection: %s", self, exc)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        stream = hj212.Hj212Stream()
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                for item in stream.feed(chunk):
                    if isinstance(item, hj212.Hj212Error):
                        self.stats["bad_replies"] += 1
                        continue
                    self._on_packet(item)
        except (ConnectionError, OSError):
            pass
        if self._reader is reader:
            await self._disconnect()

    def _on_packet(self, packet: hj212.Packet) -> None:
        if packet.cn != "9014":
            self.stats["ignored_commands"] += 1
            return
        future = self._waiting.get(packet.qn or "")
        if future is None or future.done():
            self.stats["late_acks"] += 1
            return
        future.set_result(None)


def _next(due: float, now: float, step: float) -> float:
    """The next due time after ``now`` on the grid ``due + k * step`` (inf: never)."""
    if step <= 0:
        return math.inf
    return due + step * max(1, math.floor((now - due) / step) + 1)


def _break_crc(frame: bytes) -> bytes:
    """Another CRC in place of the right one (the 4 hex digits before CR LF)."""
    end = len(frame) - 2 if frame.endswith(b"\r\n") else len(frame)
    crc = int(frame[end - 4 : end], 16) ^ 0x5A5A
    return frame[: end - 4] + b"%04X" % crc + frame[end:]


def _circular_mean(degrees: Sequence[float]) -> float:
    s = sum(math.sin(math.radians(d)) for d in degrees)
    c = sum(math.cos(math.radians(d)) for d in degrees)
    return math.degrees(math.atan2(s, c)) % 360.0
