"""``decode_rows`` (the fast path to row tuples) agrees with ``decode_pack`` on everything:
the same rows for what it accepts, ``TelemetryError`` for what it refuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.telemetry import (
    Pack,
    PackRows,
    Record,
    TelemetryError,
    _fast_rows,  # the fast path alone, no fallback
    decode_pack,
    decode_rows,
    encode_pack,
)

STATION = "GX-M-001"
T0 = 1_780_000_000.0

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
records = st.builds(
    lambda i, q, v, raw, flag, cal, sensor, why, dt: Record(
        id=i,
        quantity=q,
        unit="ug/m3",
        ts=T0 + dt,
        value=None if flag not in "NS" and v is None else (v if v is not None else 1.0),
        raw=raw,
        flag=flag,
        cal=cal,
        sensor=sensor,
        why=why,
    ),
    st.integers(1, 10**9),
    st.sampled_from(["pm25", "pm10", "temp", "rh", "no2"]),
    st.none() | finite,
    st.none() | finite,
    st.sampled_from(list("NSFMDCTBH")),
    st.integers(0, 99) | st.sampled_from(["v1", "2024-01"]),
    st.none() | st.sampled_from(["pm", "met.1"]),
    st.none() | st.text(max_size=8),
    st.floats(0, 1e6, allow_nan=False),
)
packs = st.builds(
    lambda recs, epoch, floor: Pack(STATION, tuple(recs), epoch=epoch, floor=floor),
    st.lists(records, min_size=1, max_size=12, unique_by=lambda r: r.id),
    st.sampled_from(["", "e1", "a-B_9"]),
    st.none() | st.integers(1, 10**6),
)


def reference(payload: bytes | str) -> PackRows | None:
    try:
        return PackRows.from_pack(decode_pack(payload, STATION))
    except TelemetryError:
        return None


def same(a: PackRows | None, b: PackRows | None) -> bool:
    """Equal to the bit: types, signs of zero and order included (repr tells them apart)."""
    if a is None or b is None:
        return a is b
    return (a.station, a.epoch, a.floor) == (b.station, b.epoch, b.floor) and [
        repr(r) for r in a.rows
    ] == [repr(r) for r in b.rows]


def fast(payload: bytes | str) -> PackRows | None:
    try:
        return decode_rows(payload, STATION)
    except TelemetryError:
        return None


@given(packs)
@settings(max_examples=150)
def test_encoded_packs_decode_the_same(pack: Pack) -> None:
    payload = encode_pack(pack)
    got = decode_rows(payload, STATION)
    assert same(got, reference(payload))
    assert same(decode_rows(payload.decode(), STATION), got)


@given(packs)
@settings(max_examples=60)
def test_every_canonical_pack_takes_the_fast_path(pack: Pack) -> None:
    """What ``encode_pack`` writes never needs the slow decoder (else ingest would crawl)."""
    payload = encode_pack(pack)
    assert same(_fast_rows(payload, STATION), reference(payload))


def test_rows_are_plain_tuples_in_id_order() -> None:
    recs = tuple(
        Record(i, "pm25", "ug/m3", T0 + i, 1.5 * i, raw=2, cal=3, sensor="pm") for i in (5, 2, 9)
    )
    got = decode_rows(encode_pack(Pack(STATION, recs, epoch="e1", floor=2)), STATION)
    assert got.floor == 2
    assert got.epoch == "e1"
    assert got.rows == [
        (2, "pm25", T0 + 2, 3.0, 2.0, "ug/m3", "N", "3", "pm", None),
        (5, "pm25", T0 + 5, 7.5, 2.0, "ug/m3", "N", "3", "pm", None),
        (9, "pm25", T0 + 9, 13.5, 2.0, "ug/m3", "N", "3", "pm", None),
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=5,
)


@given(packs, st.data())
@settings(max_examples=200)
def test_a_mutated_field_is_judged_as_decode_pack_judges_it(
    pack: Pack, data: st.DataObject
) -> None:
    doc = json.loads(encode_pack(pack))
    i = data.draw(st.integers(0, len(doc) - 1))
    key = data.draw(
        st.sampled_from(
            ["n", "u", "v", "t", "raw", "q", "cal", "id", "sensor", "why", "bn", "bt", "seq",
             "epoch", "floor", "bv", "bu", "x_", "vs"]
        )
    )  # fmt: skip
    if data.draw(st.booleans()) and key in doc[i]:
        del doc[i][key]
    else:
        doc[i][key] = data.draw(json_values)
    payload = json.dumps(doc, allow_nan=True)
    assert same(fast(payload), reference(payload))


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_raises_only_the_codec_error(payload: bytes | str) -> None:
    assert same(fast(payload), reference(payload))


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'[{"bn":"urn:airtrace:OTHER:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1}]',
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1e999,"id":1}]',
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":1e308,"t":1e308,"n":"pm25","u":"ug/m3","v":1,"id":1}]',
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":1780000000,"n":"pm25","u":"ug/m3","id":1}]',
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":null,"t":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1}]',
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1},'
        b'{"n":"pm25","u":"ug/m3","v":1,"id":1}]',
    ],
)
def test_known_bad_packs_are_refused_with_the_codec_reason(payload: bytes) -> None:
    with pytest.raises(TelemetryError):
        decode_rows(payload, STATION)


def test_integral_float_ids_are_taken_through_the_full_decoder() -> None:
    payload = (
        b'[{"bn":"urn:airtrace:GX-M-001:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":7.0}]'
    )
    assert decode_rows(payload, STATION).rows[0][0] == 7


@pytest.mark.parametrize("field", ["cal", "id", "v", "raw", "t", "q", "n", "u", "sensor"])
@pytest.mark.parametrize("odd", [True, 1.0, None, "1", [1]])
def test_an_odd_type_among_plain_ones_is_judged_as_decode_pack_judges_it(
    field: str, odd: object
) -> None:
    """Where a set would fold ``True`` into ``1`` (or ``1.0`` into ``1``), whole columns are
    checked, so the fast path never takes what the canonical decoder refuses."""
    recs = tuple(
        Record(i, "pm25", "ug/m3", T0 + i, 1.0, raw=1.0, cal=1, sensor="pm") for i in (1, 2, 3)
    )
    doc = json.loads(encode_pack(Pack(STATION, recs, epoch="e1")))
    doc[1][field] = odd
    payload = json.dumps(doc)
    assert same(fast(payload), reference(payload))
