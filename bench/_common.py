"""Small helpers every benchmark shares: machine information and printing the JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Where a figure was measured: enough to compare two runs honestly."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    info["sqlite"] = sqlite3.sqlite_version
    if shutil.which("mosquitto"):
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
        text = (out.stdout or out.stderr).strip()
        if text:
            info["mosquitto"] = text.splitlines()[0]
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def emit(name: str, figures: dict[str, Any]) -> None:
    """Print one JSON document: the bench's name, its figures and the machine."""
    doc = {"bench": name, **figures, "machine": machine()}
    json.dump(doc, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A Mosquitto on a free loopback port, no persistence, stopped on exit (every bench
    that needs a broker starts this one). ``max_queued`` bounds the queue per session;
    ``max_inflight`` (0 = unlimited) the QoS 1 messages in flight to a client."""

    def __init__(
        self, workdir: Path, *, max_queued: int = 100_000, max_inflight: int | None = None
    ) -> None:
        if not shutil.which("mosquitto"):
            raise SystemExit("the benchmark needs mosquitto on PATH")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "set_tcp_nodelay true",
            f"max_queued_messages {max_queued}",
            "log_type error",
        ]
        if max_inflight is not None:
            lines.append(f"max_inflight_messages {max_inflight}")
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
