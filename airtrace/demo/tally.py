"""Counting after (and during) the demo, from the files themselves: every gateway's outbox
and the central store. Nothing here trusts a process's own counters.

* produced: the outbox ids each gateway handed out (its ``sqlite_sequence``): every reading
  a gateway accepted, whether or not it still holds it;
* stored: rows of the central ``readings`` table;
* held: produced ids the store does not hold yet but the outbox still does (durable, sent
  on the gateway's next start: in custody, not lost);
* lost: produced ids of a (station, epoch) that neither the store nor the outbox holds,
  plus what an outbox had to shed when full;
* doubled: stored rows that repeat another stored row's (station, sensor, quantity, time):
  the same reading kept twice under two ids.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import statistics
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _ro(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    con.execute("PRAGMA busy_timeout=5000")
    return con


@dataclass(frozen=True)
class OutboxCount:
    station: str
    epoch: str
    produced: int
    confirmed: int  # the central watermark the gateway has seen
    shed: int

    @property
    def backlog(self) -> int:
        return max(0, self.produced - self.confirmed)


def outbox_count(path: Path) -> OutboxCount | None:
    try:
        with closing(_ro(path)) as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            seq = con.execute("SELECT seq FROM sqlite_sequence WHERE name='reading'").fetchone()
    except sqlite3.Error:
        return None
    return OutboxCount(path.stem, str(meta.get("epoch", "")), int(seq[0]) if seq else 0,
                       int(meta.get("watermark", 0) or 0), int(meta.get("shed", 0) or 0))


def outbox_counts(outbox_dir: Path) -> list[OutboxCount]:
    return [c for p in sorted(outbox_dir.glob("*.db")) if (c := outbox_count(p)) is not None]


def store_progress(db: Path) -> dict[str, int]:
    """Cheap figures for the progress display (0 while the store is not there yet)."""
    out = {"stored": 0, "hours": 0, "alerts": 0, "events": 0, "orders_acked": 0}
    if not db.exists():
        return out
    queries = {
        "stored": "SELECT COALESCE(SUM(stored), 0) FROM custody",
        "hours": "SELECT COUNT(*) FROM inversion_results",
        "alerts": "SELECT COUNT(*) FROM alerts",
        "events": "SELECT COUNT(*) FROM events",
        "orders_acked": "SELECT COUNT(*) FROM commands WHERE status = 'acked'",
    }
    try:
        with closing(_ro(db)) as con:
            for key, sql in queries.items():
                with contextlib.suppress(sqlite3.Error):  # a table not made yet
                    out[key] = int(con.execute(sql).fetchone()[0])
    except sqlite3.Error:
        pass
    return out


def _held_ids(path: Path) -> set[int]:
    with closing(_ro(path)) as con:
        return {int(r[0]) for r in con.execute("SELECT id FROM reading")}


def custody_tally(outboxes: Iterable[OutboxCount], db: Path, outbox_dir: Path
                  ) -> dict[str, Any]:
    boxes = list(outboxes)
    produced = sum(b.produced for b in boxes)
    shed = sum(b.shed for b in boxes)
    per_station: dict[str, dict[str, int]] = {}
    missing = held_total = 0
    with closing(_ro(db)) as con:
        stored = int(con.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        for b in boxes:
            have = {int(r[0]) for r in con.execute(
                "SELECT id FROM readings WHERE station=? AND epoch=? AND id<=?",
                (b.station, b.epoch, b.produced))}
            absent = set(range(1, b.produced + 1)) - have
            held = absent & _held_ids(outbox_dir / f"{b.station}.db") if absent else set()
            gone = len(absent - held)
            missing += gone
            held_total += len(held)
            per_station[b.station] = {"produced": b.produced, "stored": len(have),
                                      "held": len(held), "lost": gone}
        doubled = int(con.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM readings "
            "GROUP BY station, sensor, quantity, ts HAVING COUNT(*) > 1)").fetchone()[0])
        foreign = stored - sum(s["stored"] for s in per_station.values())
    return {
        "readings_produced": produced,
        "readings_stored": stored,
        "held_in_outboxes": held_total,
        "lost": missing + shed,
        "shed_by_full_outboxes": shed,
        "doubled": doubled,
        "stored_not_from_these_outboxes": foreign,
        "stations": per_station,
    }


def inverted_hours(db: Path, quantity: str = "pm10") -> list[int]:
    """The hours with a stored result (cheap: no result documents read)."""
    with closing(_ro(db)) as con:
        return [int(h) for (h,) in con.execute(
            "SELECT hour FROM inversion_results WHERE quantity=?", (quantity,))]


def orders_waiting(db: Path) -> int:
    """Orders sent to gateways and not answered yet."""
    with closing(_ro(db)) as con:
        return int(con.execute("SELECT COUNT(*) FROM commands WHERE status='sent'").fetchone()[0])


def inversion_results(db: Path, quantity: str = "pm10") -> list[dict[str, Any]]:
    with closing(_ro(db)) as con:
        rows = con.execute(
            "SELECT hour, result FROM inversion_results WHERE quantity=? ORDER BY hour",
            (quantity,)).fetchall()
    return [{"hour": int(h), **json.loads(r)} for h, r in rows]


def match_sources(world: Any, results: list[dict[str, Any]], *, window_hours: int,
                  first_hour: int, gate_m: float = 1000.0) -> list[dict[str, Any]]:
    """Each true source against the hours whose whole window lies in the run: per hour the
    nearest found source within ``gate_m``; the found position is the median of those, the
    rate ratio the median of found / true mean rate over that hour's window."""
    full = [r for r in results if r["hour"] - (window_hours - 1) * 3600 >= first_hour]
    out = []
    for i, src in enumerate(world.sources):
        xs: list[float] = []
        ys: list[float] = []
        ratios: list[float] = []
        hits_100 = 0
        for r in full:
            best = None
            for f in r.get("sources", []):
                d = math.hypot(f["x_m"] - src.x_m, f["y_m"] - src.y_m)
                if d <= gate_m and (best is None or d < best[0]):
                    best = (d, f)
            if best is None:
                continue
            d, f = best
            hits_100 += d <= 100.0
            xs.append(float(f["x_m"]))
            ys.append(float(f["y_m"]))
            window = [r["hour"] - k * 3600 for k in range(window_hours)]
            true_rate = world.truth(window)[i].rate_g_s
            if true_rate > 0:
                ratios.append(float(f["rate_g_s"]) / true_rate)
        true_rate_run = world.truth([r["hour"] for r in full] or [first_hour])[i].rate_g_s
        entry: dict[str, Any] = {
            "site": src.site,
            "kind": src.kind,
            "true_x_m": round(src.x_m, 1),
            "true_y_m": round(src.y_m, 1),
            "true_rate_g_s": round(true_rate_run, 4),
            "found_x_m": None,
            "found_y_m": None,
            "distance_m": None,
            "rate_ratio": None,
            "hours_inverted": len(full),
            "hours_found": len(xs),
            "hours_within_100_m": hits_100,
        }
        if xs:
            fx, fy = statistics.median(xs), statistics.median(ys)
            entry.update(found_x_m=round(fx, 1), found_y_m=round(fy, 1),
                         distance_m=round(math.hypot(fx - src.x_m, fy - src.y_m), 1),
                         rate_ratio=round(statistics.median(ratios), 3) if ratios else None)
        out.append(entry)
    return out


def alerts_and_events(db: Path, until: float | None = None) -> dict[str, Any]:
    """Alerts, events and orders that began before ``until`` (the end of the simulated day:
    what the devices' stop and the gateways' shutdown set off afterwards is only counted,
    under ``after_the_run``)."""
    end = float("inf") if until is None else float(until)
    with closing(_ro(db)) as con:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            try:
                return con.execute(sql).fetchall()
            except sqlite3.Error:
                return []

        alerts = [{"rule": r, "level": lv, "state": st, "labels": json.loads(lb), "t": t}
                  for r, lv, st, lb, t in rows("SELECT rule, level, state, labels, starts_at "
                                               "FROM alerts ORDER BY starts_at")]
        events = [{"id": i, "state": st, "level": lv, "site": site, "title": title, "t": t}
                  for i, st, lv, site, title, t in rows(
                      "SELECT id, state, level, site, title, created FROM events ORDER BY created")]
        orders = [{"station": s, "cmd": c, "status": st, "t": t}
                  for s, c, st, t in rows("SELECT station, cmd, status, issued FROM commands "
                                          "ORDER BY issued")]
    out: dict[str, Any] = {"after_the_run": {}}
    for name, items in (("alerts", alerts), ("events", events), ("orders", orders)):
        out[name] = [{k: v for k, v in x.items() if k != "t"} for x in items if x["t"] < end]
        out["after_the_run"][name] = sum(1 for x in items if x["t"] >= end)
    return out
