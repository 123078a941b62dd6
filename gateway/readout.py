"""``airtrace gateway read`` and ``airtrace gateway status``: what the sensors say now, and
what the running daemon and its outbox are doing.

``read`` polls every enabled sensor with the real poller and passes the samples through
the station's calibration (read-only; uncalibrated when there is no store yet) and QC
(without warm-up: the devices were not just started), printing one JSON object per
reading with ``--json`` (DESIGN 4.1). It stores and publishes nothing. ``status`` reads
the daemon's state file and the outbox, read-only, and never disturbs a running daemon.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway import config as gwconfig
from gateway.calibration import Calibrator, calibration_path
from gateway.calstore import CalibrationStore
from gateway.clock import Clock, SystemClock
from gateway.config import StationConfig
from gateway.errors import OutboxError
from gateway.model import Reading, Sample
from gateway.outbox import OutboxStats, holder, inspect
from gateway.qc import QualityControl
from gateway.runtime import PollerFactory, default_poller, state_path
from protocols.timefmt import to_iso

Out = Callable[[str], None]


def _calibrator(config: StationConfig) -> Calibrator:
    path = calibration_path(config.outbox)
    store = CalibrationStore(path, config.station.id, readonly=True) if path.exists() else None
    return Calibrator(config.station.id, store)


def shared_line_warning(config: StationConfig) -> str | None:
    pid = holder(config.outbox.path)
    if pid is None:
        return None
    serial = [s.name for s in config.sensors if s.transport in ("modbus-rtu", "serial")]
    if not serial:
        return None
    return (
        f"the gateway daemon is running (pid {pid}) and also polls {', '.join(serial)} on a "
        "serial line: two masters on one line can garble each other's frames; "
        "'airtrace gateway status' shows what the daemon reads"
    )


def read_once(
    config: StationConfig,
    *,
    clock: Clock | None = None,
    poller_factory: PollerFactory | None = None,
) -> list[Reading]:
    """Poll every enabled sensor once; calibrated, QC-flagged readings in config order."""
    clock = clock or SystemClock()
    poller = (poller_factory or default_poller)(config, clock, lambda _s: None)
    try:
        samples = poller.poll_once()
    finally:
        poller.stop()
    return _pipeline(config)(samples)


def _pipeline(config: StationConfig) -> Callable[[list[Sample]], list[Reading]]:
    cal = _calibrator(config)
    qc = QualityControl(config, warmup=False)
    return lambda samples: qc.check_many(cal.apply_many(samples))


def _line(r: Reading) -> str:
    value = "-" if r.value is None else f"{r.value:.6g}"
    raw = "-" if r.raw is None else f"{r.raw:.6g}"
    text = f"{to_iso(r.ts)}  {r.sensor:<12} {r.quantity:<10} {value:>10} {r.unit:<7}"
    text += f" raw {raw:>8}  {r.flag.value}  cal v{r.cal_version}"
    return text + (f"  ({r.why})" if r.why else "")


def print_readings(readings: Iterable[Reading], json_out: bool, out: Out) -> None:
    for r in readings:
        out(json.dumps(r.to_json(), ensure_ascii=False) if json_out else _line(r))


def read_command(path: Path, *, once: bool, json_out: bool, out: Out) -> None:
    config = gwconfig.load(path)
    warning = shared_line_warning(config)
    if warning:
        sys.stderr.write(f"airtrace: warning: {warning}\n")
    if once:
        print_readings(read_once(config), json_out, out)
        return
    # continuous: the real scheduler, each device at its interval, until Ctrl-C
    pipeline = _pipeline(config)
    lock = threading.Lock()

    def sink(samples: list[Sample]) -> None:
        with lock:
            print_readings(pipeline(samples), json_out, out)

    poller = default_poller(config, SystemClock(), sink)
    poller.start()
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        poller.stop()


# --------------------------------------------------------------------------- status


def status_report(config: StationConfig, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    pid = holder(config.outbox.path)
    report: dict[str, Any] = {
        "station": config.station.id,
        "daemon": {"running": pid is not None, "pid": pid},
        "outbox": None,
        "state": None,
    }
    try:
        stats: OutboxStats = inspect(config.outbox.path)
        report["outbox"] = {**stats.to_json(), "oldest_age_s": round(stats.oldest_age(now), 1)}
    except OutboxError as exc:
        report["outbox_error"] = str(exc)
    sp = state_path(config)
    if sp.exists():
        try:
            state = json.loads(sp.read_text())
        except (OSError, ValueError) as exc:
            report["state_error"] = f"{sp}: {exc}"
        else:
            state["age_s"] = round(now - float(state.get("updated", now)), 1)
            report["state"] = state
    cal = calibration_path(config.outbox)
    if cal.exists():
        store = CalibrationStore(cal, config.station.id, readonly=True)
        try:
            report["calibration"] = [
                {
                    "sensor": s.sensor,
                    "quantity": s.quantity,
                    "version": s.version,
                    "kind": s.kind,
                    "source": s.source,
                }
                for s in _current_sets(store, now)
            ]
            report["calibration_sessions"] = [
                {
                    "id": s.id,
                    "sensor": s.sensor,
                    "quantity": s.quantity,
                    "purpose": s.purpose,
                    "ends": s.ends,
                }
                for s in store.sessions(at=now)
            ]
        finally:
            store.close()
    return report


def _current_sets(store: CalibrationStore, now: float) -> list[Any]:
    seen: dict[tuple[str, str], Any] = {}
    for s in store.sets():
        if s.effective <= now:
            seen[(s.sensor, s.quantity)] = s
    return list(seen.values())


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status_command(path: Path, *, json_out: bool, out: Out) -> int:
    config = gwconfig.load(path)
    rep = status_report(config)
    if json_out:
        out(json.dumps(rep, default=str, ensure_ascii=False))
        return 0
    d = rep["daemon"]
    out(f"station   {rep['station']}")
    out(f"daemon    {'running, pid ' + str(d['pid']) if d['running'] else 'not running'}")
    st = rep.get("state")
    if st:
        conn = "connected" if st.get("connected") else "NOT connected"
        err = st.get("last_uplink_error")
        out(
            f"uplink    {conn}{f' ({err})' if err and not st.get('connected') else ''}; "
            f"{st.get('reconnects', 0)} reconnects, {st.get('resends', 0)} resends "
            f"(state {_age(st.get('age_s'))} old)"
        )
    ob = rep.get("outbox")
    if ob:
        out(
            f"outbox    {ob['depth']} readings kept (oldest {_age(ob['oldest_age_s'])}); "
            f"next id {ob['next_id']}, confirmed up to {ob['watermark']}; epoch {ob['epoch']}"
        )
        if ob["shed"]:
            out(
                f"          {ob['shed']} readings thinned by the size bound "
                f"(ids below {ob['floor']} are gone)"
            )
    elif "outbox_error" in rep:
        out(f"outbox    {rep['outbox_error']}")
    if st:
        for name, h in (st.get("devices") or {}).items():
            ok = h.get("available", True)
            extra = "" if ok else f" — {h.get('last_error')}"
            out(f"device    {name:<12} {'ok' if ok else 'UNAVAILABLE'}{extra}")
        for a in st.get("actuators") or []:
            out(
                f"actuator  {a['name']:<12} {'ON' if a['on'] else 'off'}"
                + (f" ({a['reason']})" if a.get("reason") else "")
            )
        counts = st.get("readings") or {}
        if counts:
            out("readings  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for c in rep.get("calibration") or []:
        out(f"calib.    {c['sensor']}/{c['quantity']} v{c['version']} {c['kind']} ({c['source']})")
    for s in rep.get("calibration_sessions") or []:
        out(f"session   #{s['id']} {s['purpose']} on {s['sensor']} until {to_iso(s['ends'])}")
    return 0
