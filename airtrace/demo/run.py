"""``airtrace demo``'s run: start everything on real transports, watch it, stop it in order,
count from the files, write the report.

Processes: the firmware_sim district (devices on Modbus TCP, pty RTU lines, PMS5003/SDS011
on ptys, HJ 212 monitors over TCP) and the MQTT broker (amqtt, unless ``--mqtt``) run in
this process; the central service is one ``airtrace cloud run`` process; the gateways are
``airtrace gateway run`` processes of ``per_process`` stations each. All agree on one
accelerated clock through ``AIRTRACE_CLOCK``.

The end, in order: the devices stop (nothing more is produced); the gateways empty their
outboxes until the centre's watermark covers every reading; the centre inverts the last
hour; then gateways, centre and broker stop. With ``--chaos`` a gateway process and the
central service are killed (SIGKILL) and restarted during the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airtrace.demo import tally
from airtrace.demo.inbox import Inbox
from airtrace.demo.scene import (
    DemoOptions,
    build_world,
    calibrate_gateways,
    write_scene,
)
from protocols.errors import AirtraceError

log = logging.getLogger("airtrace.demo")
HOUR = 3600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


try:  # resolved now: the child between fork and exec must not import anything
    import ctypes

    _PRCTL: Any = ctypes.CDLL(None).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child: SIGTERM when the demo dies, however it dies (Linux's
    PR_SET_PDEATHSIG), so no gateway or service outlives a killed demo."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))


class Proc:
    """One child process, restartable, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        fh = self.log_path.open("ab")
        self.p = subprocess.Popen(self.args, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=_die_with_parent)  # noqa: PLW1509 (no imports, one call)
        fh.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.p is not None
            self.p.kill()
            self.p.wait(10)

    def terminate(self, timeout: float = 30.0) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self.p.kill()
                self.p.wait(10)
        return self.p.returncode


@dataclass
class Progress:
    """What the display shows; refreshed by ``Demo.poll``."""

    sim_now: float = 0.0
    sim_start: float = 0.0
    sim_end: float = 0.0
    phase: str = "starting"
    produced: int = 0
    confirmed: int = 0
    backlog: int = 0
    stored: int = 0
    hours_inverted: int = 0
    alerts: int = 0
    events: int = 0
    orders_acked: int = 0
    notifications: int = 0
    log: list[str] = field(default_factory=list)
    said: int = 0  # lines said so far (``log`` keeps the last few)

    def say(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-8]
        self.said += 1


class Demo:
    def __init__(self, opts: DemoOptions, *, on_progress: Callable[[Progress], None] | None = None):
        self.opts = opts
        self.out = opts.out.resolve()  # the children run elsewhere; city paths are relative to it
        self.work = self.out / "work"
        self.progress = Progress()
        self.on_progress = on_progress or (lambda p: None)
        self.procs: list[Proc] = []
        self.gateways: list[Proc] = []
        self.cloud: Proc | None = None
        self.broker: Any = None
        self.city: Any = None
        self.inbox: Inbox | None = None
        self.chaos_done: list[str] = []
        self.token = secrets.token_hex(16)
        self.started_real = time.time()

    # -- set-up -----------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        log.info("%s", line)
        self.progress.say(line)
        self.on_progress(self.progress)

    def setup(self) -> None:
        from firmware_sim.city import start_city
        from firmware_sim.city_config import CityConfig
        from firmware_sim.clock import AcceleratedClock

        opts = self.opts
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "logs").mkdir(parents=True)
        (self.out / "maps").mkdir(parents=True, exist_ok=True)
        self.world = build_world(opts)
        embedded = opts.mqtt is None
        py = [sys.executable, "-m", "airtrace", "--log-level", "warning"]
        if embedded:  # its own process: a broker must not share a GIL with the district
            port = free_port()
            self.broker = Proc("broker", [sys.executable, "-m", "airtrace.broker", "--port",
                                          str(port)], dict(os.environ),
                               self.work / "logs" / "broker.log")
            self.broker.start()
            mqtt_url = f"mqtt://127.0.0.1:{port}"
            self._wait_port(port)
            self._say(f"broker: embedded amqtt on {mqtt_url}")
        else:
            mqtt_url = str(opts.mqtt)
            self._say(f"broker: {mqtt_url}")
        secret = secrets.token_hex(16).encode()
        self.inbox = Inbox(secret)
        self.inbox.start()
        self.api_port = free_port()
        cloud_toml = write_scene(self.work, self.world, opts, mqtt_url=mqtt_url, embedded=embedded,
                                 api_port=self.api_port, token=self.token,
                                 webhook=self.inbox.url, secret=secret)
        self._import_registry(cloud_toml)

        self.clock = AcceleratedClock(float(self.world.start), opts.rate)
        self.progress.sim_start = float(self.world.start)
        self.progress.sim_end = float(self.world.start) + opts.hours * HOUR
        city_cfg = CityConfig(
            seed=opts.seed, stations=opts.stations, start=float(self.world.start), rate=opts.rate,
            transports=("modbus-tcp", "modbus-rtu", "serial", "hj212"), rtu_every=5,
            serial_every=6, max_pty=12, out=self.work / "city", mqtt=mqtt_url,
            outbox_dir=self.work / "outbox", interval_s=opts.interval_s,
            hj212_rtd_s=opts.interval_s, hj212_minute_min=5,
        )
        self.city = start_city(city_cfg, world=self.world, clock=self.clock)
        self._say(f"district: {len(self.world.stations)} stations, {len(self.world.sites)} "
                  f"registered sites, {len(self.world.sources)} hidden sources "
                  f"(seed {opts.seed}); {opts.hours} h in {opts.minutes:g} min (x{opts.rate:.0f})")
        configs = sorted((self.work / "city").glob("*.toml"))
        n_cal = calibrate_gateways(self.world, configs, now=float(self.world.start))
        self._say(f"maintainers: {n_cal} particle-sensor calibrations (linear + humidity) "
                  "loaded into the gateways")
        env = dict(os.environ, AIRTRACE_CLOCK=self.clock.spec, PYTHONUNBUFFERED="1")
        env.pop("AIRTRACE_DEBUG", None)
        self.cloud = Proc("central service", [*py, "cloud", "run", "--config", str(cloud_toml)],
                          env, self.work / "logs" / "cloud.log")
        n = max(1, opts.per_process)
        for i in range(0, len(configs), n):
            group = configs[i : i + n]
            args = [*py, "gateway", "run"]
            for c in group:
                args += ["--config", str(c)]
            self.gateways.append(Proc(f"gateway process {i // n + 1}", args, env,
                                      self.work / "logs" / f"gateway-{i // n + 1}.log"))
        for p in (self.cloud, *self.gateways):
            p.start()
        self.procs = [self.cloud, *self.gateways]
        if self.broker is not None:  # already running: watched (and restarted) from now on
            self.procs.insert(0, self.broker)
        self._say(f"started the central service and {len(self.gateways)} gateway processes "
                  f"({len(configs)} stations)")

    @staticmethod
    def _wait_port(port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
            time.sleep(0.1)
        raise AirtraceError(f"the embedded broker did not listen on port {port}")

    def _import_registry(self, cloud_toml: Path) -> None:
        from cloud.config import load_config as load_cloud
        from cloud.registry import Registry
        from cloud.store import open_store

        cfg = load_cloud(cloud_toml)
        store = open_store(cfg.store.url, sqlite_synchronous=cfg.store.sqlite_synchronous)
        try:
            reg = Registry(store, cfg.domain)
            reg.import_file(self.work / "stations.csv", "stations")
            reg.import_file(self.work / "sites.csv", "sites")
            reg.import_file(self.work / "persons.csv", "persons")
        finally:
            store.close()

    # -- watching ---------------------------------------------------------------------------
    def poll(self) -> None:
        p = self.progress
        p.sim_now = self.clock.now()
        boxes = tally.outbox_counts(self.work / "outbox")
        p.produced = sum(b.produced for b in boxes)
        p.confirmed = sum(min(b.confirmed, b.produced) for b in boxes)
        p.backlog = sum(b.backlog for b in boxes)
        st = tally.store_progress(self.work / "cloud.db")
        p.stored, p.hours_inverted = st["stored"], st["hours"]
        p.alerts, p.events, p.orders_acked = st["alerts"], st["events"], st["orders_acked"]
        p.notifications = self.inbox.counts()["received"] if self.inbox else 0
        for proc in self.procs if p.phase == "running" else ():
            if proc.p is not None and not proc.alive():
                self._say(f"{proc.name} exited with {proc.p.returncode}; restarting it "
                          f"(see {proc.log_path})")
                proc.start()
        self.on_progress(p)

    def _chaos(self, frac: float) -> None:
        plan = [(0.35, "gateway"), (0.6, "cloud")]
        for at, what in plan:
            if frac < at or what in self.chaos_done:
                continue
            self.chaos_done.append(what)
            target = self.gateways[0] if what == "gateway" else self.cloud
            assert target is not None
            target.kill()
            self._say(f"chaos: killed {target.name} with SIGKILL; restarting it in 3 s")
            time.sleep(3.0)
            target.start()
            self._say(f"chaos: {target.name} restarted")

    def run(self) -> None:
        p = self.progress
        p.phase = "running"
        while self.clock.now() < p.sim_end:
            self.poll()
            if self.opts.chaos:
                self._chaos((self.clock.now() - p.sim_start) / (p.sim_end - p.sim_start))
            self._walk_events()
            time.sleep(0.5)
        p.phase = "draining"
        self._say("the day is over: the devices stop; waiting for the last hour's inversion")
        self.city.stop()
        self.city = None
        # a gateway goes on recording its silent devices (flag B), so the outboxes never stay
        # empty: once the last hour is inverted the gateways stop, publish what they hold on
        # the way out, and the store is waited for until it holds all they ever produced
        p.phase = "inverting"
        self._wait(lambda: self._hours_done() >= self.opts.hours, timeout=120.0,
                   what="the last hour's inversion")
        for _ in range(4):  # each pass moves every open event one step on
            self._walk_events()
        self._wait(self._orders_settled, timeout=30.0, what="the orders' acks")
        p.phase = "stopping"
        for proc in self.gateways:
            proc.terminate()
        self.poll()
        self._wait(lambda: p.stored >= p.produced, timeout=30.0,
                   what="the gateways' last readings to be stored")

    def _hours_done(self) -> int:
        """Hours of the run inverted so far."""
        try:
            hours = tally.inverted_hours(self.work / "cloud.db")
        except sqlite3.Error:  # not made yet
            return 0
        return sum(1 for h in hours if self.progress.sim_start <= h < self.progress.sim_end)

    def _orders_settled(self) -> bool:
        try:
            return tally.orders_waiting(self.work / "cloud.db") == 0
        except sqlite3.Error:
            return True

    def _wait(self, done: Callable[[], bool], *, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if done():
                return True
            time.sleep(0.5)
        self._say(f"gave up waiting for {what} after {timeout:.0f} s")
        return False

    # -- the people: the demo plays the site officer and the inspector ------------------------
    def _walk_events(self) -> None:
        """Events dispatched to a site officer: acknowledge, take in hand, report the
        rectification; once rectified, the centre verifies and closes (with a note saying
        the evidence is the demo's). Over the real HTTP API, as the centre's token."""
        import httpx

        base = f"http://127.0.0.1:{self.api_port}/api/v1"
        headers = {"Authorization": f"Bearer {self.token}"}
        steps = {"dispatched": ("acknowledge", "officer on site"),
                 "acknowledged": ("progress", "watering the haul road, covering the spoil heap"),
                 "in_progress": ("rectify", "spray system on; spoil heap covered; road swept"),
                 "verifying": ("verify", "closed by the demo's inspector after the site's report")}
        try:
            with httpx.Client(timeout=5.0) as client:
                r = client.get(f"{base}/events", headers=headers)
                if r.status_code != 200:
                    return
                body = r.json()
                events = body.get("events", body) if isinstance(body, dict) else body
                for ev in events:
                    step = steps.get(ev.get("state", ""))
                    if step is None:
                        continue
                    action, note = step
                    payload: dict[str, Any] = {"note": note}
                    if action == "verify":
                        payload["passed"] = True
                    resp = client.post(f"{base}/events/{ev['id']}/{action}", headers=headers,
                                       json=payload)
                    if resp.status_code < 300:
                        self._say(f"event {ev['id']}: {action}")
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("events: %s", exc)

    # -- the end ----------------------------------------------------------------------------
    def stop(self) -> None:
        if self.city is not None:
            with contextlib.suppress(Exception):
                self.city.stop()
            self.city = None
        for proc in self.gateways:
            proc.terminate()
        if self.cloud is not None:
            self.cloud.terminate()
        if self.broker is not None:
            self.broker.terminate()
        if self.inbox is not None:
            with contextlib.suppress(Exception):
                self.inbox.stop()

    def summary(self) -> dict[str, Any]:
        boxes = tally.outbox_counts(self.work / "outbox")
        if len(boxes) != len(self.world.stations):
            raise AirtraceError(f"found {len(boxes)} gateway outboxes in {self.work / 'outbox'}"
                                f" for {len(self.world.stations)} stations: cannot count")
        db = self.work / "cloud.db"
        custody = tally.custody_tally(boxes, db, self.work / "outbox")
        end = int(self.world.start) + self.opts.hours * HOUR
        results = [r for r in tally.inversion_results(db)
                   if int(self.world.start) <= r["hour"] < end]
        sources = tally.match_sources(self.world, results, window_hours=self.opts.window_hours,
                                      first_hour=int(self.world.start))
        ae = tally.alerts_and_events(db, until=end)
        per_station = custody.pop("stations")
        return {
            **custody,
            "sources": sources,
            "alerts": ae["alerts"],
            "events": ae["events"],
            "orders": ae["orders"],
            "after_the_run": ae["after_the_run"],
            "notifications": self.inbox.counts() if self.inbox else {},
            "chaos": list(self.chaos_done),
            "restarts": {p.name: p.starts - 1 for p in self.procs if p.starts > 1},
            "hours": self.opts.hours,
            "hours_inverted": len(results),
            "stations": len(self.world.stations),
            "seed": self.opts.seed,
            "simulated_start": int(self.world.start),
            "rate": round(self.opts.rate, 1),
            "wall_s": round(time.time() - self.started_real, 1),
            "per_station": per_station,
        }


def run_demo(opts: DemoOptions, on_progress: Callable[[Progress], None] | None = None
             ) -> tuple[Demo, dict[str, Any]]:
    demo = Demo(opts, on_progress=on_progress)
    interrupted = False
    try:
        demo.setup()
        demo.run()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop in order, count what there is
        interrupted = True
    finally:
        demo.progress.phase = "stopping"
        demo.stop()
    if not (demo.work / "cloud.db").exists():
        if interrupted:
            raise KeyboardInterrupt
        raise AirtraceError("the central store never appeared")
    try:
        summary = demo.summary() | {"interrupted": interrupted}
    except Exception as exc:
        raise AirtraceError(f"the demo ran but could not be counted: {exc}") from exc
    return demo, summary
