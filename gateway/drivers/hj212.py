"""HJ 212-2017 as a source: a TCP listener that dust monitors connect to as clients.

A construction-site dust monitor (or any HJ 212 data logger) is configured with the
gateway's address as its platform. It connects, sends real-time (CN 2011), minute (2051)
or hourly (2061) data, and wants a 9014 data acknowledgement for every packet whose Flag
asks for one (A bit, e.g. ``Flag=5``). The ``Hj212Listener`` accepts any number of
monitors on one port, splits each connection's byte stream into packets (resynchronising
after garbage, joining PNUM/PNO parts), acknowledges, and queues data packets by MN for
the driver of the ``[[sensor]]`` that names that MN (``hj212_mn``; a sensor without one
takes the MNs no other sensor claims). A packet with the wrong password
(``hj212_password``) or an unclaimed MN is neither acknowledged nor kept; bad frames are
counted and logged once per connection, and the connection carries on.

The driver's ``read()`` turns the packets that arrived since the last poll into samples,
stamped with the gateway clock at arrival: ``-Rtd`` values of 2011 packets, ``-Avg`` of
2051/2061, through the profile's factor -> quantity map, each with its factor's HJ 212
flag. When nothing arrived it waits up to ``timeout_s``; a monitor silent for more than
two intervals (plus the timeout) is reported as ``DeviceTimeout``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.config import SensorConfig
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag, Sample
from gateway.profiles import Profile
from protocols import hj212
from protocols.errors import CodecError

__all__ = ["Hj212Driver", "Hj212Listener", "Received"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_QUEUED = 10_000  # packets per MN kept for the next poll; the oldest go first (counted)
IDLE_S = 900.0  # a connection silent this long is closed (monitors reconnect)
_FLAGS = {f.value: f for f in Flag}


@dataclass(frozen=True)
class Received:
    """A data packet and when it arrived (gateway clock)."""

    ts: float
    mono: float
    packet: hj212.Packet


@dataclass
class _Route:
    password: str | None
    queue: deque[Received]
    last: float | None = None  # monotonic of the last packet


class Hj212Listener:
    """The TCP server one or more monitors push to; thread safe."""

    def __init__(self, address: str, *, clock: Clock) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104
        self._clock = clock
        self._lock = threading.Condition()
        self._routes: dict[str | None, _Route] = {}
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()
        self.started_mono: float | None = None
        self.connections = 0
        self.packets = 0
        self.bad_frames = 0
        self.rejected = 0
        self.dropped = 0
        self._warned: set[str] = set()

    # -- routes ----------------------------------------------------------------------------

    def register(self, mn: str | None, password: str | None) -> None:
        """Keep packets of monitor ``mn`` (None: every MN nobody else claims)."""
        with self._lock:
            if mn in self._routes:
                raise DeviceError(f"two hj212 sensors on {self.host}:{self.port} claim MN {mn}")
            self._routes[mn] = _Route(password, deque())

    def take(self, mn: str | None) -> list[Received]:
        with self._lock:
            route = self._routes[mn]
            out = list(route.queue)
            route.queue.clear()
            return out

    def wait(self, mn: str | None, timeout: float) -> None:
        """Block until a packet for ``mn`` is queued or ``timeout`` (real seconds) passes."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._routes[mn].queue), timeout)

    def last_seen(self, mn: str | None) -> float | None:
        with self._lock:
            return self._routes[mn].last

    # -- serving ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and accept in a thread; idempotent. ``DeviceError`` if the port is taken."""
        with self._lock:
            if self._sock is not None:
                return
            try:
                sock = socket.create_server((self.host, self.port), reuse_port=False)
            except OSError as exc:
                raise DeviceError(
                    f"cannot listen for HJ 212 on {self.host}:{self.port}: {exc}", comm=True
                ) from None
            sock.settimeout(0.2)
            self._sock = sock
            self.port = sock.getsockname()[1]
            self.started_mono = self._clock.monotonic()
        t = threading.Thread(target=self._accept, name=f"hj212 :{self.port}", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                too_many = len(self._conns) >= MAX_CONNECTIONS
                if not too_many:
                    self._conns.add(conn)
                    self.connections += 1
            if too_many:
                log.warning("hj212 :%d: refusing %s, %d connections open", self.port, peer,
                            MAX_CONNECTIONS)  # fmt: skip
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn, peer), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        stream = hj212.Hj212Stream(bad_values="skip")  # one bad value spoils no packet
        parts = hj212.Hj212Reassembler()
        where = f"hj212 :{self.port} from {peer[0]}:{peer[1]}"
        conn.settimeout(0.5)
        idle_since = time.monotonic()
        logged_bad = False
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    if time.monotonic() - idle_since > IDLE_S:
                        return
                    continue
                if not data:
                    return
                idle_since = time.monotonic()
                for item in stream.feed(data):
                    if isinstance(item, CodecError):
                        with self._lock:
                            self.bad_frames += 1
                        if not logged_bad:
                            log.warning("%s: skipping a bad frame: %s", where, item)
                            logged_bad = True
                        continue
                    reply = self._packet(item, parts, where)
                    if reply:
                        conn.sendall(reply)
        except OSError as exc:
            log.info("%s: connection lost: %s", where, exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _packet(self, packet: hj212.Packet, parts: Any, where: str) -> bytes | None:
        """Route one packet; the reply to send, if any."""
        with self._lock:
            route = self._routes.get(packet.mn)
            if route is None:
                route = self._routes.get(None)
            if route is None or (route.password is not None and packet.pw != route.password):
                self.rejected += 1
                why = "unknown MN" if route is None else "wrong password"
                key = f"{why}:{packet.mn}"
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("%s: ignoring packets of MN %s: %s", where, packet.mn, why)
                return None
        reply = (
            hj212.reply_9014(packet) if packet.needs_reply and packet.cn in hj212.DATA_CN else None
        )
        try:
            whole = parts.add(packet) if packet.is_split else packet
        except CodecError as exc:
            with self._lock:
                self.bad_frames += 1
            log.warning("%s: %s", where, exc)
            return reply
        if whole is None or whole.cn not in hj212.DATA_CN:
            return reply
        received = Received(self._clock.now(), self._clock.monotonic(), whole)
        with self._lock:
            if len(route.queue) >= MAX_QUEUED:
                route.queue.popleft()
                self.dropped += 1
            route.queue.append(received)
            route.last = received.mono
            self.packets += 1
            self._lock.notify_all()
        return reply

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sock, self._sock = self._sock, None
            conns = list(self._conns)
        if sock is not None:
            sock.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)
        self._threads.clear()


class Hj212Driver:
    """One monitor (by MN) behind an ``Hj212Listener``."""

    def __init__(
        self,
        sensor: SensorConfig,
        profile: Profile,
        *,
        clock: Clock,
        listener: Hj212Listener | None = None,
    ) -> None:
        if profile.protocol != "hj212":
            raise ValueError(f"profile {profile.name!r} is not an hj212 profile")
        self.sensor = sensor
        self.profile = profile
        self._clock = clock
        self._owns = listener is None
        self.listener = listener or Hj212Listener(sensor.address, clock=clock)
        self.listener.register(sensor.hj212_mn, sensor.hj212_password)
        self.last_packets: list[Received] = []  # what the last read() turned into samples

    @property
    def name(self) -> str:
        return self.sensor.name

    def read(self) -> list[Sample]:
        s = self.sensor
        self.listener.start()
        got = self.listener.take(s.hj212_mn)
        if not got:
            self.listener.wait(s.hj212_mn, s.timeout_s)
            got = self.listener.take(s.hj212_mn)
        if not got:
            mono = self._clock.monotonic()
            since = self.listener.last_seen(s.hj212_mn)
            if since is None:
                since = mono if self.listener.started_mono is None else self.listener.started_mono
            if mono - since > 2 * s.interval_s + s.timeout_s:
                who = f"MN {s.hj212_mn}" if s.hj212_mn else "any monitor"
                raise DeviceTimeout(
                    f"{s.name}: no HJ 212 data from {who} on port {self.listener.port} "
                    f"for {mono - since:.0f} s", device=s.name,
                )  # fmt: skip
            return []
        self.last_packets = got
        samples: list[Sample] = []
        for r in got:
            samples.extend(self._samples(r))
        return samples

    def _samples(self, r: Received) -> list[Sample]:
        field_name = "Rtd" if r.packet.cn == "2011" else "Avg"
        factors = r.packet.factors
        out = []
        for f in self.profile.fields:
            factor = factors.get(f.field)
            if factor is None:
                continue  # a packet may carry a subset of the monitor's factors
            raw = factor.get(field_name)
            sent = next(
                (v for c, n, v in r.packet.skipped if c == f.field and n == field_name), None
            )
            letter = factor.get("Flag")
            flag = _FLAGS.get(letter, Flag.FAULT) if isinstance(letter, str) else Flag.NORMAL
            why = None if flag is Flag.NORMAL else f"the monitor flags {f.field} {letter!r}"
            if not isinstance(raw, float):
                why = (
                    f"{self.sensor.name}: {f.field} carries no {field_name} value"
                    if sent is None
                    else f"{self.sensor.name}: {f.field}-{field_name}={sent[:20]!r} is not a number"
                )
                flag = flag if not flag.valid else Flag.FAULT
                out.append(Sample(self.name, f.quantity, f.unit, None, r.ts, flag, why))
                continue
            out.append(Sample(self.name, f.quantity, f.unit, f.value(raw), r.ts, flag, why))
        return out

    def close(self) -> None:
        if self._owns:
            self.listener.close()
