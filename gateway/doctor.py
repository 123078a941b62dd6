"""``airtrace gateway doctor``: check a station end to end, one line per check, each failure
with the fix. Exit 1 when any check fails (warnings do not fail).

Checks: the config and its profiles; every device (polled once, or, while the daemon runs,
its health from the daemon's state file, so the doctor never fights the daemon for a
serial line); the broker (reachable, TLS, credentials accepted); the clock (set, not
jumping, NTP-synchronised where ``timedatectl`` can tell); the disk under the outbox
(writable, free space); the outbox backlog; the calibration store and open sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway import config as gwconfig
from gateway.calibration import calibration_path
from gateway.calstore import CalibrationStore
from gateway.clock import Clock, SystemClock
from gateway.config import StationConfig
from gateway.errors import OutboxError, UplinkError
from gateway.mqtt import MqttLink
from gateway.outbox import holder, inspect
from gateway.runtime import PollerFactory, default_poller, software_version, state_path
from gateway.uplink import mqtt_settings
from protocols.errors import AirtraceError

CLOCK_FLOOR = 1_704_067_200.0  # 2024-01-01
BACKLOG_WARN_S = 3600.0
MIN_FREE_MB = 100.0

Out = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS | WARN | FAIL
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<12} {self.detail}"
        return text + (f"\n      {'':<12} fix: {self.fix}" if self.fix else "")


def check_config(path: Path) -> tuple[Check, StationConfig | None]:
    try:
        cfg = gwconfig.load(path)
    except AirtraceError as exc:
        return Check(
            "config", "FAIL", str(exc), "correct the file; the message names the key"
        ), None
    kinds = sorted({s.profile.rsplit("/", 1)[-1] for s in cfg.sensors})
    return Check(
        "config",
        "PASS",
        f"{path}: station {cfg.station.id}, {len(cfg.sensors)} sensors ({', '.join(kinds)})",
    ), cfg


def check_devices(
    cfg: StationConfig, clock: Clock, poller_factory: PollerFactory | None
) -> list[Check]:
    pid = holder(cfg.outbox.path)
    if pid is not None:
        return _devices_from_state(cfg, pid)
    try:
        poller = (poller_factory or default_poller)(cfg, clock, lambda _s: None)
    except AirtraceError as exc:
        return [Check("devices", "FAIL", str(exc), "check the [[sensor]] transports")]
    try:
        samples = poller.poll_once()
    finally:
        poller.stop()
    out = []
    for s in cfg.sensors:
        if not s.enabled:
            out.append(Check(f"device {s.name}", "WARN", "disabled in the config"))
            continue
        mine = [x for x in samples if x.sensor == s.name]
        good = [x for x in mine if x.raw is not None]
        if mine and len(good) == len(mine):
            vals = ", ".join(f"{x.quantity} {x.raw:g} {x.unit}" for x in good[:4])
            out.append(Check(f"device {s.name}", "PASS", f"{s.transport} {s.address}: {vals}"))
        else:
            why = next((x.why for x in mine if x.raw is None), None) or "no samples"
            out.append(
                Check(
                    f"device {s.name}",
                    "FAIL",
                    f"{s.transport} {s.address}: {why}",
                    _device_fix(s.transport, s.address),
                )
            )
    return out


def _device_fix(transport: str, address: str) -> str:
    if transport in ("modbus-rtu", "serial"):
        return (
            f"check power, A/B wiring and termination, unit id and baud rate; "
            f"'airtrace gateway scan --port {address}' finds what answers"
        )
    if transport == "hj212-tcp":
        return "the monitor connects to us: check its server address and port, MN and password"
    return (
        f"check the device is on the network at {address}; 'airtrace gateway scan --port {address}'"
    )


def _devices_from_state(cfg: StationConfig, pid: int) -> list[Check]:
    try:
        state = json.loads(state_path(cfg).read_text())
    except (OSError, ValueError):
        return [Check("devices", "WARN", f"the daemon (pid {pid}) runs but wrote no state yet")]
    out = []
    for name, h in (state.get("devices") or {}).items():
        if h.get("available", True):
            out.append(Check(f"device {name}", "PASS", f"answering (daemon pid {pid})"))
        else:
            s = cfg.sensor(name) if name in {x.name for x in cfg.sensors} else None
            fix = _device_fix(s.transport, s.address) if s else None
            out.append(Check(f"device {name}", "FAIL", f"unavailable: {h.get('last_error')}", fix))
    return out


def check_broker(cfg: StationConfig) -> Check:
    settings = mqtt_settings(cfg, software_version())
    try:
        MqttLink(settings, lambda _e: None).probe(10)
    except UplinkError as exc:
        text = str(exc)
        if "refused" in text.lower():
            fix = "check [uplink] username and password (or password_file) and the broker's ACL"
        elif "TLS" in text or "certificate" in text.lower() or "SSL" in text:
            fix = "check [uplink] ca_file (the CA that signed the broker) and the host name"
        else:
            fix = "check the network, DNS and firewall, and that the broker runs at that address"
        return Check("broker", "FAIL", text, fix)
    except AirtraceError as exc:
        return Check("broker", "FAIL", str(exc), "check the [uplink] section")
    who = f" as {settings.username}" if settings.username else ""
    return Check("broker", "PASS", f"{settings.where} accepted the connection{who}")


def check_clock(clock: Clock) -> Check:
    now = clock.now()
    if now < CLOCK_FLOOR:
        return Check(
            "clock",
            "FAIL",
            "the clock is before 2024: never set",
            "enable NTP (timedatectl set-ntp true) or fit an RTC",
        )
    synced = None
    if shutil.which("timedatectl"):
        try:
            r = subprocess.run(
                ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            synced = r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            synced = None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if synced == "no":
        return Check(
            "clock",
            "WARN",
            f"{when}, not NTP-synchronised",
            "timedatectl set-ntp true; check the NTP server is reachable",
        )
    return Check("clock", "PASS", when + (", NTP-synchronised" if synced == "yes" else ""))


def check_disk(cfg: StationConfig) -> Check:
    folder = cfg.outbox.path.parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            return Check(
                "disk",
                "FAIL",
                f"cannot create {folder}: {exc}",
                f"create {folder} for the user the gateway runs as",
            )
    if not os.access(folder, os.W_OK):
        return Check(
            "disk",
            "FAIL",
            f"{folder} is not writable",
            "chown the folder to the gateway's user (systemd: StateDirectory)",
        )
    free_mb = shutil.disk_usage(folder).free / 1e6
    need = max(MIN_FREE_MB, min(cfg.outbox.max_mb, 1024.0))
    if free_mb < need:
        return Check(
            "disk",
            "FAIL",
            f"{free_mb:.0f} MB free under {folder} (want {need:.0f} MB)",
            "free space, or lower [outbox] max_mb",
        )
    return Check("disk", "PASS", f"{free_mb / 1000:.1f} GB free under {folder}")


def check_outbox(cfg: StationConfig, now: float) -> Check:
    if not cfg.outbox.path.exists():
        return Check("outbox", "PASS", f"{cfg.outbox.path} does not exist yet (created at start)")
    try:
        st = inspect(cfg.outbox.path)
    except OutboxError as exc:
        return Check(
            "outbox", "FAIL", str(exc), "move the broken file aside; the gateway starts a new epoch"
        )
    age = st.oldest_age(now)
    detail = (
        f"{st.depth} readings waiting, oldest {age / 60:.0f} min; confirmed up to "
        f"{st.watermark} of {st.next_id - 1}"
    )
    if st.shed:
        detail += f"; {st.shed} thinned by the size bound"
    if age > BACKLOG_WARN_S:
        return Check(
            "outbox",
            "WARN",
            detail,
            "the centre is not confirming: check the broker check above, and that "
            "the central service runs",
        )
    return Check("outbox", "PASS", detail)


def check_calibration(cfg: StationConfig, now: float) -> Check:
    path = calibration_path(cfg.outbox)
    if not path.exists():
        return Check("calibration", "PASS", "no calibration yet: values are reported raw")
    try:
        store = CalibrationStore(path, cfg.station.id, readonly=True)
        try:
            sets, sessions = store.sets(), store.sessions(at=now)
        finally:
            store.close()
    except AirtraceError as exc:
        return Check("calibration", "FAIL", str(exc), "restore the file from a backup")
    pairs = {(s.sensor, s.quantity) for s in sets}
    if sessions:
        names = ", ".join(f"#{s.id} {s.purpose} {s.sensor}" for s in sessions)
        return Check(
            "calibration",
            "WARN",
            f"session open ({names}): readings flagged C",
            "wait for it to end, or it closes by itself at its end time",
        )
    return Check("calibration", "PASS", f"{len(sets)} versions for {len(pairs)} quantities")


def doctor(
    path: Path,
    *,
    out: Out,
    clock: Clock | None = None,
    poller_factory: PollerFactory | None = None,
    skip_devices: bool = False,
) -> int:
    """Run every check; returns the exit status (1 when a check failed)."""
    clock = clock or SystemClock()
    first, cfg = check_config(path)
    checks = [first]
    out(first.line())
    if cfg is not None:
        pid = holder(cfg.outbox.path)
        out(f"{'INFO':<4}  {'daemon':<12} " + (f"running, pid {pid}" if pid else "not running"))
        steps: list[Callable[[], list[Check]]] = [
            lambda: [] if skip_devices else check_devices(cfg, clock, poller_factory),
            lambda: [check_broker(cfg)],
            lambda: [check_clock(clock)],
            lambda: [check_disk(cfg)],
            lambda: [check_outbox(cfg, clock.now())],
            lambda: [check_calibration(cfg, clock.now())],
        ]
        for step in steps:
            for c in step():
                checks.append(c)
                out(c.line())
    failed = [c for c in checks if c.status == "FAIL"]
    out(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return 1 if failed else 0
