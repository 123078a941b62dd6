"""Helpers of the gateway benchmarks: machine info, a Mosquitto of their own on a free port,
a station config. Not a test fixture: the benchmarks start what they measure themselves."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mosq = ""
    if shutil.which("mosquitto"):
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
        mosq = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosq,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A Mosquitto on a free loopback port, no persistence, stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        if not shutil.which("mosquitto"):
            raise SystemExit("the benchmark needs mosquitto on PATH")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 100000",
            "log_type error",
        ]
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
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def station_toml(
    workdir: Path, mqtt: str, *, sensors: str = "", uplink: str = "", outbox: str = ""
) -> Path:
    if not sensors:
        sensors = """
[[sensor]]
name = "pm"
profile = "rs-pm-n01"
transport = "modbus-tcp"
address = "127.0.0.1:1"
"""
    path = workdir / "station.toml"
    path.write_text(f"""
[station]
id = "BENCH-001"
kind = "micro"
lat = 34.8
lon = 113.5
inlet_height_m = 3.0

[uplink]
mqtt = "{mqtt}"
{uplink}

[outbox]
path = "{workdir / "outbox.db"}"
{outbox}
{sensors}
""")
    return path


def emit(result: dict[str, Any]) -> None:
    import json

    result["machine"] = machine()
    print(json.dumps(result, indent=2))
