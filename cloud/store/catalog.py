"""The store's catalogue half: the registry (stations, sites with their responsible persons,
areas), commands sent to gateways, co-location calibrations and station health.

A mixin of ``SqlStore``: it uses only ``_write``, ``_exec``, ``_all`` and ``_one``.
"""

# ruff: noqa: S608 - f-strings here only splice fixed column lists and dialect words;
# every value travels as a bound parameter.

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cloud.store.sql import conditions, where_clause
from cloud.store.types import (
    Area,
    Calibration,
    CommandRecord,
    Health,
    Person,
    Site,
    Station,
    dumps,
)
from protocols.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    _T = TypeVar("_T")

_STATION_COLS = (
    "id, kind, status, name, lat, lon, inlet_height_m, gateway, sensors, hj212_mn, hj212_pw, "
    "state, state_at, epoch, first_seen, confirmed_at, reported"
)
_SITE_COLS = "id, kind, name, lat, lon, h_m, control_level, enterprise, address"
_CAL_COLS = (
    "seq, station, sensor, quantity, reference, window_start, window_end, n, slope, intercept, "
    "kappa, r2, rmse, raw_slope, raw_intercept, raw_r2, raw_rmse, meets_targets, created, "
    "command_id"
)
_CMD_COLS = "id, station, cmd, args, issued, status, acked, result, error"
_PERSON_COLS = "site, name, role, phone, email, webhook"


class NotFound(InputError):
    """The registry has no such entry."""


class CatalogMixin:
    if TYPE_CHECKING:  # provided by SqlStore

        def _write(self, work: Callable[[Any], _T]) -> _T: ...
        def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    # -- stations ---------------------------------------------------------------------
    def get_station(self, station_id: str) -> Station | None:
        row = self._one(f"SELECT {_STATION_COLS} FROM stations WHERE id = ?", (station_id,))
        return None if row is None else _station(row)

    def station_by_mn(self, mn: str) -> Station | None:
        row = self._one(f"SELECT {_STATION_COLS} FROM stations WHERE hj212_mn = ?", (mn,))
        return None if row is None else _station(row)

    def stations(self, status: str | None = None) -> list[Station]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self._all(f"SELECT {_STATION_COLS} FROM stations {where} ORDER BY id", params)
        return [_station(r) for r in rows]

    def put_station(self, st: Station) -> None:
        """Insert or replace a station's registry entry (the operator's word)."""

        def work(cur: Any) -> None:
            if st.hj212_mn is not None:
                other = self._exec(
                    cur,
                    "SELECT id FROM stations WHERE hj212_mn = ? AND id <> ?",
                    (st.hj212_mn, st.id),
                ).fetchone()
                if other is not None:
                    raise InputError(
                        f"HJ 212 MN {st.hj212_mn} already belongs to station {other[0]}"
                    )
            params = (
                st.id,
                st.kind,
                st.status,
                st.name,
                st.lat,
                st.lon,
                st.inlet_height_m,
                st.gateway,
                dumps([dict(s) for s in st.sensors]),
                st.hj212_mn,
                st.hj212_pw,
                st.state,
                st.state_at,
                st.epoch,
                st.first_seen,
                st.confirmed_at,
                dumps(dict(st.reported)),
            )
            cols = _STATION_COLS.split(", ")
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
            self._exec(
                cur,
                f"INSERT INTO stations ({_STATION_COLS}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT (id) DO UPDATE SET {updates}",
                params,
            )

        self._write(work)

    def confirm_station(self, station_id: str, now: float) -> Station:
        """An operator accepts a pending station (its self-reported description stays)."""

        def work(cur: Any) -> int:
            return int(
                self._exec(
                    cur,
                    "UPDATE stations SET status = 'confirmed', confirmed_at = ? WHERE id = ?",
                    (now, station_id),
                ).rowcount
            )

        if not self._write(work):
            raise NotFound(f"no station {station_id!r} in the registry", station=station_id)
        st = self.get_station(station_id)
        assert st is not None
        return st

    def delete_station(self, station_id: str) -> bool:
        """Remove a station from the registry (its stored readings stay)."""
        return bool(
            self._write(
                lambda cur: (
                    self._exec(cur, "DELETE FROM stations WHERE id = ?", (station_id,)).rowcount
                )
            )
        )

    # -- sites and responsible persons -----------------------------------------------
    def get_site(self, site_id: str) -> Site | None:
        row = self._one(f"SELECT {_SITE_COLS} FROM sites WHERE id = ?", (site_id,))
        if row is None:
            return None
        return _site(row, self._persons(site_id))

    def _persons(self, site_id: str) -> list[Person]:
        rows = self._all(
            f"SELECT {_PERSON_COLS} FROM persons WHERE site = ? ORDER BY name", (site_id,)
        )
        return [Person(*r) for r in rows]

    def sites(self, kind: str | None = None) -> list[Site]:
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self._all(f"SELECT {_SITE_COLS} FROM sites {where} ORDER BY id", params)
        persons: dict[str, list[Person]] = {}
        for p in self._all(f"SELECT {_PERSON_COLS} FROM persons ORDER BY site, name"):
            persons.setdefault(p[0], []).append(Person(*p))
        return [_site(r, persons.get(r[0], [])) for r in rows]

    def put_site(self, site: Site) -> None:
        """Insert or replace a site and its responsible persons."""

        def work(cur: Any) -> None:
            cols = _SITE_COLS.split(", ")
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
            self._exec(
                cur,
                f"INSERT INTO sites ({_SITE_COLS}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT (id) DO UPDATE SET {updates}",
                (
                    site.id,
                    site.kind,
                    site.name,
                    site.lat,
                    site.lon,
                    site.h_m,
                    site.control_level,
                    site.enterprise,
                    site.address,
                ),
            )
            self._exec(cur, "DELETE FROM persons WHERE site = ?", (site.id,))
            for p in site.persons:
                self._exec(
                    cur,
                    f"INSERT INTO persons ({_PERSON_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (site.id, p.name, p.role, p.phone, p.email, p.webhook),
                )

        self._write(work)

    def delete_site(self, site_id: str) -> bool:
        def work(cur: Any) -> int:
            self._exec(cur, "DELETE FROM persons WHERE site = ?", (site_id,))
            return int(self._exec(cur, "DELETE FROM sites WHERE id = ?", (site_id,)).rowcount)

        return bool(self._write(work))

    # -- areas ------------------------------------------------------------------------
    def get_area(self, area_id: str) -> Area | None:
        row = self._one("SELECT id, name, kind, geometry FROM areas WHERE id = ?", (area_id,))
        return None if row is None else Area(row[0], row[1], row[2], json.loads(row[3]))

    def areas(self) -> list[Area]:
        rows = self._all("SELECT id, name, kind, geometry FROM areas ORDER BY id")
        return [Area(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def put_area(self, area: Area) -> None:
        self._write(
            lambda cur: self._exec(
                cur,
                "INSERT INTO areas (id, name, kind, geometry) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, "
                "geometry = excluded.geometry",
                (area.id, area.name, area.kind, dumps(dict(area.geometry))),
            )
        )

    def delete_area(self, area_id: str) -> bool:
        return bool(
            self._write(
                lambda cur: self._exec(cur, "DELETE FROM areas WHERE id = ?", (area_id,)).rowcount
            )
        )

    # -- commands ---------------------------------------------------------------------
    def add_command(self, rec: CommandRecord) -> None:
        self._write(
            lambda cur: self._exec(
                cur,
                f"INSERT INTO commands ({_CMD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.station,
                    rec.cmd,
                    dumps(dict(rec.args)),
                    rec.issued,
                    rec.status,
                    rec.acked,
                    dumps(dict(rec.result)),
                    rec.error,
                ),
            )
        )

    def get_command(self, command_id: str) -> CommandRecord | None:
        row = self._one(f"SELECT {_CMD_COLS} FROM commands WHERE id = ?", (command_id,))
        return None if row is None else _command(row)

    def commands(self, station: str | None = None, limit: int = 100) -> list[CommandRecord]:
        where, params = ("WHERE station = ?", (station,)) if station else ("", ())
        rows = self._all(
            f"SELECT {_CMD_COLS} FROM commands {where} ORDER BY issued DESC LIMIT {int(limit)}",
            params,
        )
        return [_command(r) for r in rows]

    # -- calibrations -----------------------------------------------------------------
    def add_calibration(self, cal: Calibration) -> int:
        def work(cur: Any) -> int:
            cols = _CAL_COLS.split(", ")[1:]
            row = self._exec(
                cur,
                f"INSERT INTO calibrations ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))}) RETURNING seq",
                (
                    cal.station,
                    cal.sensor,
                    cal.quantity,
                    cal.reference,
                    cal.window_start,
                    cal.window_end,
                    cal.n,
                    cal.slope,
                    cal.offset,
                    cal.kappa,
                    cal.r2,
                    cal.rmse,
                    cal.raw_slope,
                    cal.raw_intercept,
                    cal.raw_r2,
                    cal.raw_rmse,
                    int(cal.meets_targets),
                    cal.created,
                    cal.command_id,
                ),
            ).fetchone()
            return int(row[0])

        return int(self._write(work))

    def set_calibration_command(self, seq: int, command_id: str) -> None:
        self._write(
            lambda cur: self._exec(
                cur, "UPDATE calibrations SET command_id = ? WHERE seq = ?", (command_id, seq)
            )
        )

    def calibrations(self, station: str | None = None, limit: int = 100) -> list[Calibration]:
        where, params = ("WHERE station = ?", (station,)) if station else ("", ())
        rows = self._all(
            f"SELECT {_CAL_COLS} FROM calibrations {where} ORDER BY seq DESC LIMIT {int(limit)}",
            params,
        )
        return [_calibration(r) for r in rows]

    # -- hourly inversion results ----------------------------------------------------
    def put_inversion_result(
        self, hour: float, quantity: str, result: Mapping[str, Any], computed: float
    ) -> None:
        """Keep (or replace) the inversion's RESULT.json of an hour (DESIGN 4.3)."""
        self._write(
            lambda cur: self._exec(
                cur,
                "INSERT INTO inversion_results (hour, quantity, result, computed) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (hour, quantity) DO UPDATE SET "
                "result = excluded.result, computed = excluded.computed",
                (hour, quantity, dumps(dict(result)), computed),
            )
        )

    def inversion_results(
        self, since: float | None = None, until: float | None = None, quantity: str | None = None
    ) -> list[tuple[float, str, dict[str, Any], float]]:
        """(hour, quantity, result, computed), oldest first."""
        cond, params = conditions(
            ("hour >= ?", since), ("hour < ?", until), ("quantity = ?", quantity)
        )
        rows = self._all(
            f"SELECT hour, quantity, result, computed FROM inversion_results {where_clause(cond)} "
            "ORDER BY hour, quantity",
            params,
        )
        return [(float(r[0]), r[1], json.loads(r[2]), float(r[3])) for r in rows]

    def last_inversion_hour(self, quantity: str) -> float | None:
        """The newest hour with a stored result for ``quantity`` (None: none yet)."""
        row = self._one("SELECT MAX(hour) FROM inversion_results WHERE quantity = ?", (quantity,))
        return None if row is None or row[0] is None else float(row[0])

    # -- health -----------------------------------------------------------------------
    def put_health(self, items: Iterable[Health]) -> None:
        items = list(items)

        def work(cur: Any) -> None:
            for h in items:
                self._exec(
                    cur,
                    "INSERT INTO health (station, status, reasons, computed, last_received) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (station) DO UPDATE SET "
                    "status = excluded.status, reasons = excluded.reasons, "
                    "computed = excluded.computed, last_received = excluded.last_received",
                    (h.station, h.status, dumps(list(h.reasons)), h.computed, h.last_received),
                )

        self._write(work)

    def health(self) -> dict[str, Health]:
        rows = self._all(
            "SELECT station, status, reasons, computed, last_received FROM health ORDER BY station"
        )
        return {
            r[0]: Health(
                r[0],
                r[1],
                tuple(json.loads(r[2])),
                float(r[3]),
                None if r[4] is None else float(r[4]),
            )
            for r in rows
        }


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def _station(r: Sequence[Any]) -> Station:
    return Station(
        id=r[0],
        kind=r[1],
        status=r[2],
        name=r[3],
        lat=_f(r[4]),
        lon=_f(r[5]),
        inlet_height_m=_f(r[6]),
        gateway=r[7],
        sensors=tuple(json.loads(r[8] or "[]")),
        hj212_mn=r[9],
        hj212_pw=r[10],
        state=r[11],
        state_at=_f(r[12]),
        epoch=r[13],
        first_seen=_f(r[14]),
        confirmed_at=_f(r[15]),
        reported=json.loads(r[16] or "{}"),
    )


def _site(r: Sequence[Any], persons: Sequence[Person]) -> Site:
    return Site(
        id=r[0],
        kind=r[1],
        name=r[2],
        lat=_f(r[3]),
        lon=_f(r[4]),
        h_m=_f(r[5]),
        control_level=r[6],
        enterprise=r[7],
        address=r[8],
        persons=tuple(persons),
    )


def _command(r: Sequence[Any]) -> CommandRecord:
    return CommandRecord(
        id=r[0],
        station=r[1],
        cmd=r[2],
        args=json.loads(r[3]),
        issued=float(r[4]),
        status=r[5],
        acked=_f(r[6]),
        result=json.loads(r[7] or "{}"),
        error=r[8],
    )


def _calibration(r: Sequence[Any]) -> Calibration:
    return Calibration(
        seq=int(r[0]),
        station=r[1],
        sensor=r[2],
        quantity=r[3],
        reference=r[4],
        window_start=float(r[5]),
        window_end=float(r[6]),
        n=int(r[7]),
        slope=float(r[8]),
        offset=float(r[9]),
        kappa=_f(r[10]),
        r2=float(r[11]),
        rmse=float(r[12]),
        raw_slope=float(r[13]),
        raw_intercept=float(r[14]),
        raw_r2=float(r[15]),
        raw_rmse=float(r[16]),
        meets_targets=bool(r[17]),
        created=float(r[18]),
        command_id=r[19],
    )
