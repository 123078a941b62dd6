"""The outbox on real SQLite: ids, epoch, transactions, custody, the size bound, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.errors import OutboxError
from gateway.model import Flag, Reading
from gateway.outbox import Outbox, inspect
from protocols import telemetry as tm

T0 = 1_780_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def readings(n: int, start: float = T0, step: float = 1.0, **kw) -> list[Reading]:
    return [
        Reading("S", "pm", "pm25", "ug/m3", start + i * step, 10.0 + i % 7, 11.0 + i % 7, **kw)
        for i in range(n)
    ]


def test_ids_start_at_1_and_survive_pruning_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        epoch = box.epoch
        assert len(epoch) == 16
        assert box.add(readings(3)) == range(1, 4)
        assert box.stored(3, epoch)
        box.prune(force=True)
        assert box.stats().depth == 0
    with Outbox(path) as box:
        assert box.epoch == epoch  # fixed when the file was created
        assert box.watermark == 3
        assert box.add(readings(2)) == range(4, 6)  # never reused after pruning
    other = Outbox(tmp_path / "other.db")
    assert other.epoch != epoch
    other.close()


def test_transaction_begin_ack_keep(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.add(readings(10))
        a = box.begin(4)
        b = box.begin(4)
        assert (a.first, a.last, b.first, b.last) == (1, 4, 5, 8)
        pack = tm.decode_pack(tm.encode_pack(a.pack("S")), "S")
        assert pack.epoch == box.epoch and pack.seq == 1 and pack.ids == [1, 2, 3, 4]
        assert pack.records[0].value == 11.0 and pack.records[0].raw == 10.0
        box.ack(a)  # the broker has it: still kept
        box.keep(b)  # did not go out: again from 5
        assert box.stats().depth == 10
        assert box.begin(100).first == 5
        assert box.begin(100) is None
        assert box.rewind() == 10  # nothing confirmed: everything again
        assert [r.id for r in box.begin(100).records] == list(range(1, 11))


def test_watermark_of_another_epoch_is_ignored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.add(readings(5))
        assert not box.stored(5, "someone-else")
        assert box.watermark == 0
        assert box.stored(2, box.epoch)
        assert not box.stored(1, box.epoch)  # never backwards
        box.rewind()
        assert box.begin(10).first == 3


def test_watermark_beyond_what_the_file_holds_skips_ids(tmp_path: Path) -> None:
    # a power cut rolled back commits the centre had already stored
    with Outbox(tmp_path / "o.db") as box:
        box.add(readings(3))
        assert box.stored(7, box.epoch)
        assert box.add(readings(1)) == range(8, 9)
    with Outbox(tmp_path / "o.db") as box:
        assert box.next_id == 9


def test_one_writer_per_file_and_read_only_inspection(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    box.add(readings(5))
    with pytest.raises(OutboxError, match="in use by another process"):
        Outbox(path)
    st_ = inspect(path)
    assert (st_.depth, st_.next_id, st_.oldest_ts) == (5, 6, T0)
    box.close()
    with pytest.raises(OutboxError, match="no such file"):
        inspect(tmp_path / "missing.db")


def test_full_disk_stores_nothing_and_says_so(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.add(readings(10))
        pages = box.db.execute("PRAGMA page_count").fetchone()[0]
        box.db.execute(f"PRAGMA max_page_count={pages}")  # as good as a full disk
        with pytest.raises(OutboxError, match="full") as err:
            box.add(readings(5000))
        assert err.value.fields["disk_full"]
        assert box.next_id == 11
        assert box.add(readings(1)) == range(11, 12)  # a small one still fits


def test_size_bound_thins_oldest_keeps_means_and_alarms(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_mb=1.0, keep_above={"pm25": 500.0})
    rows = readings(30_000, step=10.0)  # 83 hours at 10 s
    rows[5] = rows[5].replace(value=800.0)  # a local rule's threshold is 500: an alarm
    rows[7] = rows[7].replace(value=99999.0, flag=Flag.OVER_RANGE, why="over range")
    for i in range(0, len(rows), 1000):
        box.add(rows[i : i + 1000])
    assert box.size_bytes() > box.max_bytes
    shed = box.enforce_bound()
    assert shed > 0 and box.shed == shed
    assert box.size_bytes() <= box.max_bytes
    assert box.floor == shed + 1  # the oldest ids are the ones gone
    tail = box.db.execute(
        "SELECT id, ts, value, flag, why FROM reading WHERE id > 30000 ORDER BY id"
    ).fetchall()
    means = [t for t in tail if t[4].startswith("hourly mean")]
    alarms = [t for t in tail if t[4].startswith("kept through thinning")]
    # one mean per hour and thinning pass (an hour cut by two passes has two partial means)
    assert {t[1] for t in means} == {(T0 + 10.0 * i) // 3600 * 3600 for i in range(shed)}
    assert sum(int(t[4].split()[3]) for t in means) == shed - 1  # the T reading is no mean
    assert sorted(a[2] for a in alarms) == [800.0, 99999.0]
    assert {a[3] for a in alarms} == {"N", "T"}
    assert means[0][1] == T0 // 3600 * 3600
    # the floor travels in every pack from now on
    box.rewind()
    batch = box.begin(10)
    assert batch.first == box.floor and batch.floor == box.floor
    box.close()


CRASHER = textwrap.dedent(
    """
    import sys, time
    from gateway.outbox import Outbox
    from gateway.model import Reading
    box = Outbox(sys.argv[1])
    print(box.epoch, flush=True)
    while True:
        n = box.next_id
        box.add([Reading("S", "pm", "pm25", "ug/m3", 1.78e9 + n + i, 1.0, 1.0)
                 for i in range(50)])
        b = box.begin(40)
        if b is not None and b.first % 3 == 0:
            box.stored(b.last, box.epoch)
    """
)


@pytest.mark.slow
def test_kill_9_while_writing_keeps_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    epoch = None
    for i in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(path)], stdout=subprocess.PIPE, env=env
        )
        first = proc.stdout.readline().decode().strip()
        epoch = epoch or first
        assert first == epoch
        time.sleep(0.15 + 0.07 * i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT id FROM reading ORDER BY id")]
        top = conn.execute("SELECT seq FROM sqlite_sequence").fetchone()[0]
        conn.close()
        assert ids == list(range(ids[0], top + 1))  # contiguous: nothing half-done
        assert top % 50 == 0  # whole transactions only


class OutboxMachine(RuleBasedStateMachine):
    """Any order of add / begin / ack / keep / watermark / crash: every id ever added is
    handed out again until the watermark covers it, and ids never repeat."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.box = Outbox(self.dir / "o.db")
        self.added = 0
        self.confirmed = 0
        self.out: list = []

    @rule(n=st.integers(1, 30))
    def add(self, n: int) -> None:
        got = self.box.add(readings(n))
        assert got.start == self.added + 1
        self.added += n

    @rule(n=st.integers(1, 20))
    def begin(self, n: int) -> None:
        b = self.box.begin(n)
        if b is not None:
            assert b.first > self.confirmed and b.last <= self.added
            self.out.append(b)

    @precondition(lambda self: self.out)
    @rule(ok=st.booleans())
    def finish(self, ok: bool) -> None:
        b = self.out.pop(0)
        (self.box.ack if ok else self.box.keep)(b)

    @rule(k=st.integers(0, 40))
    def watermark(self, k: int) -> None:
        upto = min(self.added, self.confirmed + k)
        self.box.stored(upto, self.box.epoch)
        self.confirmed = max(self.confirmed, upto)

    @rule()
    def crash_and_reopen(self) -> None:
        self.box.db.close()
        self.box._unlock()
        self.box = Outbox(self.dir / "o.db")
        self.out.clear()
        # pruning is batched, so the file may hold an older watermark: the broker hands
        # the retained one back on the next connect
        assert self.box.watermark <= self.confirmed
        self.box.stored(self.confirmed, self.box.epoch)

    @rule()
    def resend_all(self) -> None:
        self.box.rewind()
        self.out.clear()
        ids: list[int] = []
        while (b := self.box.begin(25)) is not None:
            ids.extend(r.id for r in b.records)
        assert ids == list(range(self.confirmed + 1, self.added + 1))

    @invariant()
    def depth_matches(self) -> None:
        assert self.box.stats().depth == self.added - self.confirmed

    def teardown(self) -> None:
        self.box.close()


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


names = st.builds(
    lambda a, b: a + b,
    st.sampled_from("aZ09"),
    st.text(alphabet="abcXYZ019_.:/-", max_size=12),
)
texts = st.text(max_size=30)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def rows(draw):
    n = draw(st.integers(1, 8))
    first = draw(st.integers(1, 10**9))
    t0 = draw(st.floats(1.6e9, 2.0e9))
    out = []
    for i in range(n):
        value = draw(st.none() | finite)
        flag = draw(st.sampled_from("NSFMDCTBH")) if value is not None else "B"
        out.append((
            first + i, t0 + draw(st.floats(0, 1e5)), draw(st.none() | names), draw(names),
            draw(texts), draw(st.none() | finite), value, flag, draw(st.none() | texts),
            draw(st.integers(0, 10**6)),
        ))  # fmt: skip
    return tuple(out)


@settings(max_examples=100, deadline=None)
@given(rows(), st.text(alphabet="abcXYZ019_-", max_size=16),
       st.none() | st.integers(1, 10**6))  # fmt: skip
def test_the_fast_encoder_writes_exactly_what_the_codec_writes(rows, epoch, floor) -> None:
    from gateway.batch import Batch

    b = Batch(epoch, rows[0][0], rows[-1][0], rows, floor)
    assert b.encode("GX-T-001") == tm.encode_pack(b.pack("GX-T-001"))
