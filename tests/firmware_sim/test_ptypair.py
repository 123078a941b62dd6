"""The virtual null-modem cable: bytes cross both ways, ends reopen, both back ends agree."""

from __future__ import annotations

import os
import shutil

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
    pair.close()
    pair.close()  # idempotent
    assert not pair.alive


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        PtyPair(backend="usb")
