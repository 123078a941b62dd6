"""The virtual null-modem cable: bytes cross both ways, ends reopen, both back ends agree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from firmware_sim.ptypair import PtyPair

BACKENDS = [
    pytest.param(
        "socat",
        marks=pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed"),
    ),
    "python",
]


def _read(port: serial.Serial, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = port.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_cross_both_ways(backend: str) -> None:
    with PtyPair(backend=backend) as pair:
        assert pair.backend == backend
        assert os.path.exists(pair.a) and os.path.exists(pair.b) and pair.a != pair.b
        with (
            serial.Serial(pair.a, 9600, timeout=2) as a,
            serial.Serial(pair.b, 9600, timeout=2) as b,
        ):
            payload = bytes(range(256))  # every byte value, CR, LF and XON/XOFF included
            a.write(payload)
            assert _read(b, len(payload)) == payload
            b.write(b"\x01\x03\x00\x00\x00\x02\xc4\x0b")
            assert _read(a, 8) == b"\x01\x03\x00\x00\x00\x02\xc4\x0b"


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_end_can_be_closed_and_reopened(backend: str) -> None:
    with PtyPair(backend=backend) as pair, serial.Serial(pair.b, timeout=2) as b:
        for i in range(3):
            with serial.Serial(pair.a, timeout=2) as a:
                a.write(b"frame %d" % i)
                assert _read(b, 7) == b"frame %d" % i
        assert pair.alive


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_ends_the_cable(backend: str) -> None:
    pair = PtyPair(backend=backend)
    assert pair.alive
    socat = pair._socat_pid
    pair.close()
    pair.close()  # idempotent
    assert not pair.alive
    if socat is not None:
        assert not _running(socat)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        PtyPair(backend="usb")


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
def test_socat_does_not_outlive_a_killed_user() -> None:
    code = (
        "from firmware_sim.ptypair import PtyPair\n"
        "p = PtyPair(backend='socat')\n"
        "print(p._socat_pid, p._tmp.name, flush=True)\n"
        "import time; time.sleep(120)\n"
    )
    root = Path(__file__).resolve().parents[2]
    user = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert user.stdout is not None
    pid_text, links = user.stdout.readline().split()
    user.stdout.close()
    pid = int(pid_text)
    assert _running(pid) and sorted(os.listdir(links)) == ["a", "b"]
    user.kill()  # kill -9: no close(), no __del__, no atexit
    user.wait()
    deadline = time.monotonic() + 20
    while (_running(pid) or os.path.exists(links)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)
    assert not os.path.exists(links)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
