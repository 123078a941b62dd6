"""The demo's stand-in for people's phones and the centre's duty desk: an HTTP server that
takes the central service's signed webhook POSTs, checks each signature and keeps them."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOST = "127.0.0.1"


class Inbox:
    """``start()``, then ``url``; ``messages`` holds what came, each with ``signed_ok``."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.messages: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(inbox.secret, body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Airtrace-Signature", ""))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with inbox._lock:
                    if not ok:
                        inbox.bad_signatures += 1
                    inbox.messages.append({"path": self.path, "signed_ok": ok, "body": doc,
                                           "key": self.headers.get("Idempotency-Key")})
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-inbox",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def counts(self) -> dict[str, int]:
        msgs = self.snapshot()
        unique = {m["key"] for m in msgs if m["key"]}
        return {
            "received": len(msgs),
            "unique": len(unique),
            "to_persons": sum(1 for m in msgs if m["path"].startswith("/person/")),
            "to_centre": sum(1 for m in msgs if m["path"].startswith("/centre")),
            "bad_signatures": self.bad_signatures,
        }
