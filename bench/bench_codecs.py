"""Codec throughput: HJ 212 parsing and stream splitting, PMS5003/SDS011 frames, registers.

Prints one JSON object: per codec the figure, a baseline measured in the same run on the
same data, and their ratio, plus the machine. The baselines are the floor each codec cannot
go below: HJ 212's CRC alone (every correct receiver computes it), parsing frames already
split (for the stream splitter), a bare ``struct.unpack`` of the same bytes (for the
serial frames and registers). Run: ``.venv/bin/python bench/bench_codecs.py``.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine
from protocols import hj212, pms5003, registers, sds011


def per_second(fn: Callable[[], object], n_items: int, min_time: float = 0.4) -> float:
    """Items per second of ``fn`` (which handles ``n_items``), best of repeated runs."""
    best = float("inf")
    spent = 0.0
    while spent < min_time or best == float("inf"):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return n_items / best


def result(name: str, unit: str, value: float, baseline_name: str, baseline: float) -> dict:
    return {
        "name": name,
        "unit": unit,
        "value": round(value, 1),
        "baseline": baseline_name,
        "baseline_value": round(baseline, 1),
        "ratio": round(value / baseline, 3),
    }


def hj212_frames(n: int) -> list[bytes]:
    codes = ["a34001", "a34002", "a34004", "a34005", "a01001", "a01002", "a01006", "a01007"]
    return [
        hj212.build(
            "22",
            "2011",
            "123456",
            f"LXHB0CS03{i % 100:05d}",
            {
                "DataTime": "20240101080000",
                **{c: {"Rtd": (i * 7 + k) % 500 + 0.5, "Flag": "N"} for k, c in enumerate(codes)},
            },
            qn=f"20240101080000{i % 1000:03d}",
            flag=5,
        )
        for i in range(n)
    ]


def bench_hj212() -> list[dict]:
    frames = hj212_frames(2000)
    segments = [f[6:-6] for f in frames]
    parse = per_second(lambda: [hj212.parse(f) for f in frames], len(frames))
    crc = per_second(lambda: [hj212.crc16(s) for s in segments], len(frames))
    stream_bytes = b"".join(frames)
    chunks = [stream_bytes[i : i + 1460] for i in range(0, len(stream_bytes), 1460)]

    def run_stream() -> None:
        s = hj212.Hj212Stream()
        for c in chunks:
            s.feed(c)

    mb = len(stream_bytes) / 1e6
    stream = per_second(run_stream, 1) * mb
    split = per_second(lambda: [hj212.parse(f) for f in frames], 1) * mb
    return [
        result("hj212.parse", "packets/s", parse, "hj212.crc16 of the same segments", crc),
        result("hj212.Hj212Stream", "MB/s", stream, "hj212.parse of pre-split frames", split),
    ]


def bench_serial() -> list[dict]:
    pms = [pms5003.build_frame(pm25=i % 300, pm10=i % 400, n0_3=i) for i in range(2000)]
    sds = [sds011.build_frame(pm25=(i % 3000) / 10, pm10=(i % 4000) / 10) for i in range(2000)]
    pms_rate = per_second(lambda: [pms5003.parse_frame(f) for f in pms], len(pms))
    pms_base = per_second(lambda: [struct.unpack(">2H13HH", f) for f in pms], len(pms))
    sds_rate = per_second(lambda: [sds011.parse_frame(f) for f in sds], len(sds))
    sds_base = per_second(lambda: [struct.unpack("<2B3H2B", f) for f in sds], len(sds))
    return [
        result("pms5003.parse_frame", "frames/s", pms_rate, "struct.unpack", pms_base),
        result("sds011.parse_frame", "frames/s", sds_rate, "struct.unpack", sds_base),
    ]


def bench_registers() -> list[dict]:
    spec = registers.RegisterSpec("co2", 0xA0, 4, "float32", word_order="little", scale=0.1)
    words: Sequence[list[int]] = [registers.encode(i / 10, spec) for i in range(5000)]
    rate = per_second(lambda: [registers.decode(w, spec) for w in words], len(words))
    base = per_second(
        lambda: [struct.unpack(">f", struct.pack(">HH", *w)) for w in words], len(words)
    )
    return [result("registers.decode float32", "values/s", rate, "struct pack+unpack", base)]


def main() -> None:
    results = bench_hj212() + bench_serial() + bench_registers()
    print(json.dumps({"bench": "codecs", "machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
