"""protocols.pms5003: public vectors, round trips, corruption, arbitrary bytes, splitters."""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import pms5003
from protocols.errors import CodecError, CrcError
from protocols.pms5003 import Pms5003CrcError, Pms5003Error, parse_frame


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# reference/protocols.md §2
P1 = _hex(
    "42 4d 00 1c 00 03 00 04 00 07 00 04 00 05 00 08 03 1b 00 f9 00 1b 00 06 00 03 00 03"
    " 9a 00 02 a2"
)
P2 = _hex(
    "42 4d 00 1c 00 00 00 08 00 08 00 00 00 08 00 08 00 d2 00 46 00 2d 00 1e 00 00 00 00"
    " 97 00 02 c5"
)
P3 = _hex(
    "42 4d 00 1c 00 00 00 07 00 07 00 00 00 07 00 07 00 bd 00 3f 00 2a 00 1b 00 00 00 00"
    " 97 00 02 9f"
)
P4 = _hex(
    "42 4d 00 1c 00 00 00 05 00 05 00 00 00 05 00 05 00 8a 00 2e 00 17 00 0f 00 00 00 00"
    " 97 00 02 34"
)
P6 = _hex("42 4d 00 14 00 01 00 01 00 01 00 01 00 01 00 01 00 00 00 00 00 51 00 fa")
P7 = {
    "active": _hex("42 4D E1 00 01 01 71"),
    "passive": _hex("42 4D E1 00 00 01 70"),
    "read": _hex("42 4D E2 00 00 01 71"),
    "sleep": _hex("42 4D E4 00 00 01 73"),
    "wake": _hex("42 4D E4 00 01 01 74"),
}
# a PMS5003T frame from avaldebe/PyPMS docs/sensors/Plantower.md (hexdump, first line)
PMS5003T = _hex(
    "42 4d 00 1c 00 17 00 27 00 29 00 16 00 23 00 29 10 08 04 a9 01 16 00 0c 00 d4"
    " 00 e0 9a 00 04 aa"
)


def test_p1() -> None:
    assert parse_frame(P1) == {
        "model": "pms5003",
        "kind": "data",
        "pm1_cf1": 3,
        "pm25_cf1": 4,
        "pm10_cf1": 7,
        "pm1": 4,
        "pm25": 5,
        "pm10": 8,
        "n0_3": 795,
        "n0_5": 249,
        "n1_0": 27,
        "n2_5": 6,
        "n5_0": 3,
        "n10": 3,
        "version": 0x9A,
        "error": 0,
    }


@pytest.mark.parametrize(
    ("frame", "pm25", "counts"),
    [(P2, 8, (210, 70, 45, 30)), (P3, 7, (189, 63, 42, 27)), (P4, 5, (138, 46, 23, 15))],
)
def test_p2_to_p4(frame: bytes, pm25: int, counts: tuple[int, ...]) -> None:
    got = parse_frame(frame)
    assert got["pm25"] == got["pm25_cf1"] == pm25
    assert (got["n0_3"], got["n0_5"], got["n1_0"], got["n2_5"]) == counts
    assert (got["version"], got["error"]) == (0x97, 0)


def test_p6_pms3003_by_its_length() -> None:
    got = parse_frame(P6)
    assert got["model"] == "pms3003"
    assert [got[k] for k in ("pm1_cf1", "pm25_cf1", "pm10_cf1", "pm1", "pm25", "pm10")] == [1] * 6
    assert "n0_3" not in got
    assert parse_frame(P6, model="pms3003") == got


def test_pms5003t_must_be_named() -> None:
    t = parse_frame(PMS5003T, model="pms5003t")
    assert (t["temp"], t["rh"]) == (21.2, 22.4)
    assert (t["pm25"], t["n0_3"], t["n2_5"]) == (35, 4104, 12)
    assert "n5_0" not in t
    assert "n10" not in t
    plain = parse_frame(PMS5003T)  # same bytes, read as the default plain PMS5003
    assert plain["model"] == "pms5003"
    assert plain["n5_0"] == 212
    assert "temp" not in plain


@pytest.mark.parametrize(("name", "frame"), list(P7.items()))
def test_p7_commands(name: str, frame: bytes) -> None:
    assert pms5003.build_command(name) == frame
    assert getattr(pms5003, f"cmd_{name}")() == frame
    assert pms5003.parse_command(frame).name == name


def test_acks() -> None:
    ack = pms5003.build_ack("passive")
    assert ack == _hex("42 4D 00 04 E1 00 01 74")
    assert parse_frame(ack) == {"kind": "ack", "command": "passive", "cmd": 0xE1, "data": 0}
    assert parse_frame(pms5003.build_ack("sleep"))["command"] == "sleep"
    with pytest.raises(Pms5003Error, match="acks only"):
        pms5003.build_ack("wake")


def test_errors_say_what_is_wrong() -> None:
    assert issubclass(Pms5003Error, CodecError)
    assert issubclass(Pms5003Error, ValueError)
    assert issubclass(Pms5003CrcError, CrcError)
    with pytest.raises(Pms5003CrcError, match="bad checksum") as info:
        parse_frame(P1[:-1] + b"\xa3")
    assert info.value.fields == {"expected": 0x02A2, "got": 0x02A3}
    with pytest.raises(Pms5003Error, match="length field 20"):
        parse_frame(P6, model="pms5003")
    with pytest.raises(Pms5003Error, match="unknown model"):
        parse_frame(P1, model="pms9999")
    with pytest.raises(Pms5003Error, match="start bytes"):
        parse_frame(b"\x00" + P1[1:])
    with pytest.raises(Pms5003Error, match="length field says"):
        parse_frame(P1[:-1])


def test_build_frame_refuses_what_the_model_cannot_carry() -> None:
    with pytest.raises(Pms5003Error, match="no temp"):
        pms5003.build_frame(model="pms5003", temp=20.0)
    with pytest.raises(Pms5003Error, match="no n10"):
        pms5003.build_frame(model="pms5003t", n10=3)
    with pytest.raises(Pms5003Error, match="does not fit"):
        pms5003.build_frame(pm25=70000)
    with pytest.raises(Pms5003Error, match="does not fit"):
        pms5003.build_frame(model="pms5003t", temp=-3300.0)
    with pytest.raises(Pms5003Error, match="single bytes"):
        pms5003.build_frame(version=256)


# -- hypothesis -----------------------------------------------------------------------------

_word = st.integers(0, 0xFFFF)


@st.composite
def _frames(draw: st.DrawFn) -> tuple[str, dict[str, Any], bytes]:
    model = draw(st.sampled_from(pms5003.MODELS))
    values: dict[str, Any] = {k: draw(_word) for k in ("pm1", "pm25", "pm10")}
    values |= {k: draw(_word) for k in ("pm1_cf1", "pm25_cf1", "pm10_cf1")}
    if model != "pms3003":
        counts = ("n0_3", "n0_5", "n1_0", "n2_5") + (() if model == "pms5003t" else ("n5_0", "n10"))
        values |= {k: draw(_word) for k in counts}
        values |= {"version": draw(st.integers(0, 255)), "error": draw(st.integers(0, 255))}
    if model in ("pms5003t", "pms5003st"):
        values["temp"] = draw(st.integers(-0x8000, 0x7FFF)) / 10
        values["rh"] = draw(_word) / 10
    if model == "pms5003st":
        values["hcho"] = draw(_word) / 1000
    return model, values, pms5003.build_frame(model=model, **values)


@given(_frames())
def test_build_then_parse(case: tuple[str, dict[str, Any], bytes]) -> None:
    model, values, frame = case
    got = parse_frame(frame, model=model)
    assert {k: got[k] for k in values} == values
    assert got["model"] == model
    assert len(frame) == {"pms3003": 24, "pms5003st": 40}.get(model, 32)
    if model != "pms5003t":
        assert parse_frame(frame) == got  # the length alone tells the others apart


@given(_frames(), st.data())
def test_a_changed_byte_is_caught(
    case: tuple[str, dict[str, Any], bytes], data: st.DataObject
) -> None:
    model, _, frame = case
    i = data.draw(st.integers(0, len(frame) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[i]))
    with pytest.raises(Pms5003Error):
        parse_frame(frame[:i] + bytes([new]) + frame[i + 1 :], model=model)


@given(st.binary(max_size=48), st.sampled_from([None, *pms5003.MODELS]))
def test_arbitrary_bytes_raise_only_pms5003_error(data: bytes, model: str | None) -> None:
    for decode in (lambda: parse_frame(data, model=model), lambda: pms5003.parse_command(data)):
        with contextlib.suppress(Pms5003Error):
            decode()


@given(st.lists(st.integers(0, 255), min_size=5, max_size=5))
def test_command_frames_are_checked(body: list[int]) -> None:
    frame = bytes(body) + (sum(body) & 0xFFFF).to_bytes(2, "big")
    try:
        cmd = pms5003.parse_command(frame)
    except Pms5003Error:
        return
    assert pms5003.build_command(cmd.name) == frame


# -- streams --------------------------------------------------------------------------------


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(
    st.lists(_frames(), min_size=1, max_size=5),
    st.lists(st.binary(max_size=30).map(lambda g: g.replace(b"B", b"")), max_size=6),
    st.lists(st.integers(0, 10**5), max_size=20),
)
def test_stream_resynchronises(
    frames: list[tuple[str, dict[str, Any], bytes]], garbage: list[bytes], cuts: list[int]
) -> None:
    frames = [f for f in frames if f[0] != "pms5003t"]  # a named model would be needed
    data = b""
    for i, (_, _, frame) in enumerate(frames):
        data += (garbage[i] if i < len(garbage) else b"") + frame
    stream = pms5003.Pms5003Stream()
    items = [x for chunk in _cut(data, cuts) for x in stream.feed(chunk)] + stream.flush()
    assert [x for x in items if isinstance(x, dict)] == [parse_frame(f) for _, _, f in frames]
    garbage_runs = sum(1 for i in range(len(frames)) if i < len(garbage) and garbage[i])
    assert sum(isinstance(x, Pms5003Error) for x in items) == garbage_runs
    assert stream.buffered <= 40


def test_stream_of_a_named_model_and_a_bad_frame() -> None:
    bad = bytearray(PMS5003T)
    bad[10] ^= 1
    stream = pms5003.Pms5003Stream(model="pms5003t")
    items = stream.feed(bytes(bad) + PMS5003T + pms5003.build_ack("sleep"))
    assert isinstance(items[0], Pms5003CrcError)
    assert items[1] == parse_frame(PMS5003T, model="pms5003t")
    assert isinstance(items[2], dict)
    assert items[2]["kind"] == "ack"
    assert len(items) == 3


def test_stream_memory_is_bounded() -> None:
    rng = random.Random(3)
    stream = pms5003.Pms5003Stream()
    for _ in range(200):
        out = stream.feed(bytes(rng.getrandbits(8) for _ in range(500)))
        assert all(isinstance(x, dict | Pms5003Error) for x in out)
        assert stream.buffered <= 40
    assert stream.errors > 0


def test_command_stream() -> None:
    data = b"\x00zz" + P7["sleep"] + b"BM\x99" + P7["wake"] + P7["read"][:3]
    stream = pms5003.CommandStream()
    items = [x for b in data for x in stream.feed(bytes([b]))]
    items += stream.flush()
    names = [x.name if isinstance(x, pms5003.Command) else "error" for x in items]
    assert names == ["error", "sleep", "error", "wake", "error"]
