"""The store's engine-neutral core: connections, migrations, the ingest transaction, readings
and quarantine (custody is in ``custody.py``, the registry and the rest in ``catalog.py``).

Both back ends (``sqlite.py``, ``postgres.py``) run the same SQL, written with ``?``
placeholders and dialect tokens; a back end supplies connections, transactions, the bulk
insert and the translation of its library's errors into ``StoreError`` (in one place).

``commit`` stores a batch in one transaction: readings (a resend is a no-op), unknown
stations as pending, statuses, acks, quarantine, and per (station, epoch) the highest
``floor`` a pack declared — what ``advance_custody`` needs to move the watermark.
"""

# ruff: noqa: S608 - f-strings here only splice fixed column lists and dialect words;
# every value travels as a bound parameter.

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

from cloud.store.catalog import CatalogMixin
from cloud.store.components import ComponentsMixin
from cloud.store.custody import _CUSTODY_COLS, CustodyMixin
from cloud.store.migrations import COMPONENTS, LATEST, MIGRATIONS, statements
from cloud.store.sql import conditions, where_clause
from cloud.store.types import (
    Batch,
    Committed,
    PackRows,
    QuarantineEntry,
    Row,
    StatusUpdate,
    StoredReading,
    dumps,
)
from protocols.errors import AirtraceError
from protocols.telemetry import Status

log = logging.getLogger(__name__)
T = TypeVar("T")

_READING_COLS = "station, epoch, id, quantity, ts, value, raw, unit, q, cal, sensor, why, received"


class StoreError(AirtraceError):
    """The database failed; ``retryable`` says whether trying the same work again can help."""

    def __init__(self, message: str, *, retryable: bool = False, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retryable = retryable


class SqlStore(CatalogMixin, CustodyMixin, ComponentsMixin):
    """One store interface over SQL; subclasses bind it to an engine."""

    kind = "sql"
    placeholder = "?"
    greatest = "MAX"
    for_update = ""
    tokens: ClassVar[dict[str, str]] = {}
    write_retries = 5

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    # -- engine hooks -----------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _begin(self, conn: Any) -> Iterator[Any]:
        """A write transaction on ``conn``, yielding a cursor."""
        raise NotImplementedError
        yield

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate the engine library's exceptions into StoreError."""
        yield

    def _insert_rows(
        self, cur: Any, station: str, epoch: str, rows: Sequence[Row], received: float
    ) -> int:
        """Insert rows of one (station, epoch), skipping existing keys; return how many were new."""
        raise NotImplementedError

    def _insert_groups(
        self, cur: Any, groups: Sequence[tuple[tuple[str, str], Sequence[Row]]], received: float
    ) -> dict[tuple[str, str], int]:
        """Insert the rows of each (station, epoch) (in key order), skipping existing keys;
        return how many of each were new. A back end may do it all at once."""
        return {key: self._insert_rows(cur, key[0], key[1], rows, received) for key, rows in groups}

    # -- plumbing ---------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _conn(self) -> Any:
        if self._closed:
            raise StoreError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._errors():
                conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in one write transaction, retrying retryable conflicts."""
        for attempt in range(self.write_retries + 1):
            try:
                with self._errors(), self._begin(self._conn()) as cur:
                    return work(cur)
            except StoreError as exc:
                if not exc.retryable or attempt == self.write_retries:
                    raise
                log.info("store: retrying a write after %s", exc)
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._errors():
            cur = self._conn().cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read() as cur:
            return [tuple(r) for r in self._exec(cur, sql, params).fetchall()]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._read() as cur:
            row = self._exec(cur, sql, params).fetchone()
            return None if row is None else tuple(row)

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                log.debug("store: closing a connection failed", exc_info=True)

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self._one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self) -> int:
        """Apply every migration above the recorded version; return the version reached."""

        def ensure(cur: Any) -> None:
            self._exec(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, note TEXT NOT NULL)",
            )

        self._write(ensure)
        for version, note, _ in MIGRATIONS:

            def apply(cur: Any, version: int = version, note: str = note) -> bool:
                row = self._exec(
                    cur, "SELECT version FROM schema_version WHERE version = ?", (version,)
                ).fetchone()
                if row is not None:
                    return False
                for stmt in statements(version, self.tokens):
                    self._exec(cur, stmt)
                self._exec(
                    cur, "INSERT INTO schema_version (version, note) VALUES (?, ?)", (version, note)
                )
                return True

            if self._write(apply):
                log.info("store: schema migrated to version %d (%s)", version, note)
        found = self.schema_version()
        if found > LATEST:
            raise StoreError(
                f"the database has schema version {found}, newer than this airtrace ({LATEST})"
            )
        for component in COMPONENTS:
            self._migrate_component(component)
        return found

    # -- ingest -----------------------------------------------------------------------
    def commit(self, batch: Batch) -> Committed:
        """Store a batch in one transaction: readings (one row per station, epoch, id; a
        resend is a no-op), unknown stations as pending, statuses, command acks, quarantine."""
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        unsorted: set[tuple[str, str]] = set()  # packs arrive with their rows sorted by id
        floors: dict[tuple[str, str], int] = {}
        for pack in batch.packs:
            key = (pack.station, pack.epoch)
            group = groups[key]
            if group and pack.rows and group[-1][0] >= pack.rows[0][0]:
                unsorted.add(key)
            group.extend(pack.rows)
            if pack.floor is not None:
                floors[key] = max(floors.get(key, 0), pack.floor)
        received = batch.received

        ordered = []
        streams: dict[tuple[str, str], tuple[str, float]] = {}
        for key in sorted(groups):
            rows = groups[key]
            if key in unsorted:
                rows.sort(key=itemgetter(0))
            ordered.append((key, rows))
            _latest(streams, key[0], rows)

        def work(cur: Any) -> Committed:
            new = total = 0
            stations = sorted({s for s, _ in groups})
            for station in stations:
                self._exec(
                    cur,
                    "INSERT INTO stations (id, kind, status, first_seen) "
                    "VALUES (?, 'other', 'pending', ?) ON CONFLICT (id) DO NOTHING",
                    (station, received),
                )
            counts = self._insert_groups(cur, ordered, received)
            for key, rows in ordered:
                station, epoch = key
                n = counts.get(key, 0)
                new += n
                total += len(rows)
                self._exec(
                    cur,
                    f"INSERT INTO custody ({_CUSTODY_COLS}) VALUES (?, ?, 0, ?, 0, ?, ?, NULL) "
                    "ON CONFLICT (station, epoch) DO UPDATE SET "
                    f"floor = {self.greatest}(custody.floor, excluded.floor), "
                    "stored = custody.stored + excluded.stored, received = excluded.received",
                    (station, epoch, floors.get(key, 0), n, received),
                )
            for (station, quantity), (unit, ts) in sorted(streams.items()):
                self._exec(
                    cur,
                    "INSERT INTO streams (station, quantity, unit, last_ts, last_received) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, quantity) DO UPDATE SET "
                    "unit = excluded.unit, "
                    f"last_ts = {self.greatest}(streams.last_ts, excluded.last_ts), "
                    "last_received = excluded.last_received",
                    (station, quantity, unit, ts, received),
                )
            for st in batch.statuses:
                self._apply_status(cur, st)
            for a in batch.acks:
                self._exec(
                    cur,
                    "UPDATE commands SET status = ?, acked = ?, result = ?, error = ? "
                    "WHERE id = ? AND station = ?",
                    (
                        a.ack.status,
                        a.received,
                        dumps(dict(a.ack.result)),
                        a.ack.error,
                        a.ack.id,
                        a.station,
                    ),
                )
            for item in batch.quarantine:
                self._exec(
                    cur,
                    "INSERT INTO quarantine (received, source, topic, station, reason, "
                    "reason_class, size, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.received,
                        item.source,
                        item.topic,
                        item.station,
                        item.reason,
                        item.reason_class,
                        item.size or len(item.payload),
                        item.payload,
                    ),
                )
            return Committed(new=new, duplicates=total - new, touched=frozenset(groups))

        return self._write(work)

    def add_readings(self, pack: PackRows, received: float) -> Committed:
        """Store one pack of readings (the HJ 212 server's path): ``commit`` of one pack."""
        return self.commit(Batch(packs=(pack,), received=received))

    def _apply_status(self, cur: Any, update: StatusUpdate) -> None:
        s: Status = update.status
        at = update.received
        self._exec(
            cur,
            "INSERT INTO stations (id, kind, status, first_seen) "
            "VALUES (?, 'other', 'pending', ?) ON CONFLICT (id) DO NOTHING",
            (update.station, at),
        )
        row = self._exec(
            cur,
            f"SELECT status, state_at FROM stations WHERE id = ?{self.for_update}",
            (update.station,),
        ).fetchone()
        status, state_at = row[0], row[1]
        if state_at is not None and state_at > at:
            return  # an older status processed late (another worker): the newer one stands
        if s.state == "offline":
            self._exec(
                cur,
                "UPDATE stations SET state = 'offline', state_at = ? WHERE id = ?",
                (at, update.station),
            )
            return
        from cloud.store.types import STATION_KINDS

        reported = {"state": s.state, **dict(s.extra)}
        for name in ("kind", "lat", "lon", "inlet_height_m", "version", "ts", "epoch"):
            value = getattr(s, name)
            if value is not None:
                reported[name] = value
        if s.sensors:
            reported["sensors"] = [dict(x) for x in s.sensors]
        sets = [
            "state = 'online'",
            "state_at = ?",
            "gateway = ?",
            "sensors = ?",
            "epoch = COALESCE(?, epoch)",
            "reported = ?",
        ]
        params: list[Any] = [
            at,
            s.version,
            dumps([dict(x) for x in s.sensors]),
            s.epoch,
            dumps(reported),
        ]
        if status == "pending":  # the station describes itself until an operator confirms it
            kind = s.kind if s.kind in STATION_KINDS else "other"
            sets += ["kind = ?", "lat = ?", "lon = ?", "inlet_height_m = ?"]
            params += [kind, s.lat, s.lon, s.inlet_height_m]
        self._exec(
            cur, f"UPDATE stations SET {', '.join(sets)} WHERE id = ?", (*params, update.station)
        )

    # -- readings ---------------------------------------------------------------------
    def iter_readings(
        self,
        station: str | None = None,
        since: float | None = None,
        until: float | None = None,
        quantity: str | None = None,
        epoch: str | None = None,
        chunk: int = 5000,
    ) -> Iterator[StoredReading]:
        """Readings as stored, ordered by station, epoch, id; ``since`` <= ts < ``until``.
        Streams in key-ordered chunks, so an export of millions of rows stays small."""
        cond, params = conditions(
            ("station = ?", station),
            ("ts >= ?", since),
            ("ts < ?", until),
            ("quantity = ?", quantity),
            ("epoch = ?", epoch),
        )
        after: tuple[str, str, int] | None = None
        while True:
            page_cond = list(cond)
            page_params = list(params)
            if after is not None:
                page_cond.append(
                    "(station > ? OR (station = ? AND (epoch > ? OR (epoch = ? AND id > ?))))"
                )
                page_params += [after[0], after[0], after[1], after[1], after[2]]
            rows = self._all(
                f"SELECT {_READING_COLS} FROM readings {where_clause(page_cond)} "
                f"ORDER BY station, epoch, id LIMIT {int(chunk)}",
                page_params,
            )
            for r in rows:
                yield _reading(r)
            if len(rows) < chunk:
                return
            last = rows[-1]
            after = (last[0], last[1], int(last[2]))

    def latest_readings(
        self, station: str, quantity: str | None = None, limit: int = 100
    ) -> list[StoredReading]:
        """A station's most recent readings by time (newest first)."""
        if quantity is None:
            return [
                r
                for q in self.stream_quantities(station)
                for r in self.latest_readings(station, q, limit)
            ]
        rows = self._all(
            f"SELECT {_READING_COLS} FROM readings WHERE station = ? AND quantity = ? "
            f"ORDER BY ts DESC LIMIT {int(limit)}",
            (station, quantity),
        )
        return [_reading(r) for r in rows]

    def series(
        self, station: str, quantity: str, since: float, until: float
    ) -> list[tuple[float, float | None, float | None, str, str | None, str]]:
        """(ts, value, raw, q, sensor, unit) of one station's quantity, since <= ts < until,
        by time."""
        rows = self._all(
            "SELECT ts, value, raw, q, sensor, unit FROM readings WHERE station = ? "
            "AND quantity = ? AND ts >= ? AND ts < ? ORDER BY ts, epoch, id",
            (station, quantity, since, until),
        )
        return [
            (
                float(r[0]),
                None if r[1] is None else float(r[1]),
                None if r[2] is None else float(r[2]),
                str(r[3]),
                r[4],
                str(r[5]),
            )
            for r in rows
        ]

    def streams(self, station: str | None = None) -> list[tuple[str, str, str, float, float]]:
        """(station, quantity, unit, last_ts, last_received) for every series stored."""
        where, params = ("WHERE station = ?", (station,)) if station else ("", ())
        return [
            (r[0], r[1], r[2], float(r[3]), float(r[4]))
            for r in self._all(
                "SELECT station, quantity, unit, last_ts, last_received FROM streams "
                f"{where} ORDER BY station, quantity",
                params,
            )
        ]

    def stream_quantities(self, station: str) -> list[str]:
        return [s[1] for s in self.streams(station)]

    def reading_count(self, station: str | None = None) -> int:
        where, params = ("WHERE station = ?", (station,)) if station else ("", ())
        row = self._one(f"SELECT COALESCE(SUM(stored), 0) FROM custody {where}", params)
        return int(row[0]) if row else 0

    # -- quarantine -------------------------------------------------------------------
    def quarantine_entries(
        self, limit: int = 100, reason_class: str | None = None
    ) -> list[QuarantineEntry]:
        where, params = ("WHERE reason_class = ?", (reason_class,)) if reason_class else ("", ())
        rows = self._all(
            "SELECT seq, received, source, topic, station, reason, reason_class, size, payload "
            f"FROM quarantine {where} ORDER BY seq DESC LIMIT {int(limit)}",
            params,
        )
        return [
            QuarantineEntry(
                int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], r[6], int(r[7]), bytes(r[8])
            )
            for r in rows
        ]

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._all(
            "SELECT reason_class, COUNT(*) FROM quarantine GROUP BY reason_class ORDER BY 1"
        )
        return {r[0]: int(r[1]) for r in rows}


def _latest(
    streams: dict[tuple[str, str], tuple[str, float]], station: str, rows: Sequence[Row]
) -> None:
    """Fold rows into ``streams``: (station, quantity) -> (unit, ts) of the latest reading
    (the first of equal times). Most packs carry one or a few quantities: group in C."""
    quantities = set(map(itemgetter(1), rows))
    for quantity in quantities:
        mine = rows if len(quantities) == 1 else [r for r in rows if r[1] == quantity]
        best = max(mine, key=itemgetter(2))  # max keeps the first of equal keys
        sk = (station, quantity)
        last = streams.get(sk)
        if last is None or best[2] > last[1]:
            streams[sk] = (best[5], best[2])


def _reading(r: Sequence[Any]) -> StoredReading:
    return StoredReading(
        station=r[0],
        epoch=r[1],
        id=int(r[2]),
        quantity=r[3],
        ts=float(r[4]),
        value=None if r[5] is None else float(r[5]),
        raw=None if r[6] is None else float(r[6]),
        unit=r[7],
        q=r[8],
        cal=r[9],
        sensor=r[10],
        why=r[11],
        received=float(r[12]),
    )
