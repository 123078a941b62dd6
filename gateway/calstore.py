"""The calibration store: every version of every set, and the calibration sessions, of a
station in SQLite (WAL) beside its outbox (``<outbox>-calibration.db``). Versions are
only ever added: a rollback stores a copy of an older version as a new one."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway._sqlite import sqlite_utils
from gateway.calibration import CalibrationError, CalSet


@dataclass(frozen=True)
class Session:
    """A calibration session: readings of ``sensor`` (one quantity or all) are flagged C."""

    id: int
    sensor: str
    quantity: str | None
    purpose: str  # zero | span | points | maintenance
    started: float
    ends: float
    closed: float | None = None

    def covers(self, sensor: str, quantity: str, ts: float) -> bool:
        end = self.ends if self.closed is None else min(self.ends, self.closed)
        return (
            sensor == self.sensor
            and (self.quantity is None or self.quantity == quantity)
            and self.started <= ts <= end
        )


class CalibrationStore:
    """The calibration sets and sessions of one station, in SQLite (WAL)."""

    def __init__(self, path: str | Path, station: str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.station = station
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            if not readonly:
                self.db.enable_wal()
                self._create()
        except sqlite3.Error as exc:
            raise CalibrationError(
                f"{self.path}: cannot open the calibration store: {exc}"
            ) from None

    def _create(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS cal_set (station TEXT NOT NULL, sensor TEXT NOT NULL,"
            " quantity TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL,"
            " slope REAL, offset REAL, points TEXT, kappa REAL, source TEXT, fit TEXT,"
            " effective REAL, created REAL, note TEXT, origin TEXT,"
            " PRIMARY KEY (station, sensor, quantity, version))"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS session (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " station TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT, purpose TEXT,"
            " started REAL, ends REAL, closed REAL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS session_reading (session INTEGER NOT NULL,"
            " ts REAL, quantity TEXT, raw REAL)"
        )

    def close(self) -> None:
        self.db.close()

    def data_version(self) -> int:
        """Changes when another connection (the CLI, a command) wrote to the store."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    # -- sets -----------------------------------------------------------------------
    def add(self, cs: CalSet, *, now: float) -> CalSet:
        """Store ``cs`` as the next version of its sensor and quantity; returns it numbered."""
        with self.db.atomic():
            row = self.db.execute(
                "SELECT MAX(version) FROM cal_set WHERE station=? AND sensor=? AND quantity=?",
                (self.station, cs.sensor, cs.quantity),
            ).fetchone()
            stored = replace(cs, version=int(row[0] or 0) + 1, created=now)
            self.db.execute(
                "INSERT INTO cal_set VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    self.station,
                    stored.sensor,
                    stored.quantity,
                    stored.version,
                    stored.kind,
                    stored.slope,
                    stored.offset,
                    json.dumps([list(p) for p in stored.points]),
                    stored.kappa,
                    stored.source,
                    json.dumps(dict(stored.fit)),
                    stored.effective,
                    stored.created,
                    stored.note,
                    stored.origin,
                ),
            )
        return stored

    def sets(self, sensor: str | None = None, quantity: str | None = None) -> list[CalSet]:
        """Every stored version, oldest first (per sensor and quantity)."""
        sql = "SELECT * FROM cal_set WHERE station=?"
        params: list[Any] = [self.station]
        if sensor is not None:
            sql += " AND sensor=?"
            params.append(sensor)
        if quantity is not None:
            sql += " AND quantity=?"
            params.append(quantity)
        sql += " ORDER BY sensor, quantity, version"
        try:
            rows = list(self.db.query(sql, params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [_row_to_set(r) for r in rows]

    def active(self, sensor: str, quantity: str, at: float) -> CalSet | None:
        """The set a reading of ``sensor``/``quantity`` taken at ``at`` is calibrated with:
        the highest version whose effective time is not after ``at``."""
        candidates = [s for s in self.sets(sensor, quantity) if s.effective <= at]
        return candidates[-1] if candidates else None

    def rollback(self, sensor: str, quantity: str, *, to: int | None, now: float) -> CalSet:
        """Make an older version current again, as a new version (history is kept)."""
        history = self.sets(sensor, quantity)
        if not history:
            raise CalibrationError(f"{sensor}/{quantity} has no calibration to roll back")
        current = self.active(sensor, quantity, now) or history[-1]
        if to is None:
            older = [s for s in history if s.version < current.version]
            if not older:
                raise CalibrationError(
                    f"{sensor}/{quantity} version {current.version} has no earlier version"
                )
            target = older[-1]
        else:
            found = [s for s in history if s.version == to]
            if not found:
                raise CalibrationError(f"{sensor}/{quantity} has no version {to}")
            target = found[0]
        copy = replace(target, effective=now, note=f"rollback to v{target.version}", origin="cli")
        return self.add(copy, now=now)

    # -- sessions -------------------------------------------------------------------
    def open_session(
        self, sensor: str, quantity: str | None, purpose: str, *, start: float, duration_s: float
    ) -> Session:
        cur = self.db.execute(
            "INSERT INTO session (station, sensor, quantity, purpose, started, ends)"
            " VALUES (?,?,?,?,?,?)",
            (self.station, sensor, quantity, purpose, start, start + duration_s),
        )
        self.db.conn.commit()
        return Session(
            int(cur.lastrowid or 0), sensor, quantity, purpose, start, start + duration_s
        )

    def close_session(self, session_id: int, *, at: float) -> None:
        self.db.execute(
            "UPDATE session SET closed=? WHERE id=? AND closed IS NULL", (at, session_id)
        )
        self.db.conn.commit()

    def sessions(self, *, at: float | None = None) -> list[Session]:
        """Sessions still open at ``at`` (every session when ``at`` is None)."""
        sql = "SELECT * FROM session WHERE station=?"
        params: list[Any] = [self.station]
        if at is not None:
            sql += " AND (closed IS NULL OR closed > ?) AND ends > ?"
            params += [at, at]
        try:
            rows = list(self.db.query(sql, params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [
            Session(
                r["id"],
                r["sensor"],
                r["quantity"],
                r["purpose"],
                r["started"],
                r["ends"],
                r["closed"],
            )
            for r in rows
        ]

    def add_session_readings(self, rows: Iterable[tuple[int, float, str, float]]) -> None:
        with self.db.atomic():
            self.db.conn.executemany("INSERT INTO session_reading VALUES (?,?,?,?)", rows)

    def session_readings(self, session_id: int, quantity: str) -> list[tuple[float, float]]:
        return [
            (float(ts), float(raw))
            for ts, raw in self.db.execute(
                "SELECT ts, raw FROM session_reading WHERE session=? AND quantity=? ORDER BY ts",
                (session_id, quantity),
            ).fetchall()
        ]


def _row_to_set(r: Mapping[str, Any]) -> CalSet:
    return CalSet(
        sensor=r["sensor"],
        quantity=r["quantity"],
        kind=r["kind"],
        slope=r["slope"],
        offset=r["offset"],
        points=tuple((float(a), float(b)) for a, b in json.loads(r["points"] or "[]")),
        kappa=r["kappa"],
        source=r["source"],
        fit=json.loads(r["fit"] or "{}"),
        effective=r["effective"],
        version=r["version"],
        created=r["created"],
        note=r["note"],
        origin=r["origin"],
    )
