"""Prometheus ``/metrics`` of a running gateway (``[metrics] listen = "host:port"``).

The daemon's loop updates a snapshot every second; the HTTP thread only reads that
snapshot, so scraping never touches the outbox's SQLite connection or the stages.

    airtrace_gateway_readings_total{flag}           readings stored, by HJ 212 flag
    airtrace_gateway_outbox_depth                    readings kept, not yet confirmed
    airtrace_gateway_outbox_oldest_unconfirmed_seconds
    airtrace_gateway_outbox_shed_total               readings thinned away by the size bound
    airtrace_gateway_outbox_bytes
    airtrace_gateway_watermark                       the centre's custody watermark
    airtrace_gateway_published_readings_total, airtrace_gateway_published_packs_total
    airtrace_gateway_resends_total                   resends after a stalled watermark
    airtrace_gateway_connected                       1 when the broker connection is up
    airtrace_gateway_reconnects_total
    airtrace_gateway_commands_total{cmd,status}
    airtrace_gateway_device_available{sensor}
    airtrace_gateway_actuator_on{actuator}
    airtrace_gateway_store_errors_total              failed writes to the outbox (full disk)
    airtrace_gateway_loop_errors_total               failed turns of the loop (logged once)
    airtrace_gateway_uptime_seconds
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector

from protocols.errors import ConfigError

P = "airtrace_gateway_"
_GAUGES = {
    "outbox_depth": "Readings kept in the outbox, not yet confirmed by the centre.",
    "outbox_oldest_unconfirmed_seconds": "Age of the oldest reading not yet confirmed.",
    "outbox_bytes": "Bytes the outbox's rows take.",
    "watermark": "The centre's custody watermark (highest confirmed outbox id).",
    "connected": "1 while the broker connection is up.",
    "uptime_seconds": "Seconds since the daemon started.",
}
_COUNTERS = {
    "outbox_shed": "Readings thinned away by the outbox size bound.",
    "published_readings": "Readings published (resends included).",
    "published_packs": "SenML packs published.",
    "resends": "Resends after the watermark stalled.",
    "reconnects": "Reconnections to the broker.",
    "store_errors": "Failed writes to the outbox (e.g. a full disk).",
    "loop_errors": "Turns of the daemon's loop that failed (logged; the loop goes on).",
}


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: Mapping[str, Any] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            snap = dict(self.snapshot)
        for name, doc in _GAUGES.items():
            if name in snap:
                yield GaugeMetricFamily(P + name, doc, value=float(snap[name]))
        for name, doc in _COUNTERS.items():
            if name in snap:
                yield CounterMetricFamily(P + name, doc, value=float(snap[name]))
        readings = CounterMetricFamily(
            P + "readings", "Readings stored, by data flag.", labels=["flag"]
        )
        for flag, n in sorted(snap.get("readings", {}).items()):
            readings.add_metric([flag], float(n))
        yield readings
        commands = CounterMetricFamily(
            P + "commands", "Downlink commands, by command and result.", labels=["cmd", "status"]
        )
        for (cmd, status), n in sorted(snap.get("commands", {}).items()):
            commands.add_metric([cmd, status], float(n))
        yield commands
        devices = GaugeMetricFamily(
            P + "device_available", "1 while a sensor answers.", labels=["sensor"]
        )
        for sensor, ok in sorted(snap.get("devices", {}).items()):
            devices.add_metric([sensor], 1.0 if ok else 0.0)
        yield devices
        actuators = GaugeMetricFamily(
            P + "actuator_on", "1 while an actuator is on.", labels=["actuator"]
        )
        for name, on in sorted(snap.get("actuators", {}).items()):
            actuators.add_metric([name], 1.0 if on else 0.0)
        yield actuators


class Metrics:
    """Holds the latest snapshot and, when asked, serves it over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _SnapshotCollector()
        self.registry.register(self._collector)
        self._server: Any = None

    def update(self, snapshot: Mapping[str, Any]) -> None:
        with self._collector.lock:
            self._collector.snapshot = snapshot

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self._server, _ = start_http_server(
                int(port),
                addr=host or "0.0.0.0",  # noqa: S104 - ":port" in the config asks for all
                registry=self.registry,
            )
        except OSError as exc:
            raise ConfigError(f"[metrics] listen {listen}: cannot listen: {exc}") from None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
