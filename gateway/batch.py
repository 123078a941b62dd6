"""A batch of outbox rows on its way out, and its SenML encoding.

``Outbox.begin`` hands out a ``Batch``: consecutive outbox ids of one epoch, as the rows
``(id, ts, sensor, quantity, unit, raw, value, flag, why, cal)``. ``Batch.encode`` writes
the SenML pack straight from the rows, byte for byte what
``protocols.telemetry.encode_pack`` writes for the same readings (a hypothesis test holds
the two together) at a third of its cost: draining a backlog is mostly this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from protocols.telemetry import Pack, Record, base_name

_JSON_CACHE: dict[str, str] = {}


def _js(value: str) -> str:
    """JSON text of a string as the telemetry codec writes it (cached: names, units and
    flags repeat in every pack)."""
    text = _JSON_CACHE.get(value)
    if text is None:
        text = json.dumps(value, ensure_ascii=False)
        if len(_JSON_CACHE) < 4096:
            _JSON_CACHE[value] = text
    return text


#: ``cal`` is an int from the outbox; a string (as ``Record.cal`` allows) is encoded as one.
Row = tuple[
    int, float, str | None, str, str, float | None, float | None, str, str | None, int | str
]


@dataclass(frozen=True)
class Batch:
    """Readings handed out by ``begin``: consecutive ids ``first..last`` of one epoch, as
    the outbox rows ``(id, ts, sensor, quantity, unit, raw, value, flag, why, cal)``."""

    epoch: str
    first: int
    last: int
    rows: tuple[Row, ...]
    floor: int | None = None

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(
            Record(id=i, ts=ts, sensor=sensor, quantity=q, unit=u, raw=raw, value=v, flag=f,
                   why=why, cal=cal)
            for i, ts, sensor, q, u, raw, v, f, why, cal in self.rows
        )  # fmt: skip

    def pack(self, station: str) -> Pack:
        return Pack(station=station, records=self.records, epoch=self.epoch, floor=self.floor)

    def encode(self, station: str) -> bytes:
        """The SenML pack, byte for byte what ``encode_pack(self.pack(station))`` gives
        (a test holds the two together), written straight from the rows without a
        validated Record per reading (the rows were checked on the way in): this is the
        hot path when a backlog drains."""
        bt = self.rows[0][1]
        head = f'"bn":{_js(base_name(station))},"bt":{float.__repr__(bt)},"seq":{self.first},'
        head += f'"epoch":{_js(self.epoch)},'
        if self.floor is not None:
            head += f'"floor":{self.floor},'
        parts = []
        names: dict[tuple[str, str], str] = {}
        fr = float.__repr__  # rows hold finite floats (checked in add) or None
        for rid, ts, sensor, q, unit, raw, value, flag, why, cal in self.rows:
            nu = names.get((q, unit))
            if nu is None:
                nu = names[(q, unit)] = f'"n":{_js(q)},"u":{_js(unit)},'
            text = "{" + head + nu
            head = ""
            if value is not None:
                text += '"v":' + fr(value) + ","
            text += '"t":' + fr(round(ts - bt, 3)) + ","
            if raw is not None:
                text += '"raw":' + fr(raw) + ","
            c = str(cal) if isinstance(cal, int) else _js(cal)
            text += f'"q":{_js(flag)},"cal":{c},"id":{rid}'
            if sensor is not None:
                text += ',"sensor":' + _js(sensor)
            if why is not None:
                text += ',"why":' + _js(why)
            parts.append(text + "}")
        return ("[" + ",".join(parts) + "]").encode()

    def __len__(self) -> int:
        return len(self.rows)

    def span(self) -> Batch:
        """The same batch without its rows: all a batch in flight needs to be kept or
        acknowledged (so a window of packs in flight costs no memory for rows)."""
        return Batch(self.epoch, self.first, self.last, (), self.floor)
