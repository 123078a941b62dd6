"""The store's custody half (DESIGN 4.2): the watermark of every (station, epoch), moved
from the database alone, and the gaps of ids counted lost.

``commit`` (in ``base.py``) records, per (station, epoch), the highest ``floor`` any pack
declared; ``advance_custody`` then moves the watermark as far as the stored rows allow —
the largest N such that every id 1..N is stored or lies below the floor — and records the
ids below the floor that never arrived as lost gaps. The usual case, every id above the
watermark stored, is checked in the engine (ids are unique, so COUNT = MAX - upto means no
hole); only a hole makes it walk the ids. The custody row is locked while it moves (``FOR
UPDATE`` on PostgreSQL; SQLite writes one at a time), so any number of workers may share one
database. A mixin of ``SqlStore``.
"""

# ruff: noqa: S608 - f-strings here only splice fixed column lists and dialect words;
# every value travels as a bound parameter.

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cloud.store.sql import conditions, where_clause
from cloud.store.types import Custody, Gap

if TYPE_CHECKING:
    from collections.abc import Callable

    _T = TypeVar("_T")

_CUSTODY_COLS = "station, epoch, upto, floor, lost, stored, received, updated"
_WALK_CHUNK = 10_000


class CustodyMixin:
    if TYPE_CHECKING:  # provided by SqlStore
        greatest: str
        for_update: str

        def _write(self, work: Callable[[Any], _T]) -> _T: ...
        def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def advance_custody(self, station: str, epoch: str, now: float) -> tuple[Custody, list[Gap]]:
        """Move the (station, epoch) watermark as far as the stored rows and the floor allow;
        return the custody row and any gaps newly counted as lost."""

        def work(cur: Any) -> tuple[Custody, list[Gap]]:
            row = self._exec(
                cur,
                f"SELECT upto, floor FROM custody WHERE station = ? AND epoch = ?{self.for_update}",
                (station, epoch),
            ).fetchone()
            if row is None:
                self._exec(
                    cur,
                    f"INSERT INTO custody ({_CUSTODY_COLS}) VALUES (?, ?, 0, 0, 0, 0, NULL, NULL) "
                    "ON CONFLICT (station, epoch) DO NOTHING",
                    (station, epoch),
                )
                upto, floor = 0, 0
            else:
                upto, floor = int(row[0]), int(row[1])
            gaps: list[tuple[int, int]] = []
            # the usual case, checked in the engine: every id above the watermark is there
            count, top = self._exec(
                cur,
                "SELECT COUNT(*), MAX(id) FROM readings WHERE station = ? AND epoch = ? AND id > ?",
                (station, epoch, upto),
            ).fetchone()
            done = not count or int(top) - upto == int(count)
            if done and count:
                upto = int(top)
            while not done:  # a hole: walk the ids to it (and past what the floor forgives)
                ids = [
                    int(r[0])
                    for r in self._exec(
                        cur,
                        "SELECT id FROM readings WHERE station = ? AND epoch = ? AND id > ? "
                        f"ORDER BY id LIMIT {_WALK_CHUNK}",
                        (station, epoch, upto),
                    ).fetchall()
                ]
                for rid in ids:
                    if rid == upto + 1:
                        upto = rid
                    elif rid - 1 < floor:  # every missing id before rid lies below the floor
                        gaps.append((upto + 1, rid - 1))
                        upto = rid
                    else:
                        if upto + 1 < floor:
                            gaps.append((upto + 1, floor - 1))
                            upto = floor - 1
                        done = True
                        break
                if len(ids) < _WALK_CHUNK:
                    done = True
            if floor - 1 > upto:
                gaps.append((upto + 1, floor - 1))
                upto = floor - 1
            lost = sum(b - a + 1 for a, b in gaps)
            for a, b in gaps:
                self._exec(
                    cur,
                    "INSERT INTO gaps (station, epoch, first_id, last_id, detected) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, epoch, first_id) DO NOTHING",
                    (station, epoch, a, b, now),
                )
            self._exec(
                cur,
                f"UPDATE custody SET upto = {self.greatest}(upto, ?), lost = lost + ?, "
                "updated = ? WHERE station = ? AND epoch = ?",
                (upto, lost, now, station, epoch),
            )
            got = self._exec(
                cur,
                f"SELECT {_CUSTODY_COLS} FROM custody WHERE station = ? AND epoch = ?",
                (station, epoch),
            ).fetchone()
            return _custody(got), [Gap(station, epoch, a, b, now, b - a + 1) for a, b in gaps]

        return self._write(work)

    def custody(self, station: str | None = None) -> list[Custody]:
        where, params = ("WHERE station = ?", (station,)) if station else ("", ())
        rows = self._all(
            f"SELECT {_CUSTODY_COLS} FROM custody {where} ORDER BY station, epoch", params
        )
        return [_custody(r) for r in rows]

    def gaps(self, station: str | None = None, epoch: str | None = None) -> list[Gap]:
        """Lost ranges, with how many of their ids are still missing now."""
        cond, params = conditions(("g.station = ?", station), ("g.epoch = ?", epoch))
        rows = self._all(
            "SELECT g.station, g.epoch, g.first_id, g.last_id, g.detected, "
            "(g.last_id - g.first_id + 1) - (SELECT COUNT(*) FROM readings r "
            "WHERE r.station = g.station AND r.epoch = g.epoch "
            "AND r.id BETWEEN g.first_id AND g.last_id) "
            f"FROM gaps g {where_clause(cond)} ORDER BY g.station, g.epoch, g.first_id",
            params,
        )
        return [Gap(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5])) for r in rows]


def _custody(r: Sequence[Any]) -> Custody:
    return Custody(
        station=r[0],
        epoch=r[1],
        upto=int(r[2]),
        floor=int(r[3]),
        lost=int(r[4]),
        stored=int(r[5]),
        received=None if r[6] is None else float(r[6]),
        updated=None if r[7] is None else float(r[7]),
    )
