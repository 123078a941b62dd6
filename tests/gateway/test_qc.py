"""QC: one flag and a reason per reading, in the documented order; nothing dropped."""

from __future__ import annotations

import pytest

from gateway.model import Flag, Reading
from gateway.qc import QualityControl

T0 = 1_780_000_000.0
QC_EXTRA = """
[qc.pm25]
max = 1000
spike_per_min = 100
flat_s = 300

[qc.no2]
min = -5
"""
WARM = """
    [[sensor]]
    name = "pm"
    profile = "rs-pm-n01"
    transport = "modbus-tcp"
    address = "127.0.0.1:5020"
    interval_s = 10
    warmup_s = 30
"""


def r(q: str, value: float | None, ts: float, sensor: str = "pm", **kw) -> Reading:
    return Reading("S", sensor, q, "ug/m3", ts, value, value, **kw)


@pytest.fixture
def qc(make_config) -> QualityControl:
    return QualityControl(make_config(extra=QC_EXTRA))


def test_normal_readings_pass_unchanged(qc: QualityControl) -> None:
    a = r("pm25", 12.0, T0)
    assert qc.check(a) is a
    assert qc.counts["N"] == 1


def test_range_over_is_t_below_is_d(qc: QualityControl) -> None:
    assert qc.check(r("pm25", 1500.0, T0)).flag == Flag.OVER_RANGE
    low = qc.check(r("pm10", -3.0, T0))  # default bound of pm10 is 0..10000
    assert low.flag == Flag.FAULT and "below range" in (low.why or "")
    assert qc.check(r("no2", -3.0, T0, sensor="gas")).flag == Flag.NORMAL  # [qc.no2] min = -5


def test_spike_and_flat_line(qc: QualityControl) -> None:
    assert qc.check(r("pm25", 10.0, T0)).flag == Flag.NORMAL
    spike = qc.check(r("pm25", 400.0, T0 + 60))  # +390 per minute > 100
    assert spike.flag == Flag.FAULT and spike.why.startswith("spike")
    assert qc.check(r("pm25", 420.0, T0 + 120)).flag == Flag.NORMAL
    # the same raw value for 300 s or more: stuck
    flags = [qc.check(r("pm25", 420.0, T0 + 120 + 60 * i)).flag for i in range(1, 7)]
    assert flags == [Flag.NORMAL] * 4 + [Flag.FAULT] * 2
    assert "stuck" in (qc.check(r("pm25", 420.0, T0 + 1000)).why or "")
    assert qc.check(r("pm25", 421.0, T0 + 1010)).flag == Flag.NORMAL


def test_humidity_flags_optical_pm_on_a_micro_station(qc: QualityControl) -> None:
    out = qc.check_many([r("pm25", 30.0, T0), r("rh", 97.0, T0, sensor="met")])
    assert out[0].flag == Flag.FAULT and "humidity 97" in (out[0].why or "")
    assert out[1].flag == Flag.NORMAL
    assert qc.check(r("no2", 30.0, T0, sensor="gas")).flag == Flag.NORMAL


def test_reference_station_pm_is_not_flagged_for_humidity(make_config) -> None:
    qc = QualityControl(make_config(kind="reference"))
    out = qc.check_many([r("rh", 97.0, T0, sensor="met"), r("pm25", 30.0, T0)])
    assert out[1].flag == Flag.NORMAL


def test_upstream_flags_win(qc: QualityControl) -> None:
    comm = Reading("S", "pm", "pm25", "ug/m3", T0, None, None, Flag.COMM_FAULT, "timeout")
    assert qc.check(comm).flag == Flag.COMM_FAULT
    cal = r("pm25", 5000.0, T0, flag=Flag.CALIBRATION, why="calibration session 1 (span)")
    assert qc.check(cal).flag == Flag.CALIBRATION


def test_warm_up_after_start_and_after_a_silence(make_config) -> None:
    qc = QualityControl(make_config(sensors=WARM))
    flags = [qc.check(r("pm25", 10.0 + i, T0 + 10 * i)).flag for i in range(5)]
    assert flags == [Flag.FAULT] * 3 + [Flag.NORMAL] * 2
    assert "warm-up" in (qc.check(r("pm25", 1.0, T0 + 3600)).why or "")  # silent > 60 s
    assert qc.check(r("pm25", 1.0, T0 + 3600 + 30)).flag == Flag.NORMAL
    assert sum(qc.counts.values()) == 7
