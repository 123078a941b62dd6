"""SQLite back end: the embedded default. One file in WAL mode, one connection per thread,
writes in ``BEGIN IMMEDIATE`` transactions, ``synchronous=FULL`` by default (a committed
batch survives a power cut, which the custody watermark promises), readers never blocked —
so ``cloud export`` runs while ``cloud run`` writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloud.store.base import SqlStore, StoreError
from cloud.store.migrations import SQLITE_TOKENS
from cloud.store.types import Row

_INSERT = (
    "INSERT INTO readings (station, epoch, id, quantity, ts, value, raw, unit, q, cal, sensor, "
    "why, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (station, epoch, id) DO NOTHING"
)


class SqliteStore(SqlStore):
    kind = "sqlite"
    tokens = SQLITE_TOKENS

    def __init__(self, path: Path, *, synchronous: str = "full", busy_timeout_s: float = 30.0):
        super().__init__(f"sqlite:///{path}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    @contextmanager
    def _begin(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            retryable = "locked" in text or "busy" in text
            raise StoreError(f"sqlite {self.path}: {text}", retryable=retryable) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    def _insert_rows(
        self, cur: Any, station: str, epoch: str, rows: Sequence[Row], received: float
    ) -> int:
        cur.executemany(_INSERT, [(station, epoch, *r, received) for r in rows])
        return int(cur.rowcount)
