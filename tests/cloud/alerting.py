"""Helpers of the alert and event tests: a fake clock, a real webhook server (a thread
with ``http.server``) that checks signatures and can be told to fail, a recording command
sender, and a small registry world."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloud.receivers import SIGNATURE_HEADER, verify_signature
from cloud.store.types import CommandRecord, Person, Site, Station

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_200.0  # May 2026


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


@dataclass
class Hit:
    path: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signed: bool


@dataclass
class WebhookServer:
    """A real HTTP server on loopback. ``fail`` answers that many requests with
    ``fail_status`` first; ``down`` refuses every request with 503."""

    secret: str
    fail: int = 0
    fail_status: int = 503
    down: bool = False
    received: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if outer.down or outer.fail > 0:
                        outer.fail = max(outer.fail - 1, 0)
                        status = 503 if outer.down else outer.fail_status
                        self.send_response(status)
                        self.end_headers()
                        return
                    outer.received.append(
                        Hit(
                            self.path,
                            json.loads(raw),
                            raw,
                            dict(self.headers.items()),
                            verify_signature(outer.secret, raw, self.headers.get(SIGNATURE_HEADER)),
                        )
                    )
                self.send_response(200 if outer.received[-1].signed else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [h.body for h in self.received if path is None or h.path == path]


class Recorder:
    """A command sender that records what it was asked and stores the command like the
    real Commander does, so acks can be simulated through the store."""

    def __init__(self, store: Any, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def send(
        self,
        station: str,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        expires_s: float | None = None,
    ) -> CommandRecord:
        rec = CommandRecord(f"c-{len(self.sent) + 1}", station, cmd, dict(args or {}), self.clock())
        self.store.add_command(rec)
        self.sent.append((station, cmd, dict(args or {})))
        return rec


ORIGIN = (34.80, 113.50)


def world(store: Any, officer_hook: str | None = None) -> None:
    """A site with its dust monitor (spray on the gateway), a micro station 300 m away,
    one far away, and the site's officer."""
    from protocols.geo import Origin, to_latlon

    o = Origin(*ORIGIN)

    def at(x: float, y: float) -> tuple[float, float]:
        return to_latlon(x, y, o)

    lat, lon = at(500, 500)
    store.put_site(
        Site(
            "SITE-1",
            kind="construction",
            lat=lat,
            lon=lon,
            persons=(Person("SITE-1", "Wang", role="officer", webhook=officer_hook),),
        )
    )
    for sid, kind, (x, y), reported in (
        ("DUST-1", "dust", (520, 500), {"site": "SITE-1", "actuators": ["spray"]}),
        ("MICRO-1", "micro", (800, 500), {}),
        ("MICRO-FAR", "micro", (5000, 5000), {}),
    ):
        la, lo = at(x, y)
        store.put_station(
            Station(sid, kind=kind, status="confirmed", lat=la, lon=lo, reported=reported)
        )


def rules_text(hook: str, *, extra: str = "") -> str:
    return f"""
[[rule]]
name = "site-pm10"
kind = "threshold"
quantity = "pm10"
period = "5min"
station_kinds = ["dust"]
for = 2
levels = {{ yellow = 150, orange = 250, red = 500 }}

[[rule]]
name = "source"
kind = "inversion"
quantity = "pm10"
levels = {{ yellow = 0.2, orange = 0.5, red = 2.0 }}
resolve_after = "3h"

[route]
receiver = "centre"
group_by = ["alertname", "site"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "1h"

  [[route.routes]]
  matchers = ['site=~".+"']
  receiver = "officer"

[[receiver]]
name = "centre"
type = "webhook"
url = "{hook}"
secret = "centre-secret"
backoff = "10s"
max_attempts = 3

[[receiver]]
name = "officer"
type = "person"
to = "site_officer"
secret = "centre-secret"
fallback = "centre"
escalate_to = "centre"
backoff = "10s"
max_attempts = 3
{extra}
"""


def readme_rule_file() -> str:
    """The rule file example of the README's alerts section."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- section: alerts", 1)[1].split("<!-- section:", 1)[0]
    m = re.search(r"```toml\n(# alerts\.toml.*?)```", section, re.S)
    assert m, "the README's alerts section lost its rule file example"
    return m.group(1)


def iter_kinds(items: Any) -> Iterator[str]:
    for a in items:
        yield a.labels.get("alertname", "")
