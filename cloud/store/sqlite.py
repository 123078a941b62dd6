"""SQLite back end: the embedded default. One file in WAL mode, one connection per thread,
writes in ``BEGIN IMMEDIATE`` transactions, ``synchronous=FULL`` by default (a committed
batch survives a power cut, which the custody watermark promises), readers never blocked —
so ``cloud export`` runs while ``cloud run`` writes. Readings go in as multi-row INSERTs
(up to 1000 rows a statement) inside the batch's one transaction.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Final

from cloud.store.base import SqlStore, StoreError
from cloud.store.migrations import SQLITE_TOKENS
from cloud.store.types import Row

_ROW_WIDTH: Final = 10  # the values of one Row; station, epoch and received are bound once
_CHUNKS: Final = (1000, 100, 10, 1)  # rows per statement: a few shapes, all kept prepared


@functools.lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    """A multi-row INSERT of ``n`` rows: ?1 station, ?2 epoch, ?3 received, then the rows."""
    values = ",".join(
        "(?1,?2," + ",".join(f"?{4 + k * _ROW_WIDTH + j}" for j in range(_ROW_WIDTH)) + ",?3)"
        for k in range(n)
    )
    return (
        "INSERT INTO readings (station, epoch, id, quantity, ts, value, raw, unit, q, cal, "  # noqa: S608 - only numbered placeholders are spliced in
        f"sensor, why, received) VALUES {values} ON CONFLICT (station, epoch, id) DO NOTHING"
    )


# what the same work can get past by waiting: another writer's lock, a full disk (until
# space is freed), an I/O error of the medium; anything else is about the data
_PASSING: Final = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR")


def _passing(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(_PASSING)  # Python >= 3.11


class SqliteStore(SqlStore):
    kind = "sqlite"
    tokens = SQLITE_TOKENS

    def __init__(self, path: Path, *, synchronous: str = "full", busy_timeout_s: float = 30.0):
        super().__init__(f"sqlite:///{path}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        self._rows_per_statement: int | None = None
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
            raise StoreError(f"sqlite {self.path}: {text}", retryable=_passing(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    def _insert_rows(
        self, cur: Any, station: str, epoch: str, rows: Sequence[Row], received: float
    ) -> int:
        """Multi-row INSERTs of up to 1000 rows (fewer where the SQLite build allows fewer
        bound variables), in the caller's transaction; a resend's rows are skipped."""
        limit = self._max_rows(cur.connection)
        new = start = 0
        total = len(rows)
        while start < total:
            left = total - start
            n = next((c for c in _CHUNKS if c <= left and c <= limit), 1)
            params = [station, epoch, received, *chain.from_iterable(rows[start : start + n])]
            cur.execute(_insert_sql(n), params)
            new += cur.rowcount
            start += n
        return new

    def _max_rows(self, conn: sqlite3.Connection) -> int:
        """How many rows one statement may carry: SQLITE_MAX_VARIABLE_NUMBER (999 before
        SQLite 3.32, 32766 since; a build may set its own) less the three shared values."""
        if self._rows_per_statement is None:
            variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._rows_per_statement = max(1, (variables - 3) // _ROW_WIDTH)
        return self._rows_per_statement
