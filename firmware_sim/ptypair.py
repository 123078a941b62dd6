"""A virtual null-modem cable: two pseudo-terminal device paths joined back to back.

Whatever a program writes to ``pair.a`` can be read from ``pair.b`` and the other way
round, byte for byte, like two serial ports wired TX to RX. Tests and the simulated
devices use it to run a real serial stack (pyserial, pymodbus RTU) without hardware::

    from firmware_sim.ptypair import PtyPair

    with PtyPair() as pair:
        device = serial.Serial(pair.a)      # the simulated sensor's end
        gateway = serial.Serial(pair.b)     # the gateway's end (e.g. a [[sensor]] address)

Two back ends give the same behaviour:

- ``socat`` (used when it is on PATH): ``socat pty,raw,echo=0 pty,raw,echo=0``, ended
  with the pair, or with the process that made it, however that process ends;
- ``python``: two ``os.openpty()`` pairs and a relay thread copying between the masters.

Either end may be opened, closed and reopened any number of times while the pair lives;
bytes written while the other end is closed wait in the pty's buffer (the python back end
drops what does not fit, as a UART overruns). Baud rate, parity and stop bits are
accepted and ignored, as by any pty. ``close()`` (or leaving the ``with``) ends the cable;
the paths then vanish.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

__all__ = ["PtyPair"]

BACKENDS = ("auto", "socat", "python")


class PtyPair:
    """Two pty device paths, ``a`` and ``b``, joined like a null-modem cable.

    ``backend``: "auto" (socat when on PATH, else python), "socat" or "python".
    The pair is open from construction until ``close()``.
    """

    a: str
    b: str
    backend: str

    def __init__(self, *, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "auto":
            backend = "socat" if shutil.which("socat") else "python"
        self.backend = backend
        self._closed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._relay: _Relay | None = None
        self._socat_pid: int | None = None
        if backend == "socat":
            self._start_socat()
        else:
            self._relay = _Relay()
            self.a, self.b = self._relay.paths

    # -- socat -----------------------------------------------------------------------------

    def _start_socat(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise FileNotFoundError("socat is not on PATH; use backend='python'")
        self._tmp = tempfile.TemporaryDirectory(prefix="ptypair-", ignore_cleanup_errors=True)
        link_a = Path(self._tmp.name) / "a"
        link_b = Path(self._tmp.name) / "b"
        # socat runs under a small shell that also waits on a pipe from this process: when
        # the pipe closes — close(), or this process dying however it dies — the shell
        # kills socat and removes the links, so no orphaned socat outlives its user
        script = (
            'exec 3<&0; "$1" "$2" "$3" </dev/null >/dev/null 2>&1 & pid=$!; echo "$pid"; '
            '(read _ignored <&3; kill "$pid" 2>/dev/null; sleep 0.2; '
            'rm -f "$4/a" "$4/b"; rmdir "$4" 2>/dev/null) & wait "$pid"'
        )
        self._proc = subprocess.Popen(
            [
                "/bin/sh", "-c", script, "ptypair", socat,
                f"pty,raw,echo=0,link={link_a}", f"pty,raw,echo=0,link={link_b}", self._tmp.name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        self._proc.stdout.close()
        self._socat_pid = int(line) if line.strip().isdigit() else None
        deadline = time.monotonic() + 10.0
        while not (link_a.exists() and link_b.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise OSError("socat did not create the pty pair")
            time.sleep(0.005)
        self.a = os.path.realpath(link_a)
        self.b = os.path.realpath(link_b)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True while the cable carries bytes."""
        if self._closed:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        return self._relay is not None and self._relay.alive

    def close(self) -> None:
        """Unplug the cable: stop socat or the relay; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # the watchdog kills socat; the shell then ends
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                if self._socat_pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(self._socat_pid, signal.SIGKILL)
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        if self._relay is not None:
            self._relay.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"PtyPair(a={self.a!r}, b={self.b!r}, backend={self.backend!r})"


class _Relay:
    """Two openpty() pairs and a thread copying master to master."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        m1, s1 = os.openpty()
        m2, s2 = os.openpty()
        self._fds += [m1, s1, m2, s2]
        for s in (s1, s2):  # no echo, no line discipline, as a serial port in raw mode
            tty.setraw(s)
        for m in (m1, m2):
            os.set_blocking(m, False)
        self.paths = (os.ttyname(s1), os.ttyname(s2))
        self._peer = {m1: m2, m2: m1}
        self._wake_r, self._wake_w = os.pipe()
        self._fds += [self._wake_r, self._wake_w]
        self._stop = threading.Event()
        self.dropped = 0  # bytes the far end's buffer had no room for
        self._thread = threading.Thread(target=self._run, name="ptypair-relay", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for m in self._peer:
            sel.register(m, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select():
                    fd = int(key.fd)
                    if fd == self._wake_r:
                        return
                    try:
                        data = os.read(fd, 4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # EIO: no process holds the slave (we always do)
                        continue
                    if data:
                        self._write(self._peer[fd], data)
        finally:
            sel.close()

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                self.dropped += len(view)
                return
            view = view[n:]

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
