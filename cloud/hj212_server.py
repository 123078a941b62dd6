"""HJ 212 ingest: an asyncio TCP server for legacy dust monitors and data loggers.

Each connection's bytes go through ``protocols.hj212.Hj212Stream`` (frames split or
coalesced by TCP, garbage skipped) and ``Hj212Reassembler`` (PNUM/PNO parts). A packet is
taken only from a registered logger: its ``MN`` must belong to a station of the registry
(``hj212_mn``) and its ``PW`` must match that station's ``hj212_pw`` (a station without a
password is refused while ``require_password`` is on); otherwise it is refused —
quarantined with the reason (class ``auth``), counted, and never answered.

Data uploads ``2011`` (real-time, field ``Rtd``), ``2051`` (minute, ``Avg``) and ``2061``
(hourly, ``Avg``) become readings of that station: factor codes map to quantities through
``protocols.hj212.FACTORS`` (an unknown code is kept under its own name), each factor's
data flag (``a34004-Flag=N``) is kept as ``q``, and PM and gas values arrive in the
platform's unit ``[hj212] units`` (``ug/m3`` or ``mg/m3``; stored as ug/m3). Readings
carry ``sensor = "hj212:<CN>"`` (fusion treats ``2061`` values as hourly means).
``DataTime`` is read as UTC, or as local time ``utc_offset_h`` hours ahead of UTC.

There is no gateway outbox behind these readings, so each gets a deterministic key: epoch
``hj212-<CN>-<factor>`` and id = ``DataTime`` in epoch seconds — a resent packet is a
no-op. The ``9014`` reply (when ``Flag`` asks for one) goes out only after the readings are
committed, so a logger that got no answer sends again and nothing is lost.

A value that is not a number (``a34004-Rtd=--`` from a logger whose channel failed) spoils
only itself: the packet's other values are stored and answered, and the bad one is left
out, counted (``bad_values``) and recorded in the quarantine (class ``value``) with the
packet. A frame that is broken as a whole (CRC, length, syntax) is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cloud.config import Hj212Config
from cloud.store import Store, StoreError
from cloud.store.types import Batch, PackRows, Quarantined, Station
from protocols import hj212
from protocols.telemetry import FLAGS, VALID_FLAGS

if TYPE_CHECKING:
    from cloud.service import Service

log = logging.getLogger(__name__)

DATA_FIELDS = {"2011": "Rtd", "2051": "Avg", "2061": "Avg"}
UG = "ug/m3"
MN_CACHE_S = 30.0


@dataclass
class Hj212Stats:
    connections: int = 0
    packets: int = 0
    readings: int = 0
    duplicates: int = 0
    replies: int = 0
    refused: int = 0
    bad_frames: int = 0
    ignored: int = 0  # packets of other CNs (heartbeats, replies, daily data)
    bad_values: int = 0  # fields that were not numbers, left out of packets otherwise kept
    by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "packets": self.packets,
            "readings": self.readings,
            "duplicates": self.duplicates,
            "replies": self.replies,
            "refused": self.refused,
            "bad_frames": self.bad_frames,
            "ignored": self.ignored,
            "bad_values": self.bad_values,
            "by_reason": dict(self.by_reason),
        }


class Refused(Exception):  # a verdict on a packet, not a failure of ours
    def __init__(self, reason: str, reason_class: str = "auth") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_class = reason_class


def packet_packs(
    packet: hj212.Packet, station: str, *, units: str, utc_offset_h: float = 0.0
) -> list[PackRows]:
    """The readings of a data packet (one per factor, each under its own epoch); [] for a
    packet of another CN."""
    field_name = DATA_FIELDS.get(packet.cn or "")
    if field_name is None:
        return []
    zone = UTC if not utc_offset_h else timezone(timedelta(hours=utc_offset_h))
    when = packet.data_time_in(zone)
    if when is None:
        raise Refused(f"a {packet.cn} data packet without DataTime", "hj212")
    ts = when.timestamp()
    packs = []
    for code, fields in sorted(packet.factors.items()):
        value = fields.get(field_name)
        if value is None and field_name == "Avg":
            value = fields.get("Rtd")
        if not isinstance(value, float):
            continue
        quantity, unit = hj212.FACTORS.get(code, (code, ""))
        if unit == UG and units == "mg/m3":
            value *= 1000.0
        flag = fields.get("Flag", "N")
        why = None
        if not isinstance(flag, str) or flag not in FLAGS:
            why, flag = f"HJ 212 flag {flag!r}", "D"
        elif flag not in VALID_FLAGS:
            why = f"HJ 212 flag {flag}"
        row = (int(ts), quantity, ts, value, value, unit, flag, "0", f"hj212:{packet.cn}", why)
        packs.append(PackRows(station=station, epoch=f"hj212-{packet.cn}-{code}", rows=[row]))
    return packs


class Hj212Server:
    """The TCP listener; ``handle`` serves one connection."""

    def __init__(
        self,
        store: Store,
        cfg: Hj212Config,
        *,
        clock: Callable[[], float] = time.time,
        utc_offset_h: float = 0.0,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.utc_offset_h = utc_offset_h
        self.stats = Hj212Stats()
        self._mn_cache: dict[str, tuple[float, Station | None]] = {}
        self._logged: set[str] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; return the bound port (``[hj212] listen`` may ask for port 0)."""
        self._server = await asyncio.start_server(self.handle, self.cfg.host, self.cfg.port)
        port = int(self._server.sockets[0].getsockname()[1])
        log.info("hj212: listening on %s:%d", self.cfg.host, port)
        return port

    async def close(self) -> None:
        """Stop listening and end the open connections."""
        if self._server is not None:
            self._server.close()  # no new connections
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            # after the handlers are gone: from Python 3.12 this waits for every connection
            await self._server.wait_closed()

    # -- one connection ---------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.stats.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        stream = hj212.Hj212Stream(bad_values="skip")  # one bad value spoils no packet
        parts = hj212.Hj212Reassembler()
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), self.cfg.idle_timeout_s)
                except TimeoutError:
                    log.info("hj212: %s idle for %.0f s; closing", where, self.cfg.idle_timeout_s)
                    break
                if not chunk:
                    break
                for item in stream.feed(chunk):
                    if isinstance(item, hj212.Hj212Error):
                        await self._bad_frame(item, where, chunk)
                        continue
                    whole = parts.add(item)
                    if whole is not None:
                        await self._packet(whole, where, writer)
        except (ConnectionError, OSError) as exc:
            log.info("hj212: %s: connection lost: %s", where, exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _bad_frame(self, exc: hj212.Hj212Error, where: str, chunk: bytes) -> None:
        self.stats.bad_frames += 1
        cls = "crc" if isinstance(exc, hj212.Hj212CrcError) else "hj212"
        await self._quarantine(where, str(exc), cls, chunk, None)

    async def _packet(self, packet: hj212.Packet, where: str, writer: asyncio.StreamWriter) -> None:
        self.stats.packets += 1
        payload = packet.segment.encode("utf-8", "replace")
        try:
            station = await self._authorise(packet)
            packs = packet_packs(
                packet, station.id, units=self.cfg.units, utc_offset_h=self.utc_offset_h
            )
        except Refused as exc:
            self.stats.refused += exc.reason_class == "auth"
            await self._quarantine(where, exc.reason, exc.reason_class, payload, packet.mn)
            return
        if packs:
            batch = Batch(packs=packs, received=self.clock())
            try:
                committed = await asyncio.to_thread(self.store.commit, batch)
            except StoreError as exc:
                log.warning(
                    "hj212: store unavailable (%s): %s gets no reply and resends", exc, where
                )
                return
            self.stats.readings += committed.new
            self.stats.duplicates += committed.duplicates
        else:
            self.stats.ignored += 1
        if packet.skipped:  # after the commit: a resend after a store failure is not doubled
            self.stats.bad_values += len(packet.skipped)
            sent = ", ".join(f"{c}-{f}={v[:20]!r}" for c, f, v in packet.skipped[:5])
            await self._quarantine(
                where,
                f"not a number, left out (the packet's other values are kept): {sent}",
                "value",
                payload,
                packet.mn,
            )
        if packet.needs_reply:
            self.stats.replies += 1
            writer.write(hj212.reply_9014(packet))
            await writer.drain()

    async def _authorise(self, packet: hj212.Packet) -> Station:
        if not packet.mn:
            raise Refused("packet without MN")
        now = time.monotonic()
        cached = self._mn_cache.get(packet.mn)
        if cached is None or now - cached[0] > MN_CACHE_S:
            station = await asyncio.to_thread(self.store.station_by_mn, packet.mn)
            self._mn_cache[packet.mn] = (now, station)
        else:
            station = cached[1]
        if station is None:
            raise Refused(f"MN {packet.mn} is not registered to any station")
        if station.hj212_pw is None:
            if self.cfg.require_password:
                raise Refused(f"station {station.id} has no HJ 212 password registered")
        elif packet.pw != station.hj212_pw:
            raise Refused(f"wrong password for MN {packet.mn} (station {station.id})")
        return station

    async def _quarantine(
        self, where: str, reason: str, cls: str, payload: bytes, mn: str | None
    ) -> None:
        self.stats.by_reason[cls] += 1
        if cls not in self._logged:
            self._logged.add(cls)
            log.warning(
                "hj212: refused from %s (%s): %s — further %r ones are counted, not logged",
                where,
                cls,
                reason,
                cls,
            )
        item = Quarantined(
            received=self.clock(),
            source="hj212",
            topic=f"hj212://{where}" + (f"/{mn}" if mn else ""),
            reason=reason,
            reason_class=cls,
            payload=payload[:4096],
            size=len(payload),
        )
        try:
            await asyncio.to_thread(
                self.store.commit, Batch(quarantine=[item], received=item.received)
            )
        except StoreError as exc:
            log.warning("hj212: cannot quarantine (%s): %s", exc, reason)

    def forget_registry(self) -> None:
        """Drop the MN cache (after the registry changed)."""
        self._mn_cache.clear()


class Hj212Part:
    """The server on its own thread and event loop, for ``cloud run``."""

    name = "hj212"

    def __init__(self, service: Service) -> None:
        self.server = Hj212Server(
            service.store,
            service.cfg.hj212,
            clock=service.clock,
            utc_offset_h=service.cfg.hj212.utc_offset_h,
        )
        self.stats = self.server.stats
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from cloud.service import ServiceError

        try:
            self.port = self._loop.run_until_complete(self.server.start())
        except OSError as exc:
            cfg = self.server.cfg
            raise ServiceError(
                f"hj212: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}"
            ) from None
        self._thread = threading.Thread(target=self._loop.run_forever, name="hj212", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self._loop)
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
