"""The gateway <-> cloud contract of DESIGN 4.2, byte for byte."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import telemetry as tm
from protocols.telemetry import Ack, Command, Pack, Record, Status, Stored, TelemetryError

T0 = 1_780_000_000.0


def _pack(n: int = 3, station: str = "GX-M-001", epoch: str = "e1a2") -> Pack:
    return Pack(
        station=station,
        epoch=epoch,
        records=tuple(
            Record(
                id=10 + i,
                quantity="pm25",
                unit="ug/m3",
                ts=T0 + 10 * i,
                value=12.5 + i,
                raw=11.0 + i,
                flag="N",
                cal=3,
                sensor="pm",
            )
            for i in range(n)
        ),
    )


def test_topics_follow_the_contract() -> None:
    assert tm.topic("GX-M-001", tm.UP_TELEMETRY) == "airtrace/v1/GX-M-001/up/telemetry"
    assert tm.topic("S1", tm.DOWN_STORED) == "airtrace/v1/S1/down/stored"
    ref = tm.parse_topic("$share/ingest/airtrace/v1/S1/up/status")
    assert (ref.station, ref.kind) == ("S1", "up/status")
    for bad in (
        "airtrace/v1/S1/up/other",
        "airtrace/v2/S1/up/status",
        "x/y",
        "airtrace/v1/+/up/ack",
    ):
        with pytest.raises(TelemetryError):
            tm.parse_topic(bad)
    with pytest.raises(TelemetryError):
        tm.topic("a/b", tm.UP_ACK)


def test_first_record_carries_base_name_time_seq_and_epoch() -> None:
    data = json.loads(tm.encode_pack(_pack()))
    first = data[0]
    assert first["bn"] == "urn:airtrace:GX-M-001:"
    assert first["bt"] == T0
    assert first["seq"] == 10
    assert first["epoch"] == "e1a2"
    assert [r["t"] for r in data] == [0, 10, 20]
    assert [r["id"] for r in data] == [10, 11, 12]
    assert data[1] == {
        "n": "pm25",
        "u": "ug/m3",
        "v": 13.5,
        "t": 10,
        "raw": 12.0,
        "q": "N",
        "cal": 3,
        "id": 11,
        "sensor": "pm",
    }


def test_a_hand_written_pack_decodes() -> None:
    # the shape DESIGN 4.2 describes, written by hand as another system would
    payload = json.dumps(
        [
            {
                "bn": "urn:airtrace:ST-9:",
                "bt": T0,
                "seq": 5,
                "n": "pm10",
                "u": "ug/m3",
                "v": 40.1,
                "t": 0,
                "raw": 38.0,
                "q": "N",
                "cal": 1,
                "id": 5,
            },
            {"n": "rh", "u": "%RH", "v": 71, "t": 1.5, "raw": 71, "q": "N", "cal": 0, "id": 6},
            {
                "n": "pm10",
                "u": "ug/m3",
                "t": 2,
                "q": "D",
                "cal": 1,
            },  # a fault without value; id from seq
        ]
    )
    pack = tm.decode_pack(payload, station="ST-9")
    assert pack.station == "ST-9"
    assert pack.epoch == ""
    assert pack.seq == 5
    assert [r.id for r in pack.records] == [5, 6, 7]
    assert pack.records[1].ts == T0 + 1.5
    assert pack.records[2].value is None
    assert pack.records[2].flag == "D"
    assert not pack.records[2].valid


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{}", "non-empty JSON array"),
        (b"[]", "non-empty JSON array"),
        (b"[1]", "not a JSON object"),
        (
            b'[{"bn":"urn:airtrace:S1:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1}]',
            "arrived on the topic",
        ),
        (
            b'[{"bn":"urn:dev:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1}]',
            "base name",
        ),
        (b'[{"bn":"urn:airtrace:S2:","bt":5,"n":"pm25","u":"ug/m3","v":1,"id":1}]', "relative"),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":NaN,"id":1}]',
            "non-finite",
        ),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":"1","id":1}]',
            "must be a number",
        ),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":0}]',
            ">= 1",
        ),
        (b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1}]', "no id"),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1,"q":"X"}]',
            "q must be",
        ),
        (b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","v":1,"id":1}]', "no unit"),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","id":1,"q":"N"}]',
            "no value",
        ),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1,"x_":1}]',
            "must-understand",
        ),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"a b","u":"ug/m3","v":1,"id":1}]',
            "bad value",
        ),
        (
            b'[{"bn":"urn:airtrace:S2:","bt":1780000000,"n":"pm25","u":"ug/m3","v":1,"id":1},'
            b'{"n":"pm25","u":"ug/m3","v":1,"id":1}]',
            "repeat",
        ),
    ],
)
def test_malformed_packs_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(TelemetryError, match=reason):
        tm.decode_pack(payload, station="S2")


records = st.builds(
    lambda i, q, v, raw, flag, cal, dt: (i, q, v, raw, flag, cal, dt),
    st.integers(1, 2**53),
    st.sampled_from(["pm25", "pm10", "temp", "rh", "wind_dir", "no2"]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    st.sampled_from(sorted(tm.FLAGS)),
    st.one_of(st.integers(0, 10**6), st.text("abcdef0123456789", min_size=1, max_size=8)),
    st.integers(0, 86_400_000),
)


@given(
    st.lists(records, min_size=1, max_size=40, unique_by=lambda r: r[0]),
    st.text("abcdef0123456789", max_size=16),
    st.one_of(st.none(), st.integers(1, 10**9)),
)
def test_pack_round_trip(rows, epoch: str, floor: int | None) -> None:
    recs = tuple(
        Record(id=i, quantity=q, unit="u", ts=T0 + dt / 1000, value=v, raw=raw, flag=f, cal=cal)
        for i, q, v, raw, f, cal, dt in rows
    )
    pack = Pack(station="S-1", records=recs, epoch=epoch, floor=floor)
    back = tm.decode_pack(tm.encode_pack(pack), station="S-1")
    assert back.epoch == epoch
    assert back.floor == floor
    assert back.station == "S-1"
    assert [r.id for r in back.records] == [r.id for r in recs]
    for a, b in zip(recs, back.records, strict=True):
        assert (a.quantity, a.value, a.raw, a.flag, a.cal) == (
            b.quantity,
            b.value,
            b.raw,
            b.flag,
            b.cal,
        )
        assert abs(a.ts - b.ts) < 1e-3


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_telemetry_error(data: bytes) -> None:
    for decode in (
        lambda d: tm.decode_pack(d, station="S1"),
        tm.decode_status,
        tm.decode_command,
        tm.decode_ack,
        tm.decode_stored,
    ):
        with contextlib.suppress(TelemetryError):
            decode(data)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["bn", "bt", "n", "u", "v", "t", "id", "seq", "q", "cal", "raw", "epoch", "x"]
                ),
                inner,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_raises_only_telemetry_error(obj) -> None:
    payload = json.dumps(obj)
    for decode in (lambda d: tm.decode_pack(d, station="S1"), tm.decode_command, tm.decode_status):
        with contextlib.suppress(TelemetryError):
            decode(payload)


def test_stored_watermark_round_trip_and_shape() -> None:
    assert json.loads(tm.encode_stored(Stored(upto=42, epoch="ab"))) == {"upto": 42, "epoch": "ab"}
    assert tm.decode_stored(b'{"upto": 7}') == Stored(upto=7, epoch="")
    with pytest.raises(TelemetryError):
        tm.decode_stored(b'{"upto": -1}')


def test_status_round_trip_carries_the_station_description() -> None:
    status = Status(
        state="online",
        station="GX-M-001",
        kind="micro",
        lat=34.8,
        lon=113.5,
        inlet_height_m=3.5,
        sensors=({"name": "pm", "profile": "rs-pm-n01"},),
        version="0.1.0",
        ts=T0,
        epoch="e1",
        extra={"uptime_s": 5},
    )
    back = tm.decode_status(tm.encode_status(status))
    assert back == status
    assert tm.decode_status(b'{"state":"offline"}').state == "offline"
    with pytest.raises(TelemetryError):
        tm.decode_status(b'{"state":"maybe"}')


def test_commands_are_decoded_liberally_and_encoded_canonically() -> None:
    canonical = Command(id="c1", cmd="set_interval", args={"interval_s": 1, "duration_s": 600})
    assert tm.decode_command(tm.encode_command(canonical)) == canonical
    flat = tm.decode_command(b'{"id": 7, "command": "set_interval", "interval_s": 1}')
    assert flat == Command(id="7", cmd="set_interval", args={"interval_s": 1})
    assert tm.decode_command(b'{"id":"p","cmd":"ping"}').args == {}
    with pytest.raises(TelemetryError, match="unknown command") as info:
        tm.decode_command(b'{"id":"x9","cmd":"self_destruct"}')
    assert info.value.fields["id"] == "x9"
    assert tm.command_id(b'{"id":"x9","cmd":"self_destruct"}') == "x9"
    assert tm.command_id(b"garbage") is None


def test_acks_round_trip_and_need_a_reason_when_not_ok() -> None:
    ok = Ack(id="c1", status="ok", cmd="ping", result={"pong": True}, ts=T0)
    assert tm.decode_ack(tm.encode_ack(ok)) == ok
    assert json.loads(tm.encode_ack(ok))["ok"] is True
    with pytest.raises(TelemetryError):
        Ack(id="c1", status="error")
    assert tm.decode_ack(b'{"id":"c2","ok":false,"error":"coil write failed"}').status == "error"


def test_chunking_keeps_order() -> None:
    recs = _pack(7).records
    chunks = list(tm.chunk_records(recs, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r for c in chunks for r in c] == list(recs)
