"""PostgreSQL back end (psycopg 3, imported lazily: it is the ``postgres`` extra).

One connection per thread in autocommit mode; writes run in ``conn.transaction()``. Rows of
one (station, epoch) go in as one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO
NOTHING`` statement. Several workers may share the database: the custody row is locked
(``FOR UPDATE``) while the watermark moves, rows are inserted in key order so concurrent
batches cannot deadlock on each other's keys, and a deadlock or serialization failure is
retried. A lost connection is dropped and made anew on the next try.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cloud.store.base import SqlStore, StoreError
from cloud.store.migrations import POSTGRES_TOKENS
from cloud.store.types import Row

_INSERT = (
    "INSERT INTO readings (station, epoch, id, quantity, ts, value, raw, unit, q, cal, sensor, "
    "why, received) "
    "SELECT %s::text, %s::text, u.id, u.quantity, u.ts, u.value, u.raw, u.unit, u.q, u.cal, "
    "u.sensor, u.why, %s::float8 "
    "FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::float8[], %s::float8[], "
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS u(id, quantity, ts, value, raw, unit, q, cal, sensor, why) "
    "ON CONFLICT (station, epoch, id) DO NOTHING"
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
        cols = list(zip(*rows, strict=True))
        cur.execute(_INSERT, (station, epoch, received, *[list(c) for c in cols]))
        return int(cur.rowcount)
