"""protocols.sds011: public vectors, replies, round trips, corruption, splitters."""

from __future__ import annotations

import contextlib
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import sds011
from protocols.errors import CodecError, CrcError
from protocols.sds011 import Command, Sds011CrcError, Sds011Error, parse_command, parse_frame


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# reference/protocols.md §3
S1_S3 = [
    (_hex("aa c0 06 00 06 00 58 d9 3d ab"), 0.6),
    (_hex("aa c0 09 00 09 00 58 d9 43 ab"), 0.9),
    (_hex("aa c0 08 00 08 00 58 d9 41 ab"), 0.8),
]
S4 = _hex("aa cf 0e 00 10 00 e9 05 0c ab")
S6 = {
    "active": _hex("aa b4 02 01 00 00 00 00 00 00 00 00 00 00 00 ff ff 01 ab"),
    "query": _hex("aa b4 02 01 01 00 00 00 00 00 00 00 00 00 00 ff ff 02 ab"),
    "query_data": _hex("aa b4 04 00 00 00 00 00 00 00 00 00 00 00 00 ff ff 02 ab"),
    "sleep": _hex("aa b4 06 01 00 00 00 00 00 00 00 00 00 00 00 ff ff 05 ab"),
    "work": _hex("aa b4 06 01 01 00 00 00 00 00 00 00 00 00 00 ff ff 06 ab"),
}
S7 = _hex("aa b4 08 01 05 00 00 00 00 00 00 00 00 00 00 ff ff 0c ab")


@pytest.mark.parametrize(("frame", "pm"), S1_S3)
def test_s1_to_s3(frame: bytes, pm: float) -> None:
    assert parse_frame(frame) == {
        "kind": "data",
        "model": "sds011",
        "pm25": pm,
        "pm10": pm,
        "device_id": 0x58D9,
    }


def test_s4_sds198() -> None:
    got = parse_frame(S4)
    assert (got["model"], got["pm100"], got["device_id"]) == ("sds198", 16.0, 0xE905)
    rebuilt = sds011.build_sds198_frame(pm100=16, device_id=0xE905)  # reserved bytes 2-3: 0
    assert rebuilt[4:8] == S4[4:8]
    assert parse_frame(rebuilt) == got


def test_s6_s7_commands() -> None:
    assert sds011.cmd_set_reporting_mode("active") == S6["active"]
    assert sds011.cmd_set_reporting_mode("query") == S6["query"]
    assert sds011.cmd_query_data() == S6["query_data"]
    assert sds011.cmd_sleep() == S6["sleep"]
    assert sds011.cmd_work() == S6["work"]
    assert sds011.cmd_set_working_period(5) == S7
    assert parse_command(S6["query"]) == Command("reporting_mode", True, 1, 0xFFFF)
    assert parse_command(S6["sleep"]) == Command("sleep_work", True, 0)
    assert parse_command(S6["query_data"]) == Command("query_data")
    assert parse_command(S7) == Command("working_period", True, 5)


# Replies, constructed from the documented layout (AA C5 CMD d1 d2 d3 ID1 ID2 CHK AB);
# checksums recomputed by hand: e.g. 02+01+01+00+A1+60 = 0x105 -> 05.
REPLIES = [
    ("aa c5 02 01 01 00 a1 60 05 ab", {"reply": "reporting_mode", "set": True, "mode": "query"}),
    ("aa c5 02 00 00 00 a1 60 03 ab", {"reply": "reporting_mode", "set": False, "mode": "active"}),
    ("aa c5 06 01 00 00 a1 60 08 ab", {"reply": "sleep_work", "set": True, "state": "sleep"}),
    ("aa c5 06 00 01 00 a1 60 08 ab", {"reply": "sleep_work", "set": False, "state": "work"}),
    (
        "aa c5 07 0f 07 0a a1 60 28 ab",
        {"reply": "firmware", "firmware": "15-07-10", "year": 2015, "month": 7, "day": 10},
    ),
    ("aa c5 08 01 01 00 a1 60 0b ab", {"reply": "working_period", "set": True, "period_min": 1}),
]


@pytest.mark.parametrize(("frame", "meaning"), REPLIES)
def test_replies_are_read_for_their_meaning(frame: str, meaning: dict[str, object]) -> None:
    assert parse_frame(_hex(frame)) == {"kind": "reply", "device_id": 0xA160, **meaning}


def test_set_device_id_reply_carries_the_new_id() -> None:
    reply = _hex("aa c5 05 00 00 00 a0 01 a6 ab")
    assert parse_frame(reply) == {"kind": "reply", "reply": "device_id", "device_id": 0xA001}
    command = parse_command(sds011.cmd_set_device_id(0xA001, device_id=0xA160))
    assert command == Command("device_id", True, 0xA001, 0xA160)
    assert sds011.build_reply(command) == reply


def test_errors_say_what_is_wrong() -> None:
    assert issubclass(Sds011Error, CodecError)
    assert issubclass(Sds011Error, ValueError)
    assert issubclass(Sds011CrcError, CrcError)
    with pytest.raises(Sds011CrcError, match="bad checksum") as info:
        parse_frame(_hex("aa c0 06 00 06 00 58 d9 3e ab"))
    assert info.value.fields == {"expected": 0x3D, "got": 0x3E}
    with pytest.raises(Sds011Error, match="10 bytes"):
        parse_frame(S1_S3[0][0][:9])
    with pytest.raises(Sds011Error, match="bad framing"):
        parse_frame(S6["sleep"][:10])
    with pytest.raises(Sds011Error, match="unknown command"):
        parse_frame(_hex("aa c5 09 00 00 00 00 00 09 ab"))
    with pytest.raises(Sds011Error, match=r"0\.\.30"):
        sds011.cmd_set_working_period(31)
    with pytest.raises(Sds011Error, match="does not fit"):
        sds011.build_frame(pm25=-1, pm10=0)
    with pytest.raises(Sds011Error, match="data frame"):
        sds011.build_reply(Command("query_data"))


# -- hypothesis -----------------------------------------------------------------------------

_tenths = st.integers(0, 0xFFFF).map(lambda n: n / 10)
_ids = st.integers(0, 0xFFFF)


@given(_tenths, _tenths, _ids)
def test_data_frame_round_trip(pm25: float, pm10: float, device_id: int) -> None:
    frame = sds011.build_frame(pm25=pm25, pm10=pm10, device_id=device_id)
    assert parse_frame(frame) == {
        "kind": "data",
        "model": "sds011",
        "pm25": pm25,
        "pm10": pm10,
        "device_id": device_id,
    }


def _query_has_no_value(c: Command) -> Command:
    return c if c.set or c.name == "device_id" else Command(c.name, False, 0, c.device_id)


_commands = st.one_of(
    st.builds(
        Command,
        st.sampled_from(["reporting_mode", "sleep_work"]),
        st.booleans(),
        st.integers(0, 1),
        _ids,
    ),
    st.builds(Command, st.just("working_period"), st.booleans(), st.integers(0, 30), _ids),
    st.builds(
        Command, st.sampled_from(["query_data", "firmware"]), st.just(False), st.just(0), _ids
    ),
    st.builds(Command, st.just("device_id"), st.just(True), _ids, _ids),
).map(_query_has_no_value)


@given(_commands)
def test_command_round_trip(command: Command) -> None:
    frame = sds011.build_command(command)
    assert len(frame) == 19
    assert frame[:2] == b"\xaa\xb4"
    assert frame[-1] == 0xAB
    assert parse_command(frame) == command


@given(_commands, st.integers(0, 30), _ids)
def test_reply_round_trip(command: Command, value: int, device_id: int) -> None:
    if command.name == "query_data":
        return
    if command.name in ("reporting_mode", "sleep_work"):
        value %= 2
    arg: int | str = value
    if command.name == "firmware":
        arg = f"{value:02d}-{value % 12 + 1:02d}-{value + 1:02d}"
    got = parse_frame(sds011.build_reply(command, value=arg, device_id=device_id))
    assert got["kind"] == "reply"
    assert got["reply"] == command.name
    if command.name == "device_id":
        assert got["device_id"] == command.value
        return
    assert got["device_id"] == device_id
    if command.name == "firmware":
        assert got["firmware"] == arg
    else:
        assert got["set"] == command.set
        key = {"reporting_mode": "mode", "sleep_work": "state"}.get(command.name, "period_min")
        names = {"mode": ("active", "query"), "state": ("sleep", "work")}
        assert got[key] == (names[key][value] if key in names else value)


@given(_tenths, _tenths, _ids, st.data())
def test_a_changed_byte_is_caught(
    pm25: float, pm10: float, device_id: int, data: st.DataObject
) -> None:
    frame = sds011.build_frame(pm25=pm25, pm10=pm10, device_id=device_id)
    i = data.draw(st.integers(0, 9))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[i]))
    bad = frame[:i] + bytes([new]) + frame[i + 1 :]
    try:
        got = parse_frame(bad)
    except Sds011Error:
        return
    # byte 1 may turn a measurement into an SDS198 frame or a reply, which are valid frames
    assert i == 1
    assert got != parse_frame(frame)


@given(_commands, st.data())
def test_a_changed_command_byte_is_caught(command: Command, data: st.DataObject) -> None:
    frame = sds011.build_command(command)
    i = data.draw(st.integers(0, 18))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[i]))
    with pytest.raises(Sds011Error):
        parse_command(frame[:i] + bytes([new]) + frame[i + 1 :])


@given(st.binary(max_size=24))
def test_arbitrary_bytes_raise_only_sds011_error(data: bytes) -> None:
    for decode in (parse_frame, parse_command):
        with contextlib.suppress(Sds011Error):
            decode(data)


@given(st.binary(min_size=6, max_size=6), st.sampled_from([0xC0, 0xC5, 0xCF]))
def test_well_framed_arbitrary_content_raises_only_sds011_error(body: bytes, kind: int) -> None:
    frame = bytes([0xAA, kind]) + body + bytes([sum(body) & 0xFF, 0xAB])
    try:
        got = parse_frame(frame)
    except Sds011Error:
        return
    assert got["kind"] in ("data", "reply")


# -- streams --------------------------------------------------------------------------------


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(
    st.lists(st.tuples(_tenths, _tenths, _ids), min_size=1, max_size=6),
    st.lists(st.binary(max_size=25).map(lambda g: g.replace(b"\xaa", b"")), max_size=7),
    st.lists(st.integers(0, 10**4), max_size=20),
)
def test_stream_resynchronises(
    readings: list[tuple[float, float, int]], garbage: list[bytes], cuts: list[int]
) -> None:
    frames = [sds011.build_frame(pm25=a, pm10=b, device_id=c) for a, b, c in readings]
    data = b"".join((garbage[i] if i < len(garbage) else b"") + f for i, f in enumerate(frames))
    stream = sds011.Sds011Stream()
    items = [x for chunk in _cut(data, cuts) for x in stream.feed(chunk)] + stream.flush()
    assert [x for x in items if isinstance(x, dict)] == [parse_frame(f) for f in frames]
    runs = sum(1 for i in range(len(frames)) if i < len(garbage) and garbage[i])
    assert sum(isinstance(x, Sds011Error) for x in items) == runs


def test_stream_keeps_the_frame_after_a_broken_one() -> None:
    good = S1_S3[1][0]
    stream = sds011.Sds011Stream()
    items = stream.feed(good[:7] + good + S4)
    assert isinstance(items[0], Sds011Error)
    assert items[1:] == [parse_frame(good), parse_frame(S4)]


def test_stream_memory_is_bounded() -> None:
    rng = random.Random(5)
    stream = sds011.Sds011Stream()
    for _ in range(200):
        stream.feed(bytes(rng.getrandbits(8) for _ in range(300)))
        assert stream.buffered <= 10
    assert stream.errors > 0


def test_command_stream_for_a_simulated_sensor() -> None:
    data = b"\x01\x02" + S6["sleep"] + S6["work"][:12] + S7
    stream = sds011.CommandStream()
    items = [x for b in data for x in stream.feed(bytes([b]))]
    kinds = [x.name if isinstance(x, Command) else "error" for x in items]
    assert kinds == ["error", "sleep_work", "error", "working_period"]
