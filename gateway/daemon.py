"""The gateway daemon (``airtrace gateway run``): ``Poller -> calibrate -> qc -> outbox ->
uplink``, plus downlink commands, local rules, actuator timeouts and metrics.

One worker thread (the caller's) owns every stage: the poller's bus threads and the MQTT
link only put events on a queue, and the loop takes them off in order. A reading is
accepted when its outbox transaction commits; if that fails (a full disk) the readings
wait in memory (bounded; what overflows is counted and logged) and the outbox is thinned
to make room. ``SIGTERM`` stops it cleanly: polls end, what was read is stored, actuators
go off, the retained status says offline, the outbox is closed. A ``kill -9`` loses only
what was not yet committed, and the broker then publishes the last will.

The daemon writes ``<outbox>-state.json`` beside the outbox every few seconds, for
``airtrace gateway status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import config as gwconfig
from gateway.actuators import Actuators
from gateway.calibration import Calibrator, calibration_path
from gateway.calstore import CalibrationStore
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandContext, CommandHandler
from gateway.config import ActuatorConfig, StationConfig
from gateway.errors import CommandRejected, OutboxError, UplinkError
from gateway.metrics import Metrics
from gateway.model import Reading, Sample
from gateway.mqtt import MqttLink
from gateway.outbox import Outbox
from gateway.qc import QualityControl
from gateway.rules import Rules
from gateway.runtime import (
    LinkFactory,
    Poller,
    PollerFactory,
    default_poller,
    plain,
    software_version,
    state_path,
    write_atomic,
)
from gateway.uplink import Uplink, mqtt_settings
from protocols.errors import AirtraceError, ConfigError

log = logging.getLogger(__name__)

TICK_S = 1.0
BOUND_EVERY_S = 10.0
STATE_EVERY_S = 2.0
STORE_RETRY_S = 5.0
SHUTDOWN_SEND_S = 5.0  # real seconds the last readings get to go out on a clean stop
MAX_PENDING = 100_000  # readings waiting in memory while the outbox cannot take them
EVENTS_PER_STEP = 5_000


@dataclass(frozen=True)
class _Samples:
    samples: list[Sample]


class _Wake:
    pass


class ConfigNotApplied(AirtraceError):
    """A new config failed to start; the previous one is back."""


class Gateway:
    """One station's daemon (see the module docstring). ``run()`` until ``request_stop()``."""

    def __init__(
        self,
        config: StationConfig,
        *,
        clock: Clock | None = None,
        poller_factory: PollerFactory | None = None,
        link_factory: LinkFactory | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.version = software_version()
        self._poller_factory = poller_factory or default_poller
        self._link_factory: LinkFactory = link_factory or MqttLink
        self.events: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._signalled: int | None = None
        self._samples: list[Sample] = []
        self._pending: list[Reading] = []
        self.counts: Counter[str] = Counter()
        self.dropped = 0
        self.store_errors = 0
        self._store_retry_at = 0.0
        self._started_mono = self.clock.monotonic()
        self._started_wall = self.clock.now()
        self._next_tick = self._next_bound = self._next_state = 0.0
        self._down = False
        self.loop_errors = 0
        self._last_loop_error: str | None = None

        self.outbox = Outbox(
            config.outbox.path, max_mb=config.outbox.max_mb, synchronous=config.outbox.synchronous
        )
        try:
            self.calibrations: CalibrationStore | None = CalibrationStore(
                calibration_path(config.outbox), config.station.id
            )
            self.calibrator = Calibrator(config.station.id, self.calibrations)
            self.qc = QualityControl(config)
            self.actuators = Actuators(config.actuators, self._write, clock=self.clock)
            self.rules = Rules(config.rules, self.actuators)
            self.outbox.keep_above = self.rules.thresholds()
            self.metrics = Metrics()
            self.link = self._link_factory(mqtt_settings(config, self.version), self.events.put)
            self.uplink = Uplink(
                config, self.outbox, self.link, clock=self.clock, version=self.version
            )
            self.poller: Poller | None = None
            self.ctx = CommandContext(
                config=config,
                clock=self.clock,
                calibrations=self.calibrations,
                calibrator=self.calibrator,
                actuators=self.actuators,
                poller=self,
                info=self.info,
                apply_config=self.apply_config,
            )
            self.commands = CommandHandler(self.ctx)
        except BaseException:
            self.outbox.close()
            raise

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self.config.metrics_listen:
            self.metrics.serve(self.config.metrics_listen)
        self.link.start()
        self.poller = self._poller_factory(self.config, self.clock, self._sink)
        self.actuators.all_off("gateway starting")
        self.poller.start()
        log.info(
            "gateway %s started: %d sensors, outbox %s (epoch %s, %d readings kept)",
            self.config.station.id,
            len(self.config.sensors),
            self.outbox.path,
            self.outbox.epoch,
            self.outbox.stats().depth,
        )

    def run(self) -> None:
        """Start, loop until ``request_stop()``, and shut down cleanly."""
        try:
            self.start()
            while not self._stop.is_set():
                if self._signalled is not None:
                    sid, sig = self.config.station.id, self._signalled
                    log.info("gateway %s: signal %d, stopping", sid, sig)
                    self.request_stop()
                    break
                try:
                    self.step(0.2)
                except Exception as exc:  # a long-running process keeps going
                    self._loop_error(exc)
        finally:
            self.shutdown()

    def _loop_error(self, exc: Exception) -> None:
        """Log a failed turn of the loop (once per kind of failure), wait, go on. What was
        read stays in memory (bounded) and the outbox keeps what it committed."""
        self.loop_errors += 1
        key = f"{type(exc).__name__}: {exc}"
        if key != self._last_loop_error:
            self._last_loop_error = key
            if isinstance(exc, AirtraceError):
                log.error("%s (the loop goes on)", exc)
            else:
                log.exception("unexpected error in the gateway loop (it goes on)")
        self._stop.wait(1.0)

    def request_stop(self) -> None:
        """Thread-safe; not for a signal handler (it takes the event queue's lock, which
        the interrupted main thread may hold): see ``install_signal_handlers``."""
        self._stop.set()
        self.events.put(_Wake())

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop ``run()`` within one turn of the loop (<= 0.2 s). The
        handler only records the signal; the loop acts on it outside the handler."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signalled = signum

    def shutdown(self) -> None:
        if self._down:
            return
        self._down = True
        log.info("gateway %s stopping", self.config.station.id)
        self.actuators.all_off("gateway stopping")  # while the poller can still write
        self._stop_poller()
        self._drain(0)
        self._store(force=True)
        # the last readings go out now (real seconds: a network wait does not get shorter
        # when simulated time runs faster); the next start resends whatever is not confirmed
        deadline = time.monotonic() + SHUTDOWN_SEND_S
        self.uplink.pump(flush=True)
        while self.outbox.next_id > self.outbox.cursor and time.monotonic() < deadline:
            ev = self._get(0.05)
            if ev is not None:
                self._dispatch(ev)
            if not self.uplink.pump(flush=True) and not self.uplink.connected:
                break
        pub = self.uplink.goodbye()
        while pub is not None and time.monotonic() < deadline + 2.0:
            ev = self._get(0.05)
            if ev is not None:
                self._dispatch(ev)
                if getattr(ev, "gen", None) == pub.gen and getattr(ev, "mid", None) == pub.mid:
                    break
        self.link.stop()
        self._drain(0)
        if self._pending:
            log.error("stopping with %d readings the outbox could not take", len(self._pending))
        with contextlib.suppress(AirtraceError):
            self.calibrator.refresh()
        self._write_state("stopped")
        self.metrics.close()
        if self.calibrations is not None:
            self.calibrations.close()
        self.outbox.close()
        log.info("gateway %s stopped", self.config.station.id)

    def _stop_poller(self) -> None:
        if self.poller is not None:
            try:
                self.poller.stop()
            except Exception:
                log.exception("stopping the poller failed")
            self.poller = None

    # -- the loop -------------------------------------------------------------------------
    def _sink(self, samples: list[Sample]) -> None:
        if samples:
            self.events.put(_Samples(list(samples)))

    def _get(self, timeout: float) -> object | None:
        try:
            return self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return None

    def _drain(self, timeout: float) -> None:
        ev = self._get(timeout)
        n = 0
        while ev is not None:
            self._dispatch(ev)
            n += 1
            if n >= EVENTS_PER_STEP:
                break
            ev = self._get(0)

    def _dispatch(self, ev: object) -> None:
        if isinstance(ev, _Samples):
            self._samples.extend(ev.samples)
        elif isinstance(ev, _Wake):
            pass
        else:
            payload = self.uplink.handle(ev)
            if payload is not None:
                self.uplink.send_ack(self.commands.handle(payload))

    def step(self, timeout: float = 0.1) -> None:
        """One turn: take events, store readings, publish, and once a second the timers."""
        self._drain(timeout)
        self._store()
        self.uplink.pump()
        now = self.clock.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_S
            self._tick(now)

    def _tick(self, now: float) -> None:
        for what in (self.uplink.tick, self.actuators.tick):
            try:
                what()
            except AirtraceError as exc:
                log.warning("%s", exc)
        try:
            self.calibrator.refresh(now=self.clock.now())
        except AirtraceError as exc:
            log.warning("calibration store: %s", exc)
        if now >= self._next_bound:
            self._next_bound = now + BOUND_EVERY_S
            try:
                self.outbox.prune(force=True)  # keeps the stored watermark fresh too
                self.outbox.enforce_bound()
            except OutboxError as exc:
                log.warning("%s", exc)
        self.metrics.update(self.snapshot())
        if now >= self._next_state:
            self._next_state = now + STATE_EVERY_S
            self._write_state("running")

    def _store(self, *, force: bool = False) -> None:
        if self._samples:
            readings = self.qc.check_many(self.calibrator.apply_many(self._samples))
            self._samples = []
            self.rules.observe(readings)
            self._pending.extend(readings)
        if not self._pending:
            return
        if not force and self.clock.monotonic() < self._store_retry_at:
            self._bound_pending()
            return
        try:
            self._add_pending()
        except OutboxError as exc:
            self.store_errors += 1
            if self.store_errors == 1 or self.store_errors % 100 == 0:
                log.error("%s; %d readings wait in memory", exc, len(self._pending))
            self._store_retry_at = self.clock.monotonic() + STORE_RETRY_S
            self._bound_pending()
            return
        if self.store_errors:
            log.info("the outbox takes readings again")
            self.store_errors = 0
        self.counts.update(r.flag.value for r in self._pending)
        self._pending = []

    def _add_pending(self) -> None:
        try:
            self.outbox.add(self._pending)
        except OutboxError as exc:
            if not exc.fields.get("disk_full"):
                raise
            log.error("%s: thinning the oldest readings to make room", exc)
            self.outbox.make_room()
            self.outbox.add(self._pending)  # once more; a second failure waits

    def _bound_pending(self) -> None:
        over = len(self._pending) - MAX_PENDING
        if over > 0:
            del self._pending[:over]
            self.dropped += over
            log.error("dropped the %d oldest readings the outbox could not take", over)

    # -- what commands and tools see ------------------------------------------------------
    def _write(self, actuator: ActuatorConfig, value: int) -> None:
        if self.poller is None:
            from gateway.errors import DeviceError

            raise DeviceError(f"actuator {actuator.name}: the poller is not running")
        self.poller.write(actuator, value)

    def set_interval(self, sensor: str | None, interval_s: float, duration_s: float | None) -> None:
        if self.poller is None:
            raise CommandRejected("the poller is not running")
        self.poller.set_interval(sensor, interval_s, duration_s)

    def health(self) -> dict[str, Any]:
        if self.poller is None:
            return {}
        try:
            return {k: plain(v) for k, v in self.poller.health().items()}
        except Exception as exc:  # health is informative; never fatal
            log.debug("poller health failed: %s", exc)
            return {}

    def info(self) -> dict[str, Any]:
        st = self.outbox.stats()
        return {
            "station": self.config.station.id,
            "version": self.version,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
            "epoch": st.epoch,
            "outbox_depth": st.depth,
            "watermark": st.watermark,
            "oldest_unconfirmed_s": round(st.oldest_age(self.clock.now()), 1),
            "connected": self.uplink.connected,
            "devices": {
                k: v.get("available") if isinstance(v, dict) else v
                for k, v in self.health().items()
            },
        }

    def snapshot(self) -> dict[str, Any]:
        st = self.outbox.stats()
        health = self.health()
        return {
            "readings": dict(self.counts),
            "outbox_depth": st.depth,
            "outbox_oldest_unconfirmed_seconds": st.oldest_age(self.clock.now()),
            "outbox_bytes": st.size_bytes,
            "outbox_shed": st.shed,
            "watermark": st.watermark,
            "published_readings": self.uplink.readings_sent,
            "published_packs": self.uplink.packs,
            "resends": self.uplink.resends,
            "connected": 1 if self.uplink.connected else 0,
            "reconnects": getattr(self.link, "reconnects", 0),
            "store_errors": self.store_errors,
            "loop_errors": self.loop_errors,
            "uptime_seconds": self.clock.monotonic() - self._started_mono,
            "commands": dict(self.commands.counts),
            "devices": {
                k: bool(v.get("available", True)) if isinstance(v, dict) else True
                for k, v in health.items()
            },
            "actuators": {a.name: a.on for a in self.actuators.states()},
            "_outbox": st,
            "_health": health,
        }

    def _write_state(self, state: str) -> None:
        snap = self.snapshot()
        doc = {
            "state": state,
            "station": self.config.station.id,
            "pid": os.getpid(),
            "version": self.version,
            "started": self._started_wall,
            "updated": self.clock.now(),
            "connected": bool(snap["connected"]),
            "last_uplink_error": self.uplink.last_error,
            "outbox": snap["_outbox"].to_json(),
            "readings": snap["readings"],
            "dropped": self.dropped,
            "published_readings": snap["published_readings"],
            "resends": snap["resends"],
            "reconnects": snap["reconnects"],
            "commands": {f"{c}:{s}": n for (c, s), n in snap["commands"].items()},
            "devices": snap["_health"],
            "actuators": [a.to_json() for a in self.actuators.states()],
        }
        try:
            write_atomic(state_path(self.config), json.dumps(doc, default=str, indent=1))
        except OSError as exc:
            log.debug("cannot write the state file: %s", exc)

    # -- set_config ---------------------------------------------------------------------------
    def apply_config(self, text: str) -> dict[str, Any]:
        """Validate, write atomically, apply; roll back when the new config fails to start."""
        old = self.config
        new = gwconfig.loads(text, source=str(old.path), path=old.path)
        if new.station.id != old.station.id:
            raise CommandRejected("changing [station] id needs a local restart")
        if new.outbox.path != old.outbox.path:
            raise CommandRejected("changing [outbox] path needs a local restart")
        relink = new.uplink != old.uplink
        if relink:
            try:
                MqttLink(mqtt_settings(new, self.version), lambda _e: None).probe(10)
            except UplinkError as exc:
                raise CommandRejected(f"the new [uplink] does not work: {exc}") from None
        old_text = old.path.read_text(encoding="utf-8")
        write_atomic(old.path.with_name(old.path.name + ".bak"), old_text)
        write_atomic(old.path, text)
        try:
            self._reconfigure(new, relink)
        except Exception as exc:
            log.error("the new config failed to start (%s); rolling back", exc)
            write_atomic(old.path, old_text)
            self._reconfigure(old, relink)
            raise ConfigNotApplied(
                f"the new config failed to start ({exc}); the previous one is back"
            ) from None
        changed = sorted(
            name
            for name in (
                "sensors",
                "uplink",
                "outbox",
                "qc",
                "actuators",
                "rules",
                "metrics_listen",
                "allowed_commands",
                "station",
            )
            if getattr(new, name) != getattr(old, name)
        )
        log.info("applied a new config (changed: %s)", ", ".join(changed) or "nothing")
        return {"applied": True, "changed": changed}

    def _reconfigure(self, cfg: StationConfig, relink: bool) -> None:
        new_actuators = cfg.actuators != self.actuators.configs()
        if new_actuators:
            self.actuators.all_off("config changed")  # while the poller can still write
        self._stop_poller()
        self._drain(0)
        self._store(force=True)
        self.metrics.close()
        old_qc = self.qc
        self.config = cfg
        self.qc = QualityControl(cfg)
        self.qc.carry_over(old_qc)
        if new_actuators:
            self.actuators = Actuators(cfg.actuators, self._write, clock=self.clock)
        self.rules = Rules(cfg.rules, self.actuators)
        self.outbox.max_bytes = int(cfg.outbox.max_mb * 1024 * 1024)
        self.outbox.keep_above = self.rules.thresholds()
        self.uplink.config = cfg
        self.ctx.config, self.ctx.actuators = cfg, self.actuators
        if relink:
            self.link.stop()
            self._drain(0)
            self.link = self._link_factory(mqtt_settings(cfg, self.version), self.events.put)
            self.uplink.link = self.link
            self.link.start()
        if cfg.metrics_listen:
            self.metrics.serve(cfg.metrics_listen)
        self.poller = self._poller_factory(cfg, self.clock, self._sink)
        self.poller.start()


def run_daemon(*paths: Path) -> None:
    """``airtrace gateway run``: load the configs, run until SIGTERM.

    One config is one station's daemon. Several configs run several stations in one process
    (a small computer serving a few stations, or the demo): each ``Gateway`` keeps its own
    outbox, MQTT session and poller in its own thread; SIGTERM stops them all, cleanly. Every
    config is loaded (and checked) before any station starts.
    """
    from gateway.clock import clock_from_env

    configs = [gwconfig.load(p) for p in paths]
    ids = [c.station.id for c in configs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"station {dup[0]} is given twice")
    outboxes = [str(c.outbox.path.resolve()) for c in configs]
    if len(set(outboxes)) != len(outboxes):
        raise ConfigError("two stations share one outbox file")
    clock = clock_from_env()
    if len(configs) == 1:
        gw = Gateway(configs[0], clock=clock)
        gw.install_signal_handlers()
        gw.run()
        return
    gateways: list[Gateway] = []
    try:
        for cfg in configs:
            gateways.append(Gateway(cfg, clock=clock))
    except BaseException:
        for gw in gateways:
            gw.shutdown()
        raise
    signalled: list[int] = []  # the handler only records (see install_signal_handlers)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: signalled.append(s))
    threads = [
        threading.Thread(target=gw.run, name=f"gateway-{gw.config.station.id}", daemon=True)
        for gw in gateways
    ]
    for t in threads:
        t.start()
    log.info("running %d stations: %s", len(gateways), ", ".join(ids))
    while not signalled and any(t.is_alive() for t in threads):
        time.sleep(0.2)
    for gw in gateways:
        gw.request_stop()
    for t in threads:
        t.join()
