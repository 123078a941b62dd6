"""``bench/run_all``: how it reads each bench's JSON into figure / baseline / ratio, how it
reports a failing bench without stopping the others, and a real run of the quickest bench."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import ROOT


def _load() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module("_run_all")


ra = _load()


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_every_bench_script_is_in_the_plan_and_exists() -> None:
    names = {b.name for b in ra.PLAN}
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_")}
    assert names == scripts
    assert all((ROOT / "bench" / f"{n}.py").is_file() for n in names)
    assert (ROOT / "bench" / "run_all").stat().st_mode & 0o111  # executable


def test_figures_of_the_different_shapes_are_normalised() -> None:
    listed = {"bench": "codecs", "results": [
        {"name": "hj212.parse", "unit": "packets/s", "value": 100.0,
         "baseline": "crc16", "baseline_value": 400.0, "ratio": 0.25}]}  # fmt: skip
    (f,) = ra.generic(listed)
    assert (f["name"], f["value"], f["baseline_value"], f["ratio"]) == ("hj212.parse", 100.0,
                                                                        400.0, 0.25)  # fmt: skip
    keyed = {"dead_unit_extra_s": {"value": 0.21, "baseline": "timeout", "baseline_value": 0.2}}
    (g,) = ra.generic(keyed)
    assert g["name"] == "dead_unit_extra_s" and g["ratio"] == 1.05  # computed when missing
    drain = {"readings": 1_000_000, "drain_s": 20.0, "drain_readings_per_s": 50_000,
             "baseline": "bare paho", "baseline_s": 1.0, "ratio": 0.05, "steady_rss_mb": 40.0,
             "goal_drain_s": 180.0, "meets_rss_goal": True}  # fmt: skip
    d = ra.backlog_drain(drain)
    assert d[0]["ratio_is"] == "baseline / figure" and d[0]["met"] is True  # 50 k/s >= 24 k/s
    prairie = {"model": {"fac2": 0.82, "fb": -0.02, "nmse": 0.5},
               "baseline_all_class_D": {"fac2": 0.55, "fb": 0.06, "nmse": 1.3},
               "fac2_ratio_vs_baseline": 1.49}  # fmt: skip
    assert ra.prairie_grass(prairie)[0]["met"] is True


def test_a_failing_bench_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    good = json.dumps({"bench": "x", "results": [
        {"name": "speed", "unit": "items/s", "value": 50, "baseline": "floor",
         "baseline_value": 100}], "machine": {"cores": 2}})  # fmt: skip
    plan = [
        ra.Bench("fails", command=_py("import sys; print('boom', file=sys.stderr); sys.exit(3)")),
        ra.Bench("garbled", command=_py("print('not json')")),
        ra.Bench("good", command=_py(f"print({good!r})")),
        ra.Bench("absent", command=_py("print('{\"skipped\": \"no data here\"}')")),
    ]
    out = tmp_path / "r.json"
    doc = ra.run(plan, out, log=lambda _s: None)
    assert json.loads(out.read_text()) == doc
    assert doc["ok"] is False and doc["failed"] == ["fails", "garbled"]
    assert doc["skipped"] == ["absent"]  # skipped, said why, not a failure
    fails, garbled, ok, absent = doc["benches"]
    assert absent["skipped"] == "no data here" and "error" not in absent
    assert fails["exit_code"] == 3 and "boom" in fails["error"]
    assert garbled["exit_code"] == 1 and "no JSON" in garbled["error"]
    assert ok["figure"] == {"name": "speed", "value": 50, "unit": "items/s"}
    assert ok["baseline"]["value"] == 100 and ok["ratio"] == 0.5
    assert ok["machine"] == {"cores": 2} and "machine" in doc
    table = ra.table(doc)
    assert "FAILED (exit 3)" in table
    assert "| good | speed: 50 items/s | 100 items/s (floor) | 0.5 |" in table


def test_run_all_runs_a_real_bench_and_exits_1_on_a_bad_name(tmp_path: Path) -> None:
    out = tmp_path / "bench-results.json"
    run_all = [sys.executable, str(ROOT / "bench" / "run_all")]
    r = subprocess.run([*run_all, "--only", "nosuch"], capture_output=True, text=True,
                       check=False)  # fmt: skip
    assert r.returncode == 2 and "unknown bench nosuch" in r.stderr
    r = subprocess.run([*run_all, "--only", "bench_alerts", "--out", str(out)],
                       capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert json.loads(r.stdout) == doc
    (e,) = doc["benches"]
    assert e["bench"] == "bench_alerts" and e["exit_code"] == 0
    for f in e["figures"]:
        assert f["value"] > 0 and f["baseline_value"] > 0 and f["ratio"] > 0
    assert e["machine"]["cores"] >= 1


def test_e2e_latency_says_how_to_size_it() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e_latency.py"), "--help"],
                       capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "--orders" in r.stdout and "--seconds" in r.stdout


def test_prairie_grass_without_its_data_skips_unless_asked_for(tmp_path: Path) -> None:
    import os

    cmd = [sys.executable, str(ROOT / "bench" / "prairie_grass.py")]
    env = {**os.environ, "AIRTRACE_PRAIRIE_GRASS": str(tmp_path)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert p.returncode == 0 and "skipped" in json.loads(p.stdout)
    p = subprocess.run([*cmd, "--data", str(tmp_path)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 2 and "no PGARCS.txt" in p.stderr
