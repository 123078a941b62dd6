"""Find frames in a byte stream: the resynchronising splitter the serial and TCP codecs share.

A serial line or a TCP connection delivers bytes, not frames: frames arrive split across
reads, several in one read, with line noise or a half-sent frame between them. The
``FrameSplitter`` here takes chunks as they come and returns, in order, every frame it
decoded and one error item per problem (a broken frame, a run of garbage), so a
long-running reader can count them and carry on. Its buffer never holds more than one
frame's worth of bytes, whatever a peer sends.

Each codec supplies its sync bytes, a ``measure`` function (the frame length from the
first bytes of a candidate, ``None`` while more bytes are needed, raising the codec's
error when the header cannot be right) and a ``decode`` function (frame -> item, raising
the codec's error). After a failed candidate the splitter drops one byte and searches
for the next sync, so a corrupted length field cannot swallow the frames behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from protocols.errors import CodecError

T = TypeVar("T")
E = TypeVar("E", bound=CodecError)


class FrameSplitter(Generic[T, E]):
    """Split a byte stream into decoded frames and error items, resynchronising after garbage.

    ``syncs``: the byte strings a frame may start with. ``max_frame``: the largest frame
    ``measure`` may announce (it bounds the buffer). ``ignore``: bytes skipped silently
    between frames (HJ 212's CR LF). ``report_every``: a run of garbage is reported at the
    latest after this many bytes, so endless garbage still shows up in the error count.
    """

    def __init__(
        self,
        *,
        syncs: tuple[bytes, ...],
        measure: Callable[[bytearray], int | None],
        decode: Callable[[bytes], T],
        error: type[E],
        max_frame: int,
        ignore: bytes = b"",
        report_every: int = 4096,
    ) -> None:
        if not syncs or any(not s for s in syncs):
            raise ValueError("syncs must be non-empty byte strings")
        self._syncs = syncs
        self._measure = measure
        self._decode = decode
        self._error = error
        self._max_frame = max_frame
        self._ignore = frozenset(ignore)
        self._report_every = report_every
        self._buf = bytearray()
        self._garbage = 0  # skipped bytes not yet reported
        self._quiet = 0  # bytes after a reported bad frame that belong to that report
        self.frames = 0
        self.errors = 0
        self.skipped_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame (never more than ``max_frame``)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[T | E]:
        """Take the next bytes of the stream; return the frames and errors they completed."""
        self._buf += chunk
        out: list[T | E] = []
        while self._buf:
            start = self._find_sync()
            if start < 0:
                self._skip(len(self._buf) - self._sync_prefix_tail(), out)
                break
            if start:
                self._skip(start, out)
            try:
                size = self._measure(self._buf)
                if size is None or len(self._buf) < size:
                    break
                frame = bytes(self._buf[:size])
                item = self._decode(frame)
            except self._error as exc:
                self._bad(exc, out)
                continue
            self._report_garbage(out)
            del self._buf[:size]
            self._quiet = 0
            self.frames += 1
            out.append(item)
        return out

    def flush(self) -> list[E]:
        """End of stream: report an incomplete frame and unreported garbage, and reset."""
        out: list[E] = []
        left = sum(1 for b in self._buf if b not in self._ignore)
        self._buf.clear()
        self.skipped_bytes += left
        garbage = self._take_garbage()
        if garbage is not None:
            out.append(garbage)
        if left:
            self.errors += 1
            out.append(self._error(f"stream ended inside a frame ({left} bytes)", skipped=left))
        self._quiet = 0
        return out

    # -- internals -----------------------------------------------------------------------

    def _find_sync(self) -> int:
        found = [i for i in (self._buf.find(s) for s in self._syncs) if i >= 0]
        return min(found) if found else -1

    def _sync_prefix_tail(self) -> int:
        """How many trailing bytes could be the start of a sync split across chunks."""
        best = 0
        for s in self._syncs:
            for k in range(min(len(s) - 1, len(self._buf)), best, -1):
                if self._buf.endswith(s[:k]):
                    best = k
                    break
        return best

    def _skip(self, n: int, out: list[T | E]) -> None:
        counted = sum(1 for b in self._buf[:n] if b not in self._ignore)
        del self._buf[:n]
        self.skipped_bytes += counted
        quiet = min(self._quiet, counted)
        self._quiet -= quiet
        self._garbage += counted - quiet
        if self._garbage >= self._report_every:
            self._report_garbage(out)

    def _take_garbage(self) -> E | None:
        if not self._garbage:
            return None
        n, self._garbage = self._garbage, 0
        self.errors += 1
        return self._error(f"skipped {n} bytes that are not part of a frame", skipped=n)

    def _report_garbage(self, out: list[T | E]) -> None:
        garbage = self._take_garbage()
        if garbage is not None:
            out.append(garbage)

    def _bad(self, exc: E, out: list[T | E]) -> None:
        self._report_garbage(out)
        self.errors += 1
        out.append(exc)
        del self._buf[:1]
        self.skipped_bytes += 1
        self._quiet = self._max_frame - 1
