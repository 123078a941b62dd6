"""``airtrace demo``: the whole system on embedded defaults, accelerated, with a summary and
a report folder. The run lives in ``airtrace.demo.run``, the counting in ``tally``, the
report in ``report``; this module is the command and its screen."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from protocols.errors import InputError

__all__ = ["demo"]


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("airtrace-demo"), show_default=True,
              help="The report folder (summary.json, maps/, index.html; work/ keeps the "
                   "configs, databases and logs of the run).")
@click.option("--minutes", type=float, default=5.0, show_default=True,
              help="Real minutes the simulated day takes.")
@click.option("--hours", type=click.IntRange(2, 72), default=24, show_default=True,
              help="Simulated hours.")
@click.option("--stations", type=click.IntRange(20, 100), default=40, show_default=True,
              help="Stations in the district.")
@click.option("--seed", type=int, default=7, show_default=True, help="The district's seed.")
@click.option("--sources", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Hidden emitting sites (1 or 2).")
@click.option("--mqtt", "mqtt_url", metavar="URL", default=None,
              help="Use this MQTT broker (e.g. mqtt://127.0.0.1:1883, MQTT 5) instead of the "
                   "embedded one.")
@click.option("--chaos", is_flag=True,
              help="Kill (SIGKILL) and restart a gateway process and the central service "
                   "during the run; the summary shows nothing was lost.")
def demo(out: Path, minutes: float, hours: int, stations: int, seed: int, sources: int,
         mqtt_url: str | None, chaos: bool) -> None:
    """Run a simulated district end to end: devices on real transports (Modbus TCP, RTU on
    pty lines, PMS5003/SDS011, HJ 212), gateways, an MQTT broker, the central service, the
    hourly inversion and the alerts, in accelerated time; then a summary and a report."""
    from airtrace.demo.run import run_demo
    from airtrace.demo.scene import DemoOptions

    if not 0.5 <= minutes <= 600:
        raise InputError(f"--minutes {minutes:g}: give 0.5 to 600")
    if mqtt_url is not None and not mqtt_url.startswith(("mqtt://", "mqtts://")):
        raise InputError(f"--mqtt {mqtt_url!r}: expected mqtt://HOST:PORT")
    opts = DemoOptions(out=out, minutes=minutes, hours=hours, stations=stations, seed=seed,
                       sources=sources, mqtt=mqtt_url, chaos=chaos)
    out.mkdir(parents=True, exist_ok=True)
    screen = Screen(opts)
    _log_to(out / "demo.log")
    signal.signal(signal.SIGTERM, _interrupt)  # stop in order on SIGTERM too
    with screen:
        d, summary = run_demo(opts, on_progress=screen.update)
    from airtrace.demo.report import write_report

    write_report(d, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for line in summary_lines(summary, out):
        click.echo(line)
    if summary["interrupted"]:
        click.echo("  (interrupted: the summary counts the run so far)")
        raise click.exceptions.Exit(130)
    if summary["lost"] or summary["doubled"] or summary["stored_not_from_these_outboxes"]:
        raise click.exceptions.Exit(1)


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _log_to(path: Path) -> None:
    """The screen is the progress display: this process's log lines go to a file."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class Screen:
    """A rich live panel on a terminal; a line every few seconds otherwise."""

    def __init__(self, opts: Any) -> None:
        self.opts = opts
        self.tty = sys.stdout.isatty()
        self._live: Any = None
        self._last = 0.0
        self._said = 0

    def __enter__(self) -> Screen:
        if self.tty:
            from rich.live import Live

            self._live = Live(auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, p: Any) -> None:
        now = time.monotonic()
        if self._live is not None:
            if now - self._last >= 0.25:
                self._last = now
                self._live.update(self._panel(p), refresh=True)
            return
        new = min(len(p.log), p.said - self._said)
        for line in p.log[len(p.log) - new :] if new > 0 else ():
            click.echo(f"  {line}")
        self._said = p.said
        if now - self._last >= 5.0:
            self._last = now
            click.echo(f"  {_clock(p)}  {p.phase:9}  produced {p.produced:,}  stored "
                       f"{p.stored:,}  backlog {p.backlog:,}  hours inverted "
                       f"{p.hours_inverted}  alerts {p.alerts}  events {p.events}")

    def _panel(self, p: Any) -> Any:
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        span = max(1.0, p.sim_end - p.sim_start)
        done = min(span, max(0.0, p.sim_now - p.sim_start))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("simulated time", f"{_clock(p)}   ({p.phase})")
        grid.add_row("", ProgressBar(total=span, completed=done, width=50))
        grid.add_row("readings", f"{p.produced:,} produced by the gateways, {p.stored:,} stored "
                                 f"centrally, {p.backlog:,} in outboxes")
        grid.add_row("inversion", f"{p.hours_inverted} hours located")
        grid.add_row("alerts", f"{p.alerts} alerts, {p.events} events, {p.orders_acked} orders "
                               f"acked by gateways, {p.notifications} signed webhooks received")
        for line in p.log[-6:]:
            grid.add_row("", f"[dim]{line}[/dim]")
        return Panel(grid, title="airtrace demo", border_style="cyan")


def _clock(p: Any) -> str:
    from protocols.timefmt import to_iso

    if not p.sim_now:
        return "--"
    return to_iso(p.sim_now)[:16].replace("T", " ") + "Z"


def summary_lines(s: dict[str, Any], out: Path) -> list[str]:
    chaos = f", chaos: killed and restarted {' and '.join(s['chaos'])}" if s["chaos"] else ""
    lines = [
        "",
        f"airtrace demo: {s['stations']} stations, {s['hours']} simulated hours in "
        f"{s['wall_s']:.0f} s (seed {s['seed']}{chaos})",
        f"  readings   produced {s['readings_produced']:,}   stored {s['readings_stored']:,}   "
        f"lost {s['lost']}   doubled {s['doubled']}"
        + (f"   (held in outboxes {s['held_in_outboxes']})" if s["held_in_outboxes"] else ""),
        f"  inversion  {s['hours_inverted']} hours",
    ]
    for src in s["sources"]:
        where = src["site"] or "an unregistered spot"
        if src["hours_inverted"] == 0:
            lines.append(f"  source     {src['kind']} at {where}: no hour with its whole "
                         "inversion window inside the run (give more --hours)")
        elif src["found_x_m"] is None:
            lines.append(f"  source     {src['kind']} at {where} ({src['true_x_m']:.0f}, "
                         f"{src['true_y_m']:.0f}) m: not found")
        else:
            ratio = "?" if src["rate_ratio"] is None else f"{src['rate_ratio']:.2f}"
            lines.append(
                f"  source     {src['kind']} at {where}: true ({src['true_x_m']:.0f}, "
                f"{src['true_y_m']:.0f}) m, found ({src['found_x_m']:.0f}, "
                f"{src['found_y_m']:.0f}) m, {src['distance_m']:.0f} m off, rate found/true "
                f"{ratio} ({src['hours_found']}/{src['hours_inverted']} hours)")
    levels: dict[str, int] = {}
    for a in s["alerts"]:
        levels[f"{a['rule']} {a['level']} {a['state']}"] = levels.get(
            f"{a['rule']} {a['level']} {a['state']}", 0) + 1
    lines.append("  alerts     " + (", ".join(f"{n} x {k}" for k, n in sorted(levels.items()))
                                    or "none"))
    states: dict[str, int] = {}
    for e in s["events"]:
        states[e["state"]] = states.get(e["state"], 0) + 1
    lines.append("  events     " + (", ".join(f"{n} {k}" for k, n in sorted(states.items()))
                                    or "none"))
    orders: dict[str, int] = {}
    for o in s["orders"]:
        orders[f"{o['cmd']} {o['status']}"] = orders.get(f"{o['cmd']} {o['status']}", 0) + 1
    lines.append("  orders     " + (", ".join(f"{n} {k}" for k, n in sorted(orders.items()))
                                    or "none"))
    after = s.get("after_the_run") or {}
    if any(after.values()):
        lines.append("  afterwards " + ", ".join(f"{v} {k}" for k, v in after.items() if v)
                     + " set off once the devices stopped (counted apart)")
    n = s.get("notifications") or {}
    if n:
        lines.append(f"  webhooks   {n.get('received', 0)} signed POSTs received "
                     f"({n.get('to_persons', 0)} to persons), "
                     f"{n.get('bad_signatures', 0)} bad signatures")
    lines.append(f"  report     {out / 'index.html'}  (summary.json, maps/)")
    return lines
