"""The durable outbox: every accepted reading stays in SQLite until the central service's
custody watermark covers it.

* **Ids.** Every reading gets the next id, 1, 2, 3, ... (never reused: the table is
  AUTOINCREMENT, so the high mark survives pruning). The file's ``epoch`` is a random id
  fixed when the file is created; a new file starts a new epoch, so the central key
  ``(station, epoch, id)`` never collides.
* **Transactions** (STYLE 3): ``begin(n)`` hands out the next unsent readings as a
  ``Batch`` and moves the send cursor past them; after publishing, ``ack(batch)`` (the
  broker took it: still kept, a PUBACK is not custody) or ``keep(batch)`` (not sent: the
  cursor goes back so they go out again).
* **Custody.** ``stored(upto, epoch)`` records the central watermark of this epoch (another
  epoch's is ignored) and prunes every row with id <= upto. ``rewind()`` sends everything
  the watermark does not cover again (after a reconnect, or when the watermark stalls).
* **Bound.** Above ``max_mb`` the oldest rows are thinned, oldest first: their hourly means
  per sensor and quantity, and their alarms (flag T, or a value at or above a local rule's
  threshold), are re-appended as new readings; the rest is shed and counted, and ``floor``
  (every id below it is gone for good) rises past them so the centre stops waiting.

One process owns an outbox file at a time (an exclusive lock on ``<path>.lock``); status
tools open it read-only. Inserts are batched ``executemany`` in one transaction on the
sqlite-utils connection: sqlite-utils' ``insert_all`` costs 3-4x more per row, and this is
the hot path. WAL mode; ``synchronous`` NORMAL (safe against process crashes) or FULL
(also against power cuts).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway._sqlite import sqlite_utils
from gateway.batch import Batch, Row
from gateway.errors import OutboxError
from gateway.model import Reading

log = logging.getLogger(__name__)

_COLS = "id, ts, sensor, quantity, unit, raw, value, flag, why, cal"
_INSERT = f"INSERT INTO reading ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 - constant
_AGG = "hourly mean of"
_KEPT = "kept through thinning"
PRUNE_EVERY_ROWS = 5000
TAIL_ROWS = 4000  # the newest rows, kept in memory so fresh readings go out without a read


def _err(path: Path, what: str, exc: BaseException) -> OutboxError:
    reason = str(exc)
    full = "full" in reason.lower()
    msg = f"outbox {path}: {what}: {reason}" + (" (free disk space)" if full else "")
    return OutboxError(msg, path=str(path), reason=reason, disk_full=full)


@dataclass(frozen=True)
class OutboxStats:
    epoch: str
    next_id: int
    watermark: int  # highest id the centre confirmed
    cursor: int  # next id to send
    depth: int  # readings kept, not yet confirmed
    unsent: int  # readings not yet handed to the broker since the last rewind
    oldest_ts: float | None  # time of the oldest unconfirmed reading
    floor: int  # ids below it are gone for good (thinned); 0 when nothing was shed
    shed: int  # readings thinned away (their hourly means and alarms were kept)
    size_bytes: int
    max_bytes: int

    def oldest_age(self, now: float) -> float:
        return 0.0 if self.oldest_ts is None else max(0.0, now - self.oldest_ts)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _connect(path: Path, readonly: bool) -> sqlite_utils.Database:
    # one thread uses the outbox at a time, but not always the one that opened it (the
    # daemon is built on one thread and run on another)
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    return sqlite_utils.Database(conn, execute_plugins=False)


class Outbox:
    """Store-and-forward buffer of one station (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_mb: float = 512.0,
        synchronous: str = "normal",
        keep_above: Mapping[str, float] | None = None,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.keep_above = dict(keep_above or {})
        self._lock_fd: int | None = None
        self._inflight: dict[int, Batch] = {}
        self._unpruned = 0
        self._tail: list[Row] = []  # rows with ids next_id - len(tail) .. next_id - 1
        if readonly and not self.path.exists():
            raise OutboxError(f"outbox {self.path}: no such file", path=str(self.path))
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock()
            self.db = _connect(self.path, readonly)
            if not readonly:
                self.db.enable_wal()
                self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self._create()
            self._load()
        except sqlite3.Error as exc:
            self._unlock()
            raise _err(self.path, "cannot open", exc) from None

    # -- set-up ---------------------------------------------------------------------
    def _lock(self) -> None:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutboxError(
                f"outbox {self.path} is in use by another process (pid {holder}); "
                "one gateway per outbox",
                path=str(self.path),
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _create(self) -> None:
        with self.db.atomic():
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS reading (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " ts REAL NOT NULL, sensor TEXT, quantity TEXT NOT NULL, unit TEXT NOT NULL,"
                " raw REAL, value REAL, flag TEXT NOT NULL, why TEXT, cal INTEGER NOT NULL)"
            )
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            # the epoch is fixed once, in the transaction that creates the file's tables
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (secrets.token_hex(8),)
            )

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def _set_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def _load(self) -> None:
        self.epoch = self._meta("epoch") or ""
        self.watermark = int(self._meta("watermark", "0") or 0)
        self.floor = int(self._meta("floor", "0") or 0)
        self.shed = int(self._meta("shed", "0") or 0)
        seq = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='reading'").fetchone()
        top = self.db.execute("SELECT MAX(id) FROM reading").fetchone()[0]
        self.next_id = max(int(seq[0]) if seq else 0, int(top or 0)) + 1
        self._pruned_upto = self.watermark
        self.cursor = self._first_unconfirmed()

    def close(self) -> None:
        try:
            if not self.readonly:
                self.prune(force=True)
        except OutboxError as exc:
            log.warning("%s", exc)
        finally:
            self.db.close()
            self._unlock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- adding ---------------------------------------------------------------------
    def add(self, readings: Sequence[Reading]) -> range:
        """Store readings in one transaction; returns their ids. Raises ``OutboxError``
        (nothing stored) when the disk is full or the file is unusable."""
        if not readings:
            return range(self.next_id, self.next_id)
        first = self.next_id
        for r in readings:  # the fast encoder relies on it; calibration already ensures it
            if r.value is not None and not math.isfinite(r.value):
                raise OutboxError(f"{r.sensor}/{r.quantity}: non-finite value {r.value}")
        rows = [
            (
                first + i,
                float(r.ts),
                r.sensor,
                r.quantity,
                r.unit,
                None if r.raw is None else float(r.raw),  # as SQLite's REAL gives it back
                None if r.value is None else float(r.value),
                r.flag.value,
                r.why,
                r.cal_version,
            )
            for i, r in enumerate(readings)
        ]
        try:
            with self.db.atomic():
                self.db.conn.executemany(_INSERT, rows)
        except sqlite3.Error as exc:
            raise _err(self.path, f"cannot store {len(rows)} readings", exc) from None
        self.next_id = first + len(rows)
        self._tail.extend(rows)
        if len(self._tail) > TAIL_ROWS:
            del self._tail[: len(self._tail) - TAIL_ROWS]
        return range(first, self.next_id)

    # -- sending --------------------------------------------------------------------
    def begin(self, n: int) -> Batch | None:
        """The next up to ``n`` unsent readings, or None when everything is out."""
        if self.cursor >= self.next_id:
            return None
        tail_first = self.next_id - len(self._tail)
        if self._tail and self.cursor >= tail_first:
            at = self.cursor - tail_first
            rows = self._tail[at : at + n]
            batch = Batch(self.epoch, rows[0][0], rows[-1][0], tuple(rows), self.floor or None)
            self.cursor = batch.last + 1
            self._inflight[batch.first] = batch.span()
            return batch
        try:
            rows = self.db.execute(
                f"SELECT {_COLS} FROM reading WHERE id >= ? ORDER BY id LIMIT ?",  # noqa: S608
                (self.cursor, n),
            ).fetchall()
        except sqlite3.Error as exc:
            raise _err(self.path, "cannot read readings", exc) from None
        if not rows:
            self.cursor = self.next_id
            return None
        batch = Batch(self.epoch, rows[0][0], rows[-1][0], tuple(rows), self.floor or None)
        self.cursor = batch.last + 1
        self._inflight[batch.first] = batch.span()
        return batch

    def ack(self, batch: Batch) -> None:
        """The broker took the batch. It stays kept until the watermark passes it."""
        self._inflight.pop(batch.first, None)

    def keep(self, batch: Batch) -> None:
        """The batch did not go out: send it (and what followed it) again."""
        self._inflight.pop(batch.first, None)
        if batch.last > self.watermark:
            self.cursor = min(self.cursor, max(batch.first, self.watermark + 1))

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def rewind(self) -> int:
        """Resend everything the watermark does not cover; returns how many readings."""
        self._inflight.clear()
        self.cursor = self._first_unconfirmed()
        return self.next_id - self.cursor

    def _first_unconfirmed(self) -> int:
        row = self.db.execute(
            "SELECT MIN(id) FROM reading WHERE id > ?", (self.watermark,)
        ).fetchone()
        return self.next_id if row[0] is None else int(row[0])

    # -- custody --------------------------------------------------------------------
    def stored(self, upto: int, epoch: str) -> bool:
        """The centre holds every reading of ``epoch`` with id <= ``upto``. Returns True
        when that moved the watermark (another epoch's watermark is ignored)."""
        if epoch != self.epoch or upto <= self.watermark:
            return False
        if upto >= self.next_id:
            # the centre holds ids this file never kept (a power cut rolled back commits
            # it had already sent): jump past them, so no id is reused for another reading
            log.warning(
                "outbox %s: the centre confirmed id %d but the next id is %d; skipping ahead",
                self.path,
                upto,
                self.next_id,
            )
            self.next_id = upto + 1
            self._tail.clear()
            with self.db.atomic():
                if not self.db.execute(
                    "UPDATE sqlite_sequence SET seq=? WHERE name='reading'", (upto,)
                ).rowcount:
                    self.db.execute("INSERT INTO sqlite_sequence VALUES ('reading', ?)", (upto,))
        self._unpruned += upto - self.watermark
        self.watermark = upto
        self.cursor = max(self.cursor, upto + 1)
        for first in [f for f, b in self._inflight.items() if b.last <= upto]:
            del self._inflight[first]
        self.prune()
        return True

    def prune(self, *, force: bool = False) -> int:
        """Delete the rows the watermark covers (batched: every few thousand ids)."""
        if self.readonly or self.watermark <= self._pruned_upto:
            return 0
        if not force and self._unpruned < PRUNE_EVERY_ROWS:
            return 0
        try:
            with self.db.atomic():
                n = self.db.execute("DELETE FROM reading WHERE id <= ?", (self.watermark,)).rowcount
                self._set_meta("watermark", self.watermark)
        except sqlite3.Error as exc:
            raise _err(self.path, "cannot prune confirmed readings", exc) from None
        self._pruned_upto = self.watermark
        self._unpruned = 0
        return int(n)

    # -- status ---------------------------------------------------------------------
    def size_bytes(self) -> int:
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        count = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((count - free) * page)

    def stats(self) -> OutboxStats:
        try:
            first = self._first_unconfirmed()
            row = self.db.execute("SELECT ts FROM reading WHERE id=?", (first,)).fetchone()
            size = self.size_bytes()
        except sqlite3.Error as exc:
            raise _err(self.path, "cannot read status", exc) from None
        return OutboxStats(
            epoch=self.epoch,
            next_id=self.next_id,
            watermark=self.watermark,
            cursor=self.cursor,
            depth=self.next_id - first,
            unsent=max(0, self.next_id - self.cursor),
            oldest_ts=None if row is None else float(row[0]),
            floor=self.floor,
            shed=self.shed,
            size_bytes=size,
            max_bytes=self.max_bytes,
        )

    # -- the size bound ---------------------------------------------------------------
    def enforce_bound(self) -> int:
        """Thin the oldest readings until the file is back under 90 % of its bound;
        returns how many readings were shed."""
        if self.readonly or self.size_bytes() <= self.max_bytes:
            return 0
        self.prune(force=True)
        shed_before = self.shed
        target = 0.9 * self.max_bytes
        while self.size_bytes() > target:
            depth = self.next_id - self._first_unconfirmed()
            if depth <= 0:
                break
            self._thin(_block(depth))
        shed = self.shed - shed_before
        if shed:
            log.warning(
                "outbox %s over %d MB: shed %d of the oldest readings (kept their hourly "
                "means and alarms); ids below %d are gone for good",
                self.path,
                self.max_bytes // (1024 * 1024),
                shed,
                self.floor,
            )
        return shed

    def make_room(self) -> int:
        """Thin one block of the oldest readings whatever the bound (the disk is full);
        returns how many readings were shed."""
        before = self.shed
        depth = self.next_id - self._first_unconfirmed()
        if depth > 0:
            self._thin(_block(depth))
        shed = self.shed - before
        log.warning(
            "outbox %s: the disk is full: shed %d of the oldest readings (kept their hourly "
            "means and alarms); ids below %d are gone for good",
            self.path,
            shed,
            self.floor,
        )
        return shed

    def _thin(self, n: int) -> None:
        lo = self._first_unconfirmed()
        rows = self.db.execute(
            f"SELECT {_COLS} FROM reading WHERE id >= ? ORDER BY id LIMIT ?",  # noqa: S608
            (lo, n),
        ).fetchall()
        if not rows:
            return
        hi = rows[-1][0]
        groups: dict[tuple[str, str, str, float], list[tuple[Any, ...]]] = defaultdict(list)
        kept: list[tuple[Any, ...]] = []
        for row in rows:
            _, ts, sensor, q, unit, raw, value, flag, why, cal = row
            copy = why is not None and why.startswith((_AGG, _KEPT))
            if copy:
                continue  # a mean or an alarm that was already kept once goes now
            if flag == "T" or (value is not None and value >= self.keep_above.get(q, math.inf)):
                kept.append(row)
            if flag in ("N", "S") and value is not None:
                groups[(sensor, q, unit, ts // 3600 * 3600)].append(row)
        new: list[tuple[Any, ...]] = []
        for (sensor, q, unit, hour), members in sorted(groups.items(), key=lambda kv: kv[0][3]):
            raws = [m[5] for m in members if m[5] is not None]
            cals = [m[9] for m in members]
            new.append(
                (
                    hour,
                    sensor,
                    q,
                    unit,
                    sum(raws) / len(raws) if raws else None,
                    sum(m[6] for m in members) / len(members),
                    "N",
                    f"{_AGG} {len(members)} readings (outbox thinned)",
                    max(set(cals), key=cals.count),
                )
            )
        for _, ts, sensor, q, unit, raw, value, flag, why, cal in kept:
            reason = f"{_KEPT} ({why})" if why else _KEPT
            new.append((ts, sensor, q, unit, raw, value, flag, reason, cal))
        first = self.next_id
        try:
            with self.db.atomic():
                self.db.execute("DELETE FROM reading WHERE id >= ? AND id <= ?", (lo, hi))
                self.db.conn.executemany(_INSERT, [(first + i, *row) for i, row in enumerate(new)])
                self._set_meta("floor", hi + 1)
                self._set_meta("shed", self.shed + len(rows))
        except sqlite3.Error as exc:
            raise _err(self.path, "cannot thin", exc) from None
        self.next_id = first + len(new)
        self._tail.clear()
        self.floor = hi + 1
        self.shed += len(rows)
        self.cursor = max(self.cursor, self.floor)
        for f in [f for f, b in self._inflight.items() if b.first <= hi]:
            del self._inflight[f]


def _block(depth: int) -> int:
    """How many of the oldest readings one thinning pass takes: 5 % of what is kept, at
    least 1000, but never more than half (a small outbox is not emptied in one go)."""
    return max(min(1000, depth // 2), depth // 20, 1)


def holder(path: str | Path) -> int | None:
    """The pid of the process that owns the outbox (a running daemon), or None."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def inspect(path: str | Path) -> OutboxStats:
    """Status of an outbox file without taking it over (``status``, ``doctor``)."""
    with Outbox(path, readonly=True) as box:
        return box.stats()
