"""``airtrace demo``: a short district run end to end through the real command (the broker,
the firmware_sim devices on TCP, pty RTU lines and serial ptys, HJ 212 monitors, gateway
processes, the central service, the hourly inversion, the alerts), with chaos: a gateway
process and the central service are killed with SIGKILL mid-run. Nothing may be lost or
doubled, counted from the outboxes and the store themselves."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from airtrace.demo.tally import match_sources


@dataclass(frozen=True)
class _Src:
    x_m: float
    y_m: float
    site: str | None
    kind: str
    rate_g_s: float


class _World:
    """Just what ``match_sources`` asks of a world: the sources and their true rates."""

    def __init__(self, *sources: _Src) -> None:
        self.sources = sources

    def truth(self, hours):  # the mean rate over the hours: constant here
        return self.sources


T0 = 1_780_272_000


def test_sources_are_matched_hour_by_hour_within_the_gate() -> None:
    world = _World(_Src(500.0, 500.0, "C-1", "construction", 2.0),
                   _Src(1500.0, 1500.0, None, "industrial", 1.0))
    results = [
        {"hour": T0 + 0 * 3600, "sources": [{"x_m": 0.0, "y_m": 0.0, "rate_g_s": 9.0}]},
        {"hour": T0 + 1 * 3600, "sources": [{"x_m": 550.0, "y_m": 450.0, "rate_g_s": 1.0},
                                             {"x_m": 3000.0, "y_m": 3000.0, "rate_g_s": 1.0}]},
        {"hour": T0 + 2 * 3600, "sources": [{"x_m": 450.0, "y_m": 550.0, "rate_g_s": 3.0}]},
        {"hour": T0 + 3 * 3600, "sources": []},
    ]
    got = match_sources(world, results, window_hours=2, first_hour=T0)
    first, second = got
    # hour 0's window starts before the run: not counted; hours 1-3 are
    assert first["hours_inverted"] == 3 and first["hours_found"] == 2
    assert (first["found_x_m"], first["found_y_m"]) == (500.0, 500.0)  # the median
    assert first["distance_m"] == 0.0 and first["rate_ratio"] == 1.0  # median of 0.5 and 1.5
    assert first["hours_within_100_m"] == 2
    # the second is nowhere near anything found: every found field is null
    assert second["found_x_m"] is None and second["distance_m"] is None
    assert second["rate_ratio"] is None and second["hours_found"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_short_demo_with_chaos_loses_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "report"  # given relative, as a user would: paths must still agree
    r = cli("demo", "--out", "report", "--minutes", "1.5", "--hours", "3", "--stations", "20",
            "--sources", "1", "--seed", "3", "--chaos", timeout=600, cwd=tmp_path)
    assert r.code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["chaos"] == ["gateway", "cloud"]
    # exactly what chaos killed came back; nothing else had to be restarted
    assert s["restarts"] == {"central service": 1, "gateway process 1": 1}
    assert "chaos: killed central service with SIGKILL" in r.stdout
    assert s["readings_produced"] > 1000
    assert s["lost"] == 0 and s["doubled"] == 0
    assert s["readings_stored"] >= s["readings_produced"]
    assert len(s["per_station"]) == 20  # every station's outbox was counted
    assert all(v["produced"] > 0 and v["lost"] == 0 for v in s["per_station"].values())
    assert len(s["sources"]) == 1
    src = s["sources"][0]
    keys = {"true_x_m", "true_y_m", "found_x_m", "found_y_m", "distance_m", "rate_ratio"}
    assert keys <= set(src)
    if src["found_x_m"] is not None:
        assert math.isclose(src["distance_m"], math.hypot(src["found_x_m"] - src["true_x_m"],
                                                          src["found_y_m"] - src["true_y_m"]),
                            abs_tol=0.2)
    assert s["hours_inverted"] == 3
    assert len(list((out / "maps").glob("hour-*.png"))) == 3
    page = (out / "index.html").read_text()
    assert "Sources: found vs truth" in page and "maps/hour-" in page
    assert "lost 0" in r.stdout and "doubled 0" in r.stdout


def test_bad_options_exit_2_with_one_line(cli) -> None:
    r = cli("demo", "--minutes", "0.1")
    assert r.code == 2 and r.stderr.count("\n") == 1 and "--minutes" in r.stderr
    r = cli("demo", "--mqtt", "http://x")
    assert r.code == 2 and "mqtt://" in r.stderr
