"""PostgreSQL back end (psycopg 3, imported lazily: it is the ``postgres`` extra).

One connection per thread in autocommit mode; writes run in ``conn.transaction()``. A batch's
readings go in as one binary ``COPY`` into the session's temporary staging table
(``readings_in``, emptied at every commit), then one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING`` into ``readings`` — so a resend stays a no-op, exactly as before. Several workers
may share the database: the custody row is locked (``FOR UPDATE``) while the watermark moves,
rows are inserted in key order so concurrent batches cannot deadlock on each other's keys,
and a deadlock or serialization failure is retried. A lost connection is dropped and made
anew on the next try.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cloud.store.base import SqlStore, StoreError
from cloud.store.migrations import POSTGRES_TOKENS
from cloud.store.types import Row

_COLS = "station, epoch, id, quantity, ts, value, raw, unit, q, cal, sensor, why"
_TYPES = ("text", "text", "int8", "text", "float8", "float8", "float8") + ("text",) * 5
# a session's staging table for one batch's rows: emptied by every commit, never logged;
# made (if need be) inside each batch's transaction, so a rolled-back one cannot lose it and a
# read-only connection (a standby serving exports) never needs it
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS readings_in (station TEXT, epoch TEXT, id BIGINT, "
    "quantity TEXT, ts DOUBLE PRECISION, value DOUBLE PRECISION, raw DOUBLE PRECISION, "
    "unit TEXT, q TEXT, cal TEXT, sensor TEXT, why TEXT) ON COMMIT DELETE ROWS"
)
_COPY = f"COPY pg_temp.readings_in ({_COLS}) FROM STDIN (FORMAT BINARY)"
# key order, so concurrent batches of several workers cannot deadlock on each other's keys;
# the per-(station, epoch) counts of what was new come back, not the rows
_MERGE = (
    "WITH ins AS ("  # noqa: S608 - only the fixed column list is spliced in
    f"INSERT INTO readings ({_COLS}, received) "
    f"SELECT {_COLS}, %s::float8 FROM pg_temp.readings_in ORDER BY station, epoch, id "
    "ON CONFLICT (station, epoch, id) DO NOTHING RETURNING station, epoch) "
    "SELECT station, epoch, COUNT(*) FROM ins GROUP BY station, epoch"
)


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PostgresStore(SqlStore):
    kind = "postgres"
    placeholder = "%s"
    greatest = "GREATEST"
    for_update = " FOR UPDATE"
    tokens = POSTGRES_TOKENS

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        super().__init__(_redact(dsn))
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "store.url is PostgreSQL but psycopg is not installed: "
                "pip install 'airtrace[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._dsn = dsn
        self.connect_timeout_s = connect_timeout_s

    def _connect(self) -> Any:
        return self._psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=self.connect_timeout_s
        )

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            with contextlib.suppress(Exception):  # it is already broken
                conn.close()

    @contextmanager
    def _begin(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextmanager
    def _errors(self) -> Iterator[None]:
        psycopg = self._psycopg
        try:
            yield
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise StoreError(f"postgres {self.url}: {exc}", retryable=True) from exc
        except psycopg.OperationalError as exc:
            self._drop_connection()
            text = " ".join(str(exc).split())
            raise StoreError(f"postgres {self.url}: {text}", retryable=True) from exc
        except psycopg.Error as exc:
            if getattr(self._local, "conn", None) is not None and self._local.conn.broken:
                self._drop_connection()
            text = " ".join(str(exc).split())
            raise StoreError(f"postgres {self.url}: {text}") from exc

    def _insert_rows(
        self, cur: Any, station: str, epoch: str, rows: Sequence[Row], received: float
    ) -> int:
        return self._insert_groups(cur, [((station, epoch), rows)], received).get(
            (station, epoch), 0
        )

    def _insert_groups(
        self, cur: Any, groups: Sequence[tuple[tuple[str, str], Sequence[Row]]], received: float
    ) -> dict[tuple[str, str], int]:
        """Every row of the batch in one binary COPY to the session's staging table, then one
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in key order."""
        cur.execute(_STAGE)
        with cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            write = copy.write_row
            for (station, epoch), rows in groups:
                head = (station, epoch)
                for r in rows:
                    write(head + r)
        cur.execute(_MERGE, (received,))
        return {(r[0], r[1]): int(r[2]) for r in cur.fetchall()}
