"""Fixtures that start real components: an MQTT broker on a free port, a fresh PostgreSQL
database, and the ``airtrace`` command line of this checkout.

``broker`` runs ``mosquitto`` when it is on PATH, else the embedded amqtt broker in a
subprocess; either way the test talks to a real broker over TCP on loopback.
``postgres_url`` creates a fresh database on the local PostgreSQL (127.0.0.1:5432, trust
auth, or ``AIRTRACE_TEST_PG`` as an admin URL) and skips only where none answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.sim_fixtures"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Broker:
    """A real MQTT broker process on loopback; tests may stop, kill and restart it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    kind: str = "mosquitto" if shutil.which("mosquitto") else "amqtt"
    persistence: bool = True
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            lines = [
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                f"persistence {'true' if self.persistence else 'false'}",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
                "set_tcp_nodelay true",
                "max_queued_messages 100000",
                f"log_dest file {self.workdir}/mosquitto.log",
                "log_type error",
                "log_type warning",
                self.extra_conf,
            ]
            conf.write_text("\n".join(lines) + "\n")
            return ["mosquitto", "-c", str(conf)]
        return [
            sys.executable,
            "-m",
            "airtrace.broker",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistent sessions."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """kill -9: whatever the broker had not saved is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real MQTT broker (mosquitto if on PATH, else amqtt) on a free loopback port."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    b = Broker(workdir=workdir)
    b.start()
    try:
        yield b
    finally:
        b.kill()


def _pg_admin_url() -> str:
    return os.environ.get("AIRTRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards. Skips only where none runs."""
    psycopg = pytest.importorskip("psycopg")
    admin = _pg_admin_url()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at {admin}: {exc}")
    name = f"airtrace_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    input: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run ``python -m airtrace`` of this checkout in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "airtrace", *args],
        check=False,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> object:
    """``cli("gateway", "read", ...)`` runs this checkout's command line in a subprocess."""
    return run_cli
