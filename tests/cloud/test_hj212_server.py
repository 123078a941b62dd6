"""The HJ 212 TCP server against real sockets: split and coalesced frames, 9014 replies,
MN/PW checks, idempotent keys, flags and platform units."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud.config import Hj212Config
from cloud.fusion import Fusion
from cloud.hj212_server import Hj212Server
from cloud.store import Store, open_store
from cloud.store.types import Station
from protocols import hj212

MN, PW = "88888880000001", "123456"
DATA_TIME = "20260528202600"  # 2026-05-28T20:26:00Z
TS = 1_780_000_000.0 - 40


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/h.db") as s:
        s.put_station(
            Station(
                "DUST-1",
                kind="dust",
                status="confirmed",
                lat=34.8,
                lon=113.5,
                hj212_mn=MN,
                hj212_pw=PW,
            )
        )
        s.put_station(Station("DUST-2", kind="dust", status="confirmed", hj212_mn="88888880000002"))
        yield s


def frame(
    cn: str = "2011",
    *,
    pw: str = PW,
    mn: str = MN,
    flag: int = 5,
    cp: dict | None = None,
    when: str = DATA_TIME,
) -> bytes:
    cp = cp or {
        "a34002": {"Rtd": 81.5, "Flag": "N"},
        "a34004": {"Rtd": 35.2, "Flag": "D"},
        "a01001": {"Rtd": 21.0, "Flag": "N"},
    }
    field = "Rtd" if cn == "2011" else "Avg"
    body = {
        "DataTime": when,
        **{k: {(field if f == "Rtd" else f): v for f, v in d.items()} for k, d in cp.items()},
    }
    return hj212.build("22", cn, pw, mn, body, qn=when + "123", flag=flag)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *chunks: bytes) -> None:
        for c in chunks:
            self.writer.write(c)
            await self.writer.drain()

    async def replies(self, n: int, timeout: float = 10.0) -> list[hj212.Packet]:
        stream, got = hj212.Hj212Stream(), []
        async with asyncio.timeout(timeout):
            while len(got) < n:
                got += [
                    p
                    for p in stream.feed(await self.reader.read(4096))
                    if isinstance(p, hj212.Packet)
                ]
        return got

    async def silence(self, seconds: float = 0.3) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.read(4096), seconds)
        except TimeoutError:
            return b""


async def served(store: Store, **cfg: object) -> AsyncIterator[tuple[Hj212Server, Client]]:
    server = Hj212Server(store, Hj212Config(enabled=True, host="127.0.0.1", port=0, **cfg))  # type: ignore[arg-type]
    port = await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield server, Client(reader, writer)
    finally:
        writer.close()
        await server.close()


def run(store: Store, scenario, **cfg: object) -> Hj212Server:
    async def main() -> Hj212Server:
        async for server, client in served(store, **cfg):
            await scenario(server, client)
            return server
        raise AssertionError("unreachable")

    return asyncio.run(main())


async def until(cond, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def test_a_data_packet_is_stored_then_answered_with_9014(store: Store) -> None:
    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(frame())
        (reply,) = await client.replies(1)
        assert (reply.cn, reply.st, reply.mn, reply.qn) == ("9014", "91", MN, DATA_TIME + "123")

    server = run(store, scenario, units="ug/m3")
    rows = {r.quantity: r for r in store.iter_readings(station="DUST-1")}
    assert set(rows) == {"pm10", "pm25", "temp"}
    pm25 = rows["pm25"]
    assert (pm25.value, pm25.raw, pm25.unit, pm25.q, pm25.sensor) == (
        35.2,
        35.2,
        "ug/m3",
        "D",
        "hj212:2011",
    )
    assert (pm25.epoch, pm25.id, pm25.ts) == ("hj212-2011-a34004", int(TS), TS)
    assert rows["temp"].unit == "Cel"
    assert server.stats.replies == 1


def test_split_and_coalesced_frames_and_a_resend_changes_nothing(store: Store) -> None:
    a = frame()
    b = frame(when="20260528202700")

    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(a + b)  # two frames in one segment
        await client.replies(2)
        for i in range(0, len(a), 7):  # the first again, in 7-byte pieces
            await client.send(a[i : i + 7])
        await client.replies(1)

    server = run(store, scenario)
    assert store.reading_count("DUST-1") == 6
    assert (server.stats.readings, server.stats.duplicates, server.stats.replies) == (6, 3, 3)


def test_mg_per_m3_platforms_are_converted(store: Store) -> None:
    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(frame(cp={"a34002": {"Rtd": 0.081, "Flag": "N"}}))
        await client.replies(1)

    run(store, scenario, units="mg/m3")
    (r,) = store.iter_readings(station="DUST-1")
    assert (r.value, r.unit) == (pytest.approx(81.0), "ug/m3")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"pw": "wrong!"}, "wrong password"),
        ({"mn": "99999999999999"}, "not registered"),
        ({"mn": "88888880000002"}, "no HJ 212 password registered"),
    ],
)
def test_refused_packets_get_no_answer_and_are_quarantined(
    store: Store, kw: dict, says: str
) -> None:
    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(frame(**kw))
        assert await client.silence() == b""
        await client.send(frame())  # the connection still serves good packets
        await client.replies(1)

    server = run(store, scenario)
    assert server.stats.refused == 1
    (q,) = store.quarantine_entries()
    assert (q.reason_class, q.source) == ("auth", "hj212")
    assert says in q.reason
    assert store.reading_count() == 3


def test_a_bad_crc_is_quarantined_and_the_stream_goes_on(store: Store) -> None:
    good = frame()
    bad = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"1111") + b"\r\n"

    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(bad + b"garbage" + good)
        await client.replies(1)
        await until(lambda: store.quarantine_counts().get("crc") == 1)

    server = run(store, scenario)
    assert server.stats.bad_frames >= 1
    assert store.reading_count("DUST-1") == 3


def test_a_value_that_is_not_a_number_spoils_only_itself(store: Store) -> None:
    """A logger whose one channel sends ``--``: the packet's other values are stored and
    answered; the bad one is left out, counted and kept in the quarantine with the packet."""
    seg = hj212.parse(frame()).segment.encode().replace(b"a34004-Rtd=35.2", b"a34004-Rtd=--")
    bad = b"##%04d%s%04X\r\n" % (len(seg), seg, hj212.crc16(seg))

    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(bad)
        (reply,) = await client.replies(1)
        assert reply.cn == "9014"

    server = run(store, scenario)
    assert {r.quantity for r in store.iter_readings(station="DUST-1")} == {"pm10", "temp"}
    assert server.stats.bad_values == 1 and server.stats.as_dict()["bad_values"] == 1
    (q,) = store.quarantine_entries()
    assert (q.reason_class, q.source) == ("value", "hj212")
    assert "a34004-Rtd='--'" in q.reason and "other values are kept" in q.reason


def test_long_messages_in_parts_and_hourly_data(store: Store) -> None:
    cp = {
        "DataTime": "20260528200000",
        **{f"a34{i:03d}": {"Avg": float(i), "Flag": "N"} for i in (1, 2, 4, 5)},
    }
    parts = hj212.build_split(
        "22", "2061", PW, MN, cp, qn="20260528200000000", flag=5, max_segment=200
    )
    assert len(parts) > 1

    async def scenario(server: Hj212Server, client: Client) -> None:
        await client.send(*parts)
        await client.replies(1)

    run(store, scenario)
    assert {r.quantity for r in store.iter_readings(station="DUST-1")} == {
        "tsp",
        "pm10",
        "pm25",
        "pm1",
    }
    hour = Fusion(store).hourly("DUST-1", "pm10", 1_780_000_000.0 - 1_780_000_000.0 % 3600)
    assert hour is not None
    assert (hour.valid, hour.value) == (True, 2.0)


def test_cloud_run_serves_hj212_as_a_part(tmp_path: Path) -> None:
    import socket

    from cloud.config import parse_config
    from cloud.service import Service

    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        '[fusion]\nenabled = false\n[hj212]\nlisten = "127.0.0.1:0"\n'
    )
    service = Service(cfg)
    service.store.put_station(Station("D9", kind="dust", hj212_mn=MN, hj212_pw=PW))
    service.start()
    try:
        (part,) = service.parts
        with socket.create_connection(("127.0.0.1", part.port), timeout=10) as s:  # type: ignore[attr-defined]
            s.sendall(frame())
            reply = hj212.Hj212Stream().feed(s.recv(4096))
        assert isinstance(reply[0], hj212.Packet)
        assert reply[0].cn == "9014"
        assert service.store.reading_count("D9") == 3
        assert service.stats()["hj212"]["replies"] == 1
    finally:
        service.stop()
