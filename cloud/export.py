"""``airtrace cloud export`` (DESIGN 4.1): readings as stored, one per (station, epoch,
outbox id), ordered by station, epoch, id.

CSV columns, in this order: ``station,id,quantity,ts,value,raw,unit,q,cal,epoch`` — ``ts``
ISO 8601 UTC with ``Z`` (milliseconds), an empty cell for a missing value or raw. JSON
lines carry the same keys (``null`` for a missing value; ``cal`` an integer when the
gateway sent one). Streams from the store, so it works on millions of rows and while
``cloud run`` writes (SQLite WAL).
"""

from __future__ import annotations

import csv
import json
import re
from typing import IO, Any

from cloud.store import Store
from cloud.store.types import StoredReading
from protocols.timefmt import parse_iso, to_iso

COLUMNS = ("station", "id", "quantity", "ts", "value", "raw", "unit", "q", "cal", "epoch")
_INT = re.compile(r"^-?\d{1,18}$")


def _num(v: float | None) -> str:
    return "" if v is None else repr(v)


def _cal(cal: str) -> int | str:
    return int(cal) if _INT.match(cal) else cal


def csv_row(r: StoredReading) -> list[str]:
    return [
        r.station,
        str(r.id),
        r.quantity,
        to_iso(r.ts),
        _num(r.value),
        _num(r.raw),
        r.unit,
        r.q,
        r.cal,
        r.epoch,
    ]


def json_row(r: StoredReading) -> dict[str, Any]:
    return {
        "station": r.station,
        "id": r.id,
        "quantity": r.quantity,
        "ts": to_iso(r.ts),
        "value": r.value,
        "raw": r.raw,
        "unit": r.unit,
        "q": r.q,
        "cal": _cal(r.cal),
        "epoch": r.epoch,
    }


def export_readings(
    store: Store,
    out: IO[str],
    *,
    station: str | None = None,
    since: str | None = None,
    until: str | None = None,
    fmt: str = "csv",
) -> int:
    """Write the readings to ``out``; return how many."""
    s = None if since is None else parse_iso(since)
    u = None if until is None else parse_iso(until)
    n = 0
    rows = store.iter_readings(station=station, since=s, until=u)
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(csv_row(r))
            n += 1
    else:
        for r in rows:
            out.write(json.dumps(json_row(r), ensure_ascii=False) + "\n")
            n += 1
    out.flush()
    return n
