"""What ``bench/run_all`` does: run every benchmark script at reduced-but-meaningful sizes,
one after another, and gather their JSON into one document.

Each entry of the document: the bench's ``command``, ``exit_code``, ``seconds`` (wall),
its headline ``figure``, the ``baseline`` measured in the same run, their ``ratio`` (as the
script defines it: ``ratio_is``), the ``goal`` and whether it is ``met``; ``figures``: every
figure the script reports in the same shape; ``machine``; and ``raw``: the script's own
JSON. A bench that fails (non-zero exit, no JSON, timeout) is an entry with ``error`` and
``exit_code``; the others still run and the run exits 1.

The sizes (``PLAN``) keep the whole run under 15 minutes on a shared 2-core machine (about
6 minutes when it is quiet). ``--only NAME ...`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402

Doc = dict[str, Any]
Fig = dict[str, Any]


def fig(
    name: str,
    value: Any,
    unit: str = "",
    baseline: str | None = None,
    baseline_value: Any = None,
    ratio: Any = None,
    *,
    ratio_is: str = "figure / baseline",
    goal: str | None = None,
    met: bool | None = None,
) -> Fig:
    """One figure in the document's shape; ``ratio`` is computed when not given."""
    if ratio is None and _num(value) and _num(baseline_value) and baseline_value:
        ratio = round(float(value) / float(baseline_value), 3)
        ratio_is = "figure / baseline"
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "ratio_is": ratio_is,
        "goal": goal,
        "met": met,
    }


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# -- extracting figures from each script's JSON ------------------------------------------


def generic(doc: Doc) -> list[Fig]:
    """Every dict (at any depth) holding ``value`` and ``baseline_value`` is a figure;
    its ``name`` (or its key path) names it."""
    out: list[Fig] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "value" in node and "baseline_value" in node:
                base = node.get("baseline")
                out.append(
                    fig(
                        str(node.get("name") or path),
                        node["value"],
                        str(node.get("unit", "")),
                        base if isinstance(base, str) else None,
                        node["baseline_value"],
                        node.get("ratio"),
                        goal=node.get("goal"),
                        met=node.get("met", node.get("meets_goal")),
                    )
                )
                return
            for k, v in node.items():
                if k not in ("machine", "raw"):
                    walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(doc, "")
    return out


def gateway_pipeline(doc: Doc) -> list[Fig]:
    goal = doc.get("goal_ratio", 0.25)
    return [
        fig("pipeline_readings_per_s", doc["pipeline_readings_per_s"], "readings/s",
            doc.get("baseline"), doc["baseline_rows_per_s"], doc["ratio"],
            goal=f"ratio >= {goal}", met=doc.get("meets_goal")),
        fig("pipeline_readings_per_cpu_s", doc.get("pipeline_readings_per_cpu_s"),
            "readings/cpu-s", "the same baseline per CPU second",
            doc.get("baseline_rows_per_cpu_s"), doc.get("cpu_ratio"),
            goal=f"ratio >= {goal}", met=doc.get("meets_goal_cpu")),
    ]  # fmt: skip


def backlog_drain(doc: Doc) -> list[Fig]:
    n = doc["readings"]
    full = 4_320_000
    goal_s = doc.get("goal_drain_s", 180.0)
    if n >= full:
        goal, met = f"< {goal_s:g} s for 4.32 M", doc["drain_s"] < goal_s
    else:  # a smaller backlog: the same rate the goal asks of the full one
        need = full / goal_s
        goal = f">= {need:,.0f} readings/s (4.32 M in {goal_s:g} s)"
        met = doc["drain_readings_per_s"] >= need
    return [
        fig(f"drain_s ({n:,} readings)", doc["drain_s"], "s", doc.get("baseline"),
            doc["baseline_s"], doc["ratio"], ratio_is="baseline / figure", goal=goal, met=met),
        fig("drain_readings_per_s", doc["drain_readings_per_s"], "readings/s", goal=goal,
            met=met),
        fig("steady_rss_mb", doc["steady_rss_mb"], "MB",
            goal=f"< {doc.get('goal_steady_rss_mb', 60):g} MB", met=doc.get("meets_rss_goal")),
    ]  # fmt: skip


def ingest(doc: Doc) -> list[Fig]:
    goal = doc.get("goal", {})
    r_goal, n_goal = goal.get("ratio_to_raw", 0.5), goal.get("readings_per_s", 100_000)
    out = []
    for r in doc.get("runs", []):
        if "readings_per_s" not in r:  # a back end that was skipped, said so
            continue
        label = f"{r['backend']}, packs of {r['pack_readings']}"
        out.append(
            fig(f"readings_per_s ({label})", r["readings_per_s"], "readings/s",
                "plain paho subscriber, no decoding or storing", r["baseline_raw_per_s"],
                r.get("ratio"), goal=f"ratio >= {r_goal:g} and >= {n_goal:,} readings/s",
                met=r.get("meets_goal"))
        )  # fmt: skip
        out.append(
            fig(f"readings_per_s vs json.loads ({label})", r["readings_per_s"], "readings/s",
                "json.loads alone over the same payloads", r["baseline_json_loads_per_s"],
                r.get("ratio_to_json_loads"))
        )  # fmt: skip
        lat = (r.get("latency") or {}).get("reading_to_commit_ms")
        if lat:
            out.append(fig(f"reading_to_commit_p99 ({label})", lat["p99"], "ms"))
    return out


def inversion_speed(doc: Doc) -> list[Fig]:
    target = doc.get("target_seconds", 1.0)
    return [
        fig("seconds_hourly_run", doc["seconds_hourly_run"], "s",
            "the same window with an empty block cache", doc["baseline_seconds_cold_run"],
            doc.get("ratio_baseline_over_figure"), ratio_is="baseline / figure",
            goal=f"~{target:g} s", met=doc["seconds_hourly_run"] <= target),
        fig("seconds_hourly_run_with_inventory", doc.get("seconds_hourly_run_with_inventory"),
            "s"),
    ]  # fmt: skip


def inversion_twins(doc: Doc) -> list[Fig]:
    sc = doc.get("scenarios", {})
    targets = doc.get("targets", {})
    out = []
    for name, s in sc.items():
        if "within_100m" not in s:
            out.append(fig(f"{name}: false sources per twin", s.get("false_sources_per_twin"),
                           "per twin"))  # fmt: skip
            continue
        if name == "single":
            t = targets.get("single", {}).get("within_100m", 0.8)
            out.append(
                fig("single: share within 100 m", s["within_100m"], "share",
                    "highest-reading stations, within 100 m", s["baseline_within_100m"],
                    goal=f">= {t:g}", met=s["within_100m"] >= t)
            )  # fmt: skip
        t250 = (
            targets.get("model_error_*", {}).get("within_250m")
            if name.startswith("model_error")
            else targets.get(name, {}).get("within_250m")
        )
        out.append(
            fig(f"{name}: share within 250 m", s["within_250m"], "share",
                "highest-reading stations, within 250 m", s["baseline_within_250m"],
                s.get("ratio_within_250m_vs_baseline"),
                goal=None if t250 is None else f">= {t250:g}",
                met=None if t250 is None else s["within_250m"] >= t250)
        )  # fmt: skip
    return out


def inversion_oracle(doc: Doc) -> list[Fig]:
    """The scan against what the truth's position holds, twin by twin."""
    twins = doc.get("twins") or []
    if not twins:
        return []
    n = len(twins)
    hits = sum(1 for t in twins if t.get("hit"))
    clear = sum(1 for t in twins if _num(t.get("cell")) and t["cell"] >= t["threshold"])
    return [
        fig("share within 250 m", round(hits / n, 3), "share",
            "share whose true cell's statistic clears the threshold", round(clear / n, 3)),
    ]  # fmt: skip


def map_snapshot(doc: Doc) -> list[Fig]:
    return [
        fig("snapshot_s", doc["snapshot_s"], "s", "GET /api/v1/stations",
            doc["baseline_stations_s"], doc.get("ratio_snapshot_to_baseline")),
        fig("inversion_hour_s", doc["inversion_hour_s"], "s", "GET /api/v1/stations",
            doc["baseline_stations_s"]),
    ]  # fmt: skip


def prairie_grass(doc: Doc) -> list[Fig]:
    m, b = doc["model"], doc["baseline_all_class_D"]
    return [
        fig("FAC2 (arc maxima)", m["fac2"], "share", "the same plume, every run class D",
            b["fac2"], doc.get("fac2_ratio_vs_baseline"), goal=">= 0.5",
            met=m["fac2"] >= 0.5),
        fig("abs(FB)", abs(m["fb"]), "", "class D", abs(b["fb"]), goal="<= 0.3",
            met=abs(m["fb"]) <= 0.3),
        fig("NMSE", m["nmse"], "", "class D", b["nmse"], goal="<= 1.5", met=m["nmse"] <= 1.5),
    ]  # fmt: skip


def gateway_bus(doc: Doc) -> list[Fig]:
    out = generic(doc)
    for f in out:
        if f["name"] in ("dead_unit_extra_s", "backed_off_cycle_s") and _num(f["ratio"]):
            f["goal"], f["met"] = "ratio <= 1.25", f["ratio"] <= 1.25
    return out


def e2e_latency(doc: Doc) -> list[Fig]:
    limits = {"read_to_stored_p50": 100, "read_to_stored_p95": 250, "read_to_stored_p99": 500,
              "read_to_stored_default_config_p95": 1500, "source_to_acked_order_p50": 500,
              "source_to_acked_order_p99": 1000}  # fmt: skip
    out = generic(doc)
    for f in out:
        if f["name"] in limits and _num(f["value"]):
            f["goal"], f["met"] = f"< {limits[f['name']]} ms", f["value"] < limits[f["name"]]
    return out


# -- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...] = ()
    extract: Callable[[Doc], list[Fig]] = generic
    timeout_s: float = 600.0
    script: str | None = None  # default: bench/<name>.py
    command: tuple[str, ...] | None = field(default=None, compare=False)

    def argv(self) -> list[str]:
        if self.command is not None:
            return list(self.command)
        return [sys.executable, str(HERE / (self.script or f"{self.name}.py")), *self.args]


PLAN: tuple[Bench, ...] = (
    Bench("bench_codecs"),
    Bench("prairie_grass", extract=prairie_grass),
    Bench("gateway_bus", extract=gateway_bus),
    Bench("bench_alerts"),
    Bench("gateway_pipeline", ("--readings", "100000", "--repeat", "3"), gateway_pipeline),
    Bench("backlog_drain", ("--steady-s", "10"), backlog_drain),  # the full 4.32 M
    Bench("ingest", ("--readings", "100000", "--latency-seconds", "3"), ingest),
    Bench("inversion_speed", (), inversion_speed),
    Bench("inversion_twins", ("--twins", "8"), inversion_twins),
    Bench("inversion_oracle", ("--twins", "8"), inversion_oracle),
    Bench("map_snapshot", ("--repeat", "5"), map_snapshot),
    Bench("bench_sim", ("--stations", "30", "--seconds", "5")),
    Bench("e2e_latency", ("--seconds", "15", "--orders", "30", "--roundtrips", "200"),
          e2e_latency),
)  # fmt: skip


# -- running and assembling -------------------------------------------------------------


def parse_output(stdout: str) -> Doc:
    """The script's JSON: the whole of stdout, else its last top-level object."""
    text = stdout.strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        start = text.rfind("\n{")
        doc = json.loads(text[start + 1 :] if start >= 0 else text[text.index("{") :])
    if not isinstance(doc, dict):
        raise ValueError("the bench printed JSON that is not an object")
    return doc


def entry(bench: Bench, code: int, stdout: str, stderr: str, seconds: float) -> Doc:
    """One bench's entry: its figures normalised, or what went wrong."""
    base: Doc = {"bench": bench.name, "command": bench.argv(), "exit_code": code,
                 "seconds": round(seconds, 1)}  # fmt: skip
    tail = "\n".join(stderr.strip().splitlines()[-12:])
    if code != 0:
        return {**base, "error": tail or f"exit status {code}"}
    try:
        doc = parse_output(stdout)
    except (ValueError, json.JSONDecodeError) as exc:
        return {**base, "exit_code": code or 1, "error": f"no JSON on stdout: {exc}"}
    if "skipped" in doc:  # the bench cannot run here (missing data) and said why
        return {**base, "skipped": str(doc["skipped"])}
    try:
        figures = bench.extract(doc)
    except (KeyError, TypeError, ValueError) as exc:
        figures, problem = generic(doc), f"could not read the figures: {exc!r}"
    else:
        problem = None
    if not figures:
        return {**base, "exit_code": 1, "error": problem or "no figure with a baseline found",
                "raw": doc}  # fmt: skip
    head = next((f for f in figures if f["baseline_value"] is not None), figures[0])
    out = {
        **base,
        "figure": {"name": head["name"], "value": head["value"], "unit": head["unit"]},
        "baseline": {"name": head["baseline"], "value": head["baseline_value"],
                     "unit": head["unit"]},
        "ratio": head["ratio"],
        "ratio_is": head["ratio_is"],
        "goal": head["goal"],
        "met": head["met"],
        "figures": figures,
        "machine": _machine(doc.get("machine")),
        "raw": doc,
    }  # fmt: skip
    if problem:
        out["warning"] = problem
    return out


def _machine(given: Any) -> Doc:
    """The bench's own machine record (scripts differ a little), else this one's."""
    m = dict(given) if isinstance(given, dict) else machine()
    if "cores" not in m and "cpus" in m:
        m["cores"] = m["cpus"]
    return m


def run_one(bench: Bench) -> Doc:
    t0 = time.monotonic()
    try:
        p = subprocess.run(bench.argv(), capture_output=True, text=True, cwd=ROOT,
                           timeout=bench.timeout_s, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return {"bench": bench.name, "command": bench.argv(), "exit_code": -9,
                "seconds": round(time.monotonic() - t0, 1),
                "error": f"timed out after {bench.timeout_s:g} s\n{err[-2000:]}"}  # fmt: skip
    return entry(bench, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def run(plan: Sequence[Bench], out: Path | None, *, log: Callable[[str], None]) -> Doc:
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = []
    for bench in plan:
        log(f"run_all: {bench.name} ...")
        e = run_one(bench)
        state = ("ok" if "error" not in e else f"FAILED (exit {e['exit_code']})") if (
            "skipped" not in e) else f"skipped: {e['skipped']}"
        log(f"run_all: {bench.name} {state} in {e['seconds']:.1f} s")
        entries.append(e)
    doc = {
        "started": started,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "ok": all("error" not in e for e in entries),
        "failed": [e["bench"] for e in entries if "error" in e],
        "skipped": [e["bench"] for e in entries if "skipped" in e],
        "machine": machine(),
        "benches": entries,
    }
    if out is not None:
        out.write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
    return doc


def table(doc: Doc) -> str:
    """A Markdown table of every figure: bench, figure, baseline, ratio, goal, met."""

    def val(v: Any, unit: str = "") -> str:
        if v is None:
            return "—"
        s = (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}") if _num(v) else str(v)
        return f"{s} {unit}".strip()

    rows = ["| bench | figure | baseline (same run) | ratio | goal | met? |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for e in doc["benches"]:
        if "error" in e:
            err = e["error"].splitlines()[-1] if e["error"] else ""
            rows.append(f"| {e['bench']} | FAILED (exit {e['exit_code']}): {err} | | | | |")
            continue
        if "skipped" in e:
            rows.append(f"| {e['bench']} | skipped: {e['skipped']} | | | | |")
            continue
        for f in e["figures"]:
            base = (
                "—"
                if f["baseline"] is None and f["baseline_value"] is None
                else (f"{val(f['baseline_value'], f['unit'])} ({f['baseline'] or 'baseline'})")
            )
            ratio = "—" if f["ratio"] is None else f"{val(f['ratio'])}"
            met = {True: "yes", False: "**no**", None: "—"}[f["met"]]
            cells = [e["bench"], f"{f['name']}: {val(f['value'], f['unit'])}", base, ratio,
                     f["goal"] or "—", met]  # fmt: skip
            rows.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run_all", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results.json"),
                    help="write the document here (default bench-results.json)")  # fmt: skip
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benches")
    ap.add_argument("--list", action="store_true", help="list the benches and their sizes")
    ap.add_argument("--table", action="store_true", help="also print a Markdown table (stderr)")
    ap.add_argument("--from", dest="given", type=Path, metavar="JSON",
                    help="run nothing: print the table of a document written before")  # fmt: skip
    args = ap.parse_args(argv)
    plan = list(PLAN)
    if args.given is not None:
        print(table(json.loads(args.given.read_text(encoding="utf-8"))))
        return 0
    if args.list:
        for b in plan:
            print(" ".join([b.name, *b.args]))
        return 0
    if args.only:
        known = {b.name for b in plan}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(f"run_all: unknown bench {', '.join(unknown)}; one of {', '.join(sorted(known))}",
                  file=sys.stderr)  # fmt: skip
            return 2
        plan = [b for b in plan if b.name in args.only]
    doc = run(plan, args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    json.dump(doc, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
    if args.table:
        print(table(doc), file=sys.stderr)
    print(
        f"run_all: {len(plan)} benches in {doc['wall_seconds']:.0f} s; wrote {args.out}"
        + ("" if doc["ok"] else f"; FAILED: {', '.join(doc['failed'])}"),
        file=sys.stderr,
    )
    return 0 if doc["ok"] else 1
