"""Alert routing and the engine's tick: how many alerts a flush handles per second, and how
long a tick takes with many firing alerts in the store.

Prints one JSON object: each figure, a baseline measured in the same run on the same data,
and their ratio, plus the machine.

* ``flush`` — ``Router.flush`` over 5,000 firing alerts (250 stations x 20 rules on 100
  sites) through the README's routing tree with its inhibit rule, every group due.
  Baseline: the floor of any router — each alert's route walk and group key, nothing else.
* ``tick`` — ``AlertEngine.tick`` on SQLite with 1,000 firing alerts, groups already told
  (the steady state: nothing to send). Baseline: reading those alerts from the store.

Run: ``.venv/bin/python bench/bench_alerts.py``.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine
from cloud.alert_rules import parse_rules
from cloud.alert_types import LEVELS, Alert, fingerprint
from cloud.alerts import AlertEngine
from cloud.routing import Router
from cloud.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def best_time(fn: Callable[[], object], min_time: float = 0.5) -> float:
    best, spent = float("inf"), 0.0
    while spent < min_time or best == float("inf"):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return best


def rule_file(tmp: Path) -> str:
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- section: alerts", 1)[1].split("<!-- section:", 1)[0]
    m = re.search(r"```toml\n(# alerts\.toml.*?)```", section, re.S)
    assert m
    (tmp / "centre.secret").write_text("x")
    (tmp / "persons.secret").write_text("x")
    return m.group(1)


def alerts(n_stations: int, n_rules: int, now: float) -> list[Alert]:
    rng = random.Random(1)
    out = []
    for s in range(n_stations):
        for r in range(n_rules):
            labels = {
                "alertname": f"rule-{r}",
                "kind": "threshold",
                "station": f"ST-{s:03d}",
                "site": f"SITE-{s % 100:03d}",
                "cell": f"g{s % 10}_{s // 10 % 10}",
            }
            level = rng.choice(LEVELS)
            out.append(
                Alert(
                    fingerprint(labels),
                    labels["alertname"],
                    "threshold",
                    {**labels, "level": level},
                    level,
                    starts_at=now,
                    updated_at=now,
                )
            )
    return out


def bench_flush(tmp: Path) -> dict[str, object]:
    cfg = parse_rules(rule_file(tmp), source="alerts.toml", base=tmp)
    router = Router(cfg.route, cfg.inhibit)
    now = 1_780_000_000.0
    items = alerts(250, 20, now)
    _, groups = router.flush(now, items, [], {})
    due = {k: type(v)(v.created, now, None, frozenset()) for k, v in groups.items()}

    def floor() -> None:
        for a in items:
            for route in cfg.route.match(a.labels):
                route.group(a.labels)

    t = best_time(lambda: router.flush(now, items, [], due))
    b = best_time(floor)
    return {
        "name": "flush",
        "unit": "alerts/s",
        "alerts": len(items),
        "groups": len(groups),
        "value": round(len(items) / t),
        "baseline": "route walk and group key only",
        "baseline_value": round(len(items) / b),
        "ratio": round(b / t, 3),
    }


def bench_tick(tmp: Path) -> dict[str, object]:
    cfg = parse_rules(rule_file(tmp), source="alerts.toml", base=tmp)
    store = open_store(f"sqlite:///{tmp}/bench.db", sqlite_synchronous="normal")
    now = 1_780_000_000.0
    eng = AlertEngine(store, cfg, clock=lambda: now)
    for a in alerts(50, 20, now):
        eng.db.put_alert(a)
    eng.tick(now)
    eng.tick(now + 60)  # every group has spoken: the steady state
    t = best_time(lambda: eng.tick(now + 120), min_time=2.0)
    b = best_time(lambda: eng.db.alerts(since=now - 86400), min_time=1.0)
    eng.close()
    store.close()
    return {
        "name": "tick",
        "unit": "ms",
        "alerts": 1000,
        "value": round(t * 1000, 2),
        "baseline": "reading the alerts from SQLite",
        "baseline_value": round(b * 1000, 2),
        "ratio": round(t / b, 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = [bench_flush(tmp), bench_tick(tmp)]
    print(
        json.dumps(
            {
                "bench": "alerts",
                "results": results,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
