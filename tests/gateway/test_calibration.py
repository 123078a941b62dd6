"""Calibration sets: the arithmetic, the versioned store, sessions and the stage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calibration import (
    CalibrationError,
    Calibrator,
    CalSet,
    calibration_path,
    fit_linear,
    growth_factor,
)
from gateway.calstore import CalibrationStore
from gateway.model import Flag, Sample

T0 = 1_780_000_000.0


def test_linear_and_points_and_rh_values() -> None:
    assert CalSet("pm", "pm25", slope=1.1, offset=-2.0).value(10.0) == pytest.approx(9.0)
    pts = CalSet("pm", "pm25", kind="points", points=((0.0, 1.0), (10.0, 21.0), (20.0, 31.0)))
    assert pts.value(5.0) == pytest.approx(11.0)
    assert pts.value(15.0) == pytest.approx(26.0)
    assert pts.value(30.0) == pytest.approx(41.0)  # extended along the last segment
    assert pts.value(-10.0) == pytest.approx(-19.0)
    one = CalSet("pm", "pm25", kind="points", points=((10.0, 12.0),))
    assert one.value(50.0) == pytest.approx(52.0)
    rh = CalSet("pm", "pm25", kind="rh", slope=1.0, offset=0.0, kappa=0.4)
    # Crilley et al. 2018: C = 1 + (kappa/1.65) / (1/aw - 1); at 80 % RH, kappa 0.4: 1.9697
    assert growth_factor(80.0, 0.4) == pytest.approx(1 + (0.4 / 1.65) / (1 / 0.8 - 1))
    assert rh.value(100.0, 80.0) == pytest.approx(100.0 / growth_factor(80.0, 0.4))
    assert rh.value(100.0, 0.0) == pytest.approx(100.0)
    with pytest.raises(CalibrationError, match="no RH"):
        rh.value(100.0, None)


@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 2))
def test_growth_factor_is_finite_and_grows_with_rh(a: float, b: float, kappa: float) -> None:
    lo, hi = sorted((a, b))
    assert math.isfinite(growth_factor(hi, kappa))
    assert 1.0 <= growth_factor(lo, kappa) <= growth_factor(hi, kappa)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"kind": "cubic"}, "kind"),
        ({"slope": 0.0}, "slope"),
        ({"kind": "points"}, "at least one"),
        ({"kind": "points", "points": ((1.0, 1.0), (1.0, 2.0))}, "repeat"),
        ({"kind": "rh", "kappa": None}, "kappa"),
        ({"kind": "rh", "kappa": 5.0}, "kappa"),
        ({"source": "guess"}, "source"),
        ({"offset": math.nan}, "finite"),
    ],
)
def test_bad_sets_are_refused(kw: dict, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        CalSet("pm", "pm25", **kw)


def test_fit_linear_recovers_a_line() -> None:
    slope, offset, stats = fit_linear([(0, 1), (10, 21), (20, 41)])
    assert (slope, offset) == (pytest.approx(2.0), pytest.approx(1.0))
    assert stats["n"] == 3 and stats["r2"] == pytest.approx(1.0) and stats["rmse"] < 1e-9
    with pytest.raises(CalibrationError):
        fit_linear([(1, 1)])


def test_from_args_of_the_set_calibration_command() -> None:
    cs = CalSet.from_args(
        {
            "sensor": "pm",
            "quantity": "pm25",
            "kind": "points",
            "points": [[50, 55], [0, 1]],
            "source": "colocation",
            "fit": {"r2": 0.93, "n": 240},
            "effective": "2026-06-01T00:00:00Z",
        },
        now=T0,
    )
    assert cs.points == ((0.0, 1.0), (50.0, 55.0))
    assert cs.effective == pytest.approx(1_780_272_000.0)
    for bad in (
        {"quantity": "pm25"},
        {"sensor": "pm", "quantity": "pm25", "slope": "x"},
        {"sensor": "pm", "quantity": "pm25", "colour": 1},
    ):
        with pytest.raises(CalibrationError):
            CalSet.from_args(bad, now=T0)


def test_store_versions_effective_time_and_rollback(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / "cal.db", "S1")
    v1 = store.add(CalSet("pm", "pm25", slope=1.0, offset=1.0, effective=T0), now=T0)
    v2 = store.add(CalSet("pm", "pm25", slope=2.0, effective=T0 + 100), now=T0 + 1)
    assert (v1.version, v2.version) == (1, 2)
    assert store.active("pm", "pm25", T0 + 50) == v1  # v2 not yet in force
    assert store.active("pm", "pm25", T0 + 200) == v2
    assert store.active("pm", "pm25", T0 - 1) is None
    v3 = store.rollback("pm", "pm25", to=None, now=T0 + 300)
    assert v3.version == 3 and v3.slope == 1.0 and v3.note == "rollback to v1"
    assert [s.version for s in store.sets("pm", "pm25")] == [1, 2, 3]
    with pytest.raises(CalibrationError, match="no version 9"):
        store.rollback("pm", "pm25", to=9, now=T0)
    with pytest.raises(CalibrationError, match="no calibration"):
        store.rollback("pm", "no2", to=None, now=T0)
    # another station's sets in the same file stay apart
    assert CalibrationStore(tmp_path / "cal.db", "S2").sets() == []


def test_calibrator_keeps_raw_value_and_version_and_reloads(tmp_path: Path) -> None:
    path = calibration_path(tmp_path / "outbox.db")
    assert path.name == "outbox-calibration.db"
    store = CalibrationStore(path, "S1")
    cal = Calibrator("S1", store)
    r = cal.apply(Sample("pm", "pm25", "ug/m3", 10.0, T0))
    assert (r.raw, r.value, r.cal_version, r.flag) == (10.0, 10.0, 0, Flag.NORMAL)
    # the CLI writes through its own connection; the daemon's calibrator notices
    CalibrationStore(path, "S1").add(CalSet("pm", "pm25", slope=2.0, offset=1.0), now=T0)
    assert cal.refresh()
    r = cal.apply(Sample("pm", "pm25", "ug/m3", 10.0, T0))
    assert (r.raw, r.value, r.cal_version) == (10.0, 21.0, 1)
    assert not cal.refresh()
    # a sample without a value passes through with its flag
    r = cal.apply(Sample("pm", "pm25", "ug/m3", None, T0, Flag.COMM_FAULT, "timeout"))
    assert (r.value, r.flag, r.why) == (None, Flag.COMM_FAULT, "timeout")


def test_rh_correction_uses_the_humidity_of_the_same_poll(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / "cal.db", "S1")
    store.add(CalSet("pm", "pm25", kind="rh", kappa=0.4), now=T0)
    cal = Calibrator("S1", store)
    pm = Sample("pm", "pm25", "ug/m3", 100.0, T0)
    r = cal.apply_many([pm, Sample("met", "rh", "%RH", 80.0, T0)])[0]
    assert r.value == pytest.approx(100.0 / growth_factor(80.0, 0.4))
    # no humidity known (too old): the reading cannot be corrected and says so
    fresh = Calibrator("S1", store)
    r = fresh.apply(pm)
    assert (r.value, r.flag) == (None, Flag.FAULT) and "RH" in (r.why or "")


def test_session_flags_c_and_records_raw(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / "cal.db", "S1")
    cal = Calibrator("S1", store)
    sess = CalibrationStore(tmp_path / "cal.db", "S1").open_session(
        "pm", "pm25", "zero", start=T0, duration_s=60
    )
    cal.refresh()
    inside = cal.apply_many(
        [
            Sample("pm", "pm25", "ug/m3", 1.5, T0 + 10),
            Sample("pm", "pm10", "ug/m3", 3.0, T0 + 10),
            Sample("met", "rh", "%RH", 50.0, T0 + 10),
        ]
    )
    assert [r.flag for r in inside] == [Flag.CALIBRATION, Flag.NORMAL, Flag.NORMAL]
    assert "zero" in (inside[0].why or "")
    after = cal.apply(Sample("pm", "pm25", "ug/m3", 1.5, T0 + 61))
    assert after.flag == Flag.NORMAL
    cal.refresh()
    assert store.session_readings(sess.id, "pm25") == [(T0 + 10, 1.5)]
    store.close_session(sess.id, at=T0 + 20)
    assert store.sessions(at=T0 + 30) == []
