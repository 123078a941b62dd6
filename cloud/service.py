"""What ``airtrace cloud run`` starts: the store and the parts the config switches on —
``ingest`` (MQTT), ``hj212`` (TCP), ``fusion`` (health, co-location), ``api`` (HTTP), the
hourly ``inversion`` and the ``alerts`` — in one process, until SIGTERM or SIGINT.

Every part has ``start()`` and ``stop()``; a part that fails to start stops the service
with one clear line. Stopping runs in reverse order, ingest last so what it holds is
committed and acknowledged (or left unacknowledged for the broker to deliver again).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cloud.commands import Commander
from cloud.config import CloudConfig
from cloud.fusion import HOUR, Fusion
from cloud.registry import Registry
from cloud.store import Store, open_store
from cloud.store.types import Calibration
from protocols.errors import AirtraceError

log = logging.getLogger(__name__)


class ServiceError(AirtraceError):
    """A part of the central service could not start."""


class Part(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


class FusionPart:
    """Station health every ``interval_s`` (drift once an hour); co-location once a day."""

    name = "fusion"

    def __init__(self, service: Service) -> None:
        from cloud.health import HealthJudge

        self.service = service
        self.cfg = service.cfg.fusion
        self.judge = HealthJudge(service.store, self.cfg, service.cfg.domain)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_drift_hour: float | None = None
        self._last_colocation: float | None = None

    def tick(self, now: float) -> None:
        hour = now // HOUR
        drift = self._last_drift_hour != hour
        self.service.store.put_health(self.judge.assess(now, drift=drift))
        self._last_drift_hour = hour
        if self.service.cfg.domain.has_origin and (
            self._last_colocation is None or now - self._last_colocation >= 86400
        ):
            self._last_colocation = now
            self.service.colocate_all(now, push=self.cfg.colocation_push)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick(self.service.clock())
            except Exception:
                log.exception("fusion: a round failed; trying again in %.0f s", self.cfg.interval_s)
            self._stop.wait(self.cfg.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fusion", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


class ApiPart:
    """uvicorn serving the FastAPI app on its own thread and event loop."""

    name = "api"

    def __init__(self, service: Service) -> None:
        import uvicorn

        from cloud.api import ApiContext, create_app

        self.service = service
        cfg = service.cfg.api
        ctx = ApiContext(
            store=service.store,
            registry=service.registry,
            fusion=service.fusion,
            tokens=cfg.tokens,
            commander=service.commander,
            stats=service.stats,
            clock=service.clock,
            colocate=service.colocate,
            # the alerts part is built before this one: its engine serves the event routes
            extra={"alerts": getattr(service, "alerts_engine", None),
                   "map": {"tiles": cfg.map_tiles, "attribution": cfg.map_attribution}},
        )
        self.app = create_app(ctx)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        )
        self.host, self.port = cfg.host, cfg.port
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ServiceError(
                f"api: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._sock = sock

        async def serve() -> None:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = 8
            await self.server.serve(sockets=[sock])

        self._thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name="api", daemon=True
        )
        self._thread.start()
        log.info("api: listening on http://%s:%d/api/v1", self.host, self.port)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()


class JobPart:
    """A periodic job as a part: its own ``start``/``stop`` when it has them, else
    ``tick(now)`` (or ``run_due(now)``) every ``every_s`` seconds on a thread."""

    def __init__(self, name: str, job: Any, clock: Callable[[], float], every_s: float = 30.0):
        self.name = name
        self.job = job
        self.clock = clock
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if hasattr(self.job, "start"):
            self.job.start()
            return
        step = getattr(self.job, "tick", None) or getattr(self.job, "run_due", None)
        if step is None:
            raise ServiceError(f"{self.name}: the job has neither start() nor tick(now)")

        def run() -> None:
            while not self._stop.is_set():
                try:
                    step(self.clock())
                except Exception:
                    log.exception("%s: a round failed", self.name)
                self._stop.wait(self.every_s)

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if hasattr(self.job, "stop"):
            self.job.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


class IngestPart:
    name = "ingest"

    def __init__(self, service: Service) -> None:
        from cloud.ingest import Ingest

        assert service.cfg.mqtt is not None
        self.ingest = Ingest(
            service.store, service.cfg.ingest, service.cfg.mqtt, clock=service.clock
        )

    def start(self) -> None:
        self.ingest.start()

    def stop(self) -> None:
        self.ingest.stop()


class Service:
    """The central service: one store, the parts the config switches on."""

    def __init__(self, cfg: CloudConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store: Store = open_store(
            cfg.store.url, sqlite_synchronous=cfg.store.sqlite_synchronous
        )
        self.registry = Registry(self.store, cfg.domain)
        self.fusion = Fusion(self.store, cfg.fusion, cfg.domain)
        self.parts: list[Part] = []
        self.ingest_part: IngestPart | None = None
        self.commander: Commander | None = None
        self.source_listeners: list[Callable[[float, Any], None]] = []
        self._stop = threading.Event()
        self._signalled: int | None = None

    # -- what parts share -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ingest_part is not None:
            out.update(self.ingest_part.ingest.stats.as_dict())
            out["backlog"] = self.ingest_part.ingest.backlog
            out["connected"] = self.ingest_part.ingest.client.connected
        for part in self.parts:
            if part.name == "hj212":
                out["hj212"] = part.stats.as_dict()  # type: ignore[attr-defined]
        return out

    def colocate(
        self, station: str, reference: str, quantity: str, *, push: bool = False
    ) -> Calibration:
        """Fit ``station`` against ``reference`` over the window ending now, record it and
        (when ``push``) send it to the gateway."""
        from dataclasses import replace

        from cloud import colocation

        now = self.clock()
        cal = colocation.colocate(self.fusion, station, reference, quantity, now, now=now)
        cal = replace(cal, seq=self.store.add_calibration(cal))
        if push:
            if self.commander is None:
                raise ServiceError("pushing a calibration needs the MQTT connection (ingest on)")
            cal = colocation.push(self.commander, cal, now)
        return cal

    def colocate_all(self, now: float, *, push: bool) -> list[Calibration]:
        from cloud import colocation

        done = []
        for micro, ref in colocation.pairs(
            self.store.stations(), self.fusion, self.cfg.fusion.colocation_radius_m
        ):
            for quantity in self.cfg.fusion.colocation_quantities:
                try:
                    cal = self.colocate(
                        micro, ref, quantity, push=push and self.commander is not None
                    )
                except colocation.ColocationError as exc:
                    log.info("fusion: co-location skipped: %s", exc)
                    continue
                log.info(
                    "fusion: %s vs %s %s: slope %.3f offset %.2f R2 %.2f RMSE %.2f "
                    "(%s EPA targets)",
                    micro, ref, quantity, cal.slope, cal.offset, cal.r2, cal.rmse,
                    "meets" if cal.meets_targets else "misses",
                )  # fmt: skip
                done.append(cal)
        return done

    # -- the parts that live in their own modules ----------------------------------------
    def _inversion_part(self) -> Part:
        """The hourly inversion (``cloud.hourly_part``): ``HourlyJob`` fed by the fusion's
        hourly OBS/MET rows, results kept by ``save_inversion``, hits handed to
        ``sources_found`` (every ``source_listeners`` entry, e.g. the alerts)."""
        from cloud.hourly_part import make_part

        part: Part = make_part(self)
        return part

    def save_inversion(self, hour_start: float, result: Any, quantity: str = "pm10") -> None:
        """Keep an hour's RESULT.json (a mapping, or an object with ``to_json()``)."""
        data = result.to_json() if hasattr(result, "to_json") else dict(result)
        self.store.put_inversion_result(hour_start, quantity, data, self.clock())

    def sources_found(self, hour_start: float, sources: Any) -> None:
        for listener in list(self.source_listeners):
            try:
                listener(hour_start, sources)
            except Exception:
                log.exception("inversion: a sources listener failed")

    def _alerts_part(self) -> Part:
        """The alerts (``cloud.alerts_part``): the store, ``part_table("alerts")``, the
        ``commander`` and the clock."""
        from cloud.alerts_part import make_part

        return make_part(self)

    # -- lifecycle --------------------------------------------------------------------
    def _build(self) -> list[Part]:
        cfg = self.cfg
        parts: list[Part] = []
        if cfg.ingest.enabled and cfg.mqtt is not None:
            self.ingest_part = IngestPart(self)
            client = self.ingest_part.ingest.client
            self.commander = Commander(self.store, client.publish, clock=self.clock)
            parts.append(self.ingest_part)
        if cfg.hj212.enabled:
            from cloud.hj212_server import Hj212Part

            parts.append(Hj212Part(self))
        if cfg.fusion.enabled:
            parts.append(FusionPart(self))
        if cfg.inversion_enabled:
            parts.append(self._inversion_part())
        if cfg.alerts_enabled:
            parts.append(self._alerts_part())
        if cfg.api.enabled:
            parts.append(ApiPart(self))
        return parts

    def start(self) -> None:
        self.parts = []
        try:
            for part in self._build():
                part.start()
                self.parts.append(part)
        except BaseException:
            self.stop()
            raise
        log.info(
            "cloud: running %s on store %s",
            ", ".join(p.name for p in self.parts) or "nothing",
            self.store.url,
        )

    def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                log.exception("cloud: stopping %s failed", part.name)
        self.parts = []
        self.store.close()

    def request_stop(self) -> None:
        """Thread-safe; not for a signal handler (see ``_on_signal``)."""
        self._stop.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        """Only record the signal: a handler runs between two bytecodes of the main thread,
        which may hold the stop Event's lock just then (inside ``wait``), so setting the
        Event here could deadlock the process. ``run`` polls the record."""
        self._signalled = signum

    def run(self) -> None:
        """Start, wait for SIGTERM or SIGINT (or ``request_stop()``), stop."""
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            while self._signalled is None and not self._stop.wait(0.2):
                pass
            log.info("cloud: stopping")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
