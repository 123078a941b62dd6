"""protocols.registers: Modbus vectors, every type and order, round trips, read planning."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocols.errors import CodecError
from protocols.registers import (
    TYPES,
    Block,
    RegisterError,
    RegisterSpec,
    decode,
    encode,
    modbus_crc16,
    plan_reads,
    words_from_bytes,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _crc_ok(frame: bytes) -> bool:
    return modbus_crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _request(unit: int, block: Block) -> bytes:
    pdu = struct.pack(">BBHH", unit, block.function, block.address, block.count)
    return pdu + modbus_crc16(pdu).to_bytes(2, "little")


# reference/protocols.md §4: Renke RS-WS-N01 (M1/M2) and an FC04 temperature sensor (M3)
M1 = _hex("01 03 00 00 00 02 C4 0B")
M2 = _hex("01 03 04 02 92 FF 9B 5A 3D")
M3_REQUEST = _hex("01 04 00 01 00 01 60 0A")
M3_RESPONSE = _hex("01 04 02 01 31 79 74")
RH = RegisterSpec("rh", 0, 3, "uint16", scale=0.1, unit="%RH")
TEMP = RegisterSpec("temp", 1, 3, "int16", scale=0.1, unit="Cel")


def test_modbus_crc_check_value_and_vectors() -> None:
    assert modbus_crc16(b"123456789") == 0x4B37
    assert all(_crc_ok(f) for f in (M1, M2, M3_REQUEST, M3_RESPONSE))


def test_m1_m2_renke_humidity_and_temperature() -> None:
    (block,) = plan_reads([TEMP, RH])
    assert (block.function, block.address, block.count) == (3, 0, 2)
    assert _request(1, block) == M1  # the plan asks exactly what the manual's request asks
    assert M2[2] == 2 * block.count
    words = words_from_bytes(M2[3 : 3 + M2[2]])
    assert words == [0x0292, 0xFF9B]
    assert decode(block.extract(words, RH), RH) == pytest.approx(65.8)
    assert decode(block.extract(words, TEMP), TEMP) == pytest.approx(-10.1)


def test_m3_input_register() -> None:
    spec = RegisterSpec("temp", 1, 4, "int16", scale=0.1, unit="Cel")
    (block,) = plan_reads([spec])
    assert _request(1, block) == M3_REQUEST
    words = words_from_bytes(M3_RESPONSE[3 : 3 + M3_RESPONSE[2]])
    assert decode(block.extract(words, spec), spec) == pytest.approx(30.5)
    assert encode(30.5, spec) == [0x0131]
    assert encode(-10.1, TEMP) == [0xFF9B]


def test_float32_in_both_word_orders_and_swapped_bytes() -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">f", 23.5))  # 0x41BC, 0x0000
    big = RegisterSpec("co2", 0xA0, 4, "float32")
    little = RegisterSpec("co2", 0xA0, 4, "float32", word_order="little")
    swapped = RegisterSpec("co2", 0xA0, 4, "float32", byte_order="little")
    assert decode([hi, lo], big) == 23.5
    assert decode([lo, hi], little) == 23.5
    assert decode([0xBC41, 0x0000], swapped) == 23.5
    assert encode(23.5, little) == [lo, hi]
    assert big.count == 2
    assert RH.count == 1


def test_32_bit_integers_in_both_orders() -> None:
    spec = RegisterSpec("lux", 0x1FA, 3, "uint32", word_order="big")
    assert decode([0x0001, 0x86A0], spec) == 100000.0
    assert decode([0x86A0, 0x0001], RegisterSpec("lux", 0, 3, "uint32", word_order="little")) == 1e5
    assert decode([0xFFFF, 0xFFFE], RegisterSpec("x", 0, 3, "int32")) == -2.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_float32_without_a_measurement_raises(value: float) -> None:
    words = list(struct.unpack(">HH", struct.pack(">f", value)))
    with pytest.raises(RegisterError, match="no valid measurement"):
        decode(words, RegisterSpec("no2", 0xC0, 4, "float32"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quantity": ""}, "quantity"),
        ({"address": -1}, "address"),
        ({"address": 0xFFFF, "type": "float32"}, "address"),
        ({"address": 1.5}, "address"),
        ({"function": 6}, "function"),
        ({"type": "int64"}, "type"),
        ({"word_order": "middle"}, "word_order"),
        ({"byte_order": "BIG"}, "byte_order"),
        ({"scale": 0}, "scale"),
        ({"scale": math.nan}, "scale"),
        ({"offset": "1"}, "offset"),
        ({"unit": 3}, "unit"),
    ],
)
def test_invalid_specs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"quantity": "pm25", "address": 0} | kwargs
    with pytest.raises(RegisterError, match=field) as info:
        RegisterSpec(**args)
    assert info.value.fields["field"] == field
    assert isinstance(info.value, CodecError)
    assert isinstance(info.value, ValueError)


def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(RegisterError, match=r"outside .* \(0.0 .. 6553.5\)"):
        encode(7000, RH)
    with pytest.raises(RegisterError, match="outside"):
        encode(-1, RegisterSpec("pm25", 0))
    with pytest.raises(RegisterError, match="beyond float32"):
        encode(1e39, RegisterSpec("x", 0, type="float32"))
    with pytest.raises(RegisterError, match="not a finite number"):
        encode(math.nan, RH)
    with pytest.raises(RegisterError, match="not a finite number"):
        encode(10**400, RH)


def test_decode_refuses_wrong_words() -> None:
    with pytest.raises(RegisterError, match="needs 2 words"):
        decode([1], RegisterSpec("x", 0, type="uint32"))
    with pytest.raises(RegisterError, match="not a 16-bit word"):
        decode([0x10000], RH)


# -- hypothesis: every type and order -------------------------------------------------------

_specs = st.builds(
    RegisterSpec,
    quantity=st.just("q"),
    address=st.integers(0, 0xFFF0),
    function=st.sampled_from([3, 4]),
    type=st.sampled_from(sorted(TYPES)),
    word_order=st.sampled_from(["big", "little"]),
    byte_order=st.sampled_from(["big", "little"]),
)


@given(_specs, st.data())
def test_words_round_trip_exactly(spec: RegisterSpec, data: st.DataObject) -> None:
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=spec.count, max_size=spec.count))
    try:
        value = decode(words, spec)
    except RegisterError:
        assert spec.type == "float32"  # only a NaN or infinity may refuse to decode
        return
    again = encode(value, spec)
    if spec.type == "float32" and value == 0:
        assert decode(again, spec) == 0  # -0.0 and 0.0 are one value
    else:
        assert again == words


@given(
    _specs, st.sampled_from([0.1, 0.01, 0.5, 10.0, -0.1, 1e-3]), st.floats(-1000, 1000), st.data()
)
def test_scaled_values_round_trip_to_the_resolution(
    spec: RegisterSpec, scale: float, offset: float, data: st.DataObject
) -> None:
    spec = RegisterSpec(
        spec.quantity,
        spec.address,
        spec.function,
        spec.type,
        spec.word_order,
        spec.byte_order,
        scale,
        offset,
    )
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=spec.count, max_size=spec.count))
    try:
        value = decode(words, spec)
    except RegisterError:
        return
    if spec.type != "float32":
        assert encode(value, spec) == words
    else:
        back = decode(encode(value, spec), spec)
        assert back == pytest.approx(value, rel=1e-6, abs=abs(scale) * 1e-30 + 1e-9)


@given(_specs, st.floats(allow_nan=False, allow_infinity=False))
def test_encode_then_decode_is_within_half_a_step(spec: RegisterSpec, value: float) -> None:
    try:
        words = encode(value, spec)
    except RegisterError:
        assume(False)
        return
    assert len(words) == spec.count
    assert all(0 <= w <= 0xFFFF for w in words)
    back = decode(words, spec)
    if spec.type == "float32":
        assert back == pytest.approx(value, rel=1e-7, abs=1e-38)
    else:
        assert abs(back - value) <= 0.5 * abs(spec.scale)


# -- read planning --------------------------------------------------------------------------

_plan_specs = st.lists(
    st.builds(
        RegisterSpec,
        quantity=st.sampled_from(["pm25", "pm10", "temp", "rh", "no2"]),
        address=st.integers(0, 400),
        function=st.sampled_from([3, 4]),
        type=st.sampled_from(sorted(TYPES)),
    ),
    max_size=40,
)


@given(_plan_specs, st.integers(0, 20), st.integers(2, 125))
def test_plan_covers_every_spec_once_within_limits(
    specs: list[RegisterSpec], max_gap: int, max_count: int
) -> None:
    blocks = plan_reads(specs, max_gap=max_gap, max_count=max_count)
    placed = [s for b in blocks for s in b.specs]
    assert sorted(map(repr, placed)) == sorted(map(repr, specs))  # each exactly once
    for b in blocks:
        assert 1 <= b.count <= max_count
        assert {s.function for s in b.specs} == {b.function}
        for s in b.specs:
            assert b.address <= s.address
            assert s.address + s.count <= b.address + b.count
            words = list(range(b.count))
            assert b.extract(words, s) == words[s.address - b.address :][: s.count]
        covered = sorted({a for s in b.specs for a in range(s.address, s.address + s.count)})
        gaps = [y - x - 1 for x, y in itertools.pairwise(covered)]
        assert all(g <= max_gap for g in gaps)
    for a, b in itertools.pairwise(blocks):  # no two neighbours could be one read
        if a.function == b.function:
            too_far = b.address - (a.address + a.count) > max_gap
            too_long = max(a.address + a.count, b.address + b.count) - a.address > max_count
            assert too_far or too_long


def test_plan_groups_a_typical_station() -> None:
    specs = [
        RegisterSpec("rh", 0x1F4, scale=0.1),
        RegisterSpec("temp", 0x1F5, type="int16", scale=0.1),
        RegisterSpec("noise", 0x1F6, scale=0.1),
        RegisterSpec("pm25", 0x1F7),
        RegisterSpec("pm10", 0x1F8),
        RegisterSpec("pressure", 0x1F9, scale=0.1),
        RegisterSpec("co2", 0xA0, 4, "float32"),
        RegisterSpec("no2", 0xC0, 4, "float32"),
    ]
    blocks = plan_reads(specs)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        (3, 0x1F4, 6),
        (4, 0xA0, 2),
        (4, 0xC0, 2),
    ]
    assert [(b.function, b.address, b.count) for b in plan_reads(specs, max_gap=32)] == [
        (3, 0x1F4, 6),
        (4, 0xA0, 34),
    ]
    assert len(plan_reads(specs, max_count=2)) == 5


def test_plan_limits_and_extract_errors() -> None:
    with pytest.raises(RegisterError, match="max_count"):
        plan_reads([RH], max_count=126)
    with pytest.raises(RegisterError, match="needs 2"):
        plan_reads([RegisterSpec("x", 0, type="float32")], max_count=1)
    (block,) = plan_reads([RH])
    with pytest.raises(RegisterError, match="expects 1 words"):
        block.extract([1, 2], RH)
    with pytest.raises(RegisterError, match="not in the block"):
        block.extract([1], TEMP)
    assert plan_reads([]) == []
