"""``airtrace cloud alerts ...`` and ``airtrace cloud events ...``: the operator's and the
responsible person's commands, on the store the cloud config names.

Whoever runs them acts as the command centre (``--as NAME`` names them in the audit trail),
unless ``--token`` (or ``AIRTRACE_TOKEN``) names a person: then that person's role and
scope are checked exactly as the API checks them.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

config_option = click.option(
    "--config",
    "-c",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CLOUD.toml",
    help="Cloud config file (TOML).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


def actor_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--token",
        envvar="AIRTRACE_TOKEN",
        help="Act as the person this token belongs to (their role is checked).",
    )(f)
    return click.option(
        "--as", "as_name", help="Your name in the audit trail when acting as the centre."
    )(f)


class Session:
    """The store, the workflow and the actor of one command."""

    def __init__(self, config: Path, token: str | None = None, as_name: str | None = None):
        from cloud import auth
        from cloud.alerts_store import Actor, AlertsDb
        from cloud.config import load_config
        from cloud.events import Workflow
        from cloud.events_store import EventsDb
        from cloud.fusion import Fusion
        from cloud.places import Places
        from cloud.store import open_store
        from protocols.errors import InputError
        from protocols.geo import Origin

        self.cfg = load_config(config)
        self.store = open_store(self.cfg.store.url)
        self.db = AlertsDb(self.store)
        rules = self.cfg.parts_raw.get("alerts", {}).get("rules")
        events_cfg = None
        rules_cfg = None
        if isinstance(rules, str):
            from cloud.alert_rules import load_rules

            path = Path(rules) if Path(rules).is_absolute() else config.parent / rules
            rules_cfg = load_rules(path)
            events_cfg = rules_cfg.events
        d = self.cfg.domain
        origin = Origin(d.origin_lat, d.origin_lon) if d.has_origin else None  # type: ignore[arg-type]
        places = Places(self.store, origin)
        fusion = Fusion(self.store, self.cfg.fusion, d)

        def hours(station: str, quantity: str, since: float, until: float) -> list[float]:
            return [
                float(m.value)
                for m in fusion.means(station, quantity, since, until, 3600)
                if m.valid and m.value is not None
            ]

        from cloud.clock import clock_from_env

        clock = clock_from_env()  # the service's time (AIRTRACE_CLOCK), not the host's
        self._deliverer = None
        on_change = None
        if rules_cfg is not None and rules_cfg.events.notify is not None:
            # a dispatch from here queues its work order in the store's outbox, as one
            # through the API does; the running service delivers it
            from cloud.events import notify_change
            from cloud.receivers import Deliverer

            deliverer = self._deliverer = Deliverer(rules_cfg.receivers, self.db, places)
            receiver = rules_cfg.events.notify

            def on_change(ev: Any, action: str, actor: Any) -> None:
                notify_change(deliverer, receiver, ev, action, actor, clock())

        self.workflow = Workflow(
            EventsDb(self.store),
            events_cfg,
            clock=clock,
            assignee=places.assignee,
            nearby=places.near,
            station_hours=hours,
            on_change=on_change,
        )
        if token:
            found = auth.resolve(self.db, token, self.cfg.api.tokens)
            if found is None:
                self.close()
                raise InputError("the token belongs to nobody (or a disabled person)")
            self.actor = found
        else:
            self.actor = Actor(as_name or f"cli:{getpass.getuser()}", "centre")

    def close(self) -> None:
        if self._deliverer is not None:
            self._deliverer.close()
        self.store.close()


@contextmanager
def session(
    config: Path, token: str | None = None, as_name: str | None = None
) -> Iterator[Session]:
    s = Session(config, token, as_name)
    try:
        yield s
    finally:
        s.close()


def _echo(obj: Any, as_json: bool, line: str) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str) if as_json else line)


def _t(ts: float | None) -> str:
    from protocols.timefmt import to_iso

    return "-" if ts is None else to_iso(ts, ms=False)


# --------------------------------------------------------------------------- alerts


@click.group(no_args_is_help=True)
def alerts() -> None:
    """Alerts, silences, the notification outbox, people's tokens, rule files."""


@alerts.command("check")
@click.argument("rules", type=click.Path(dir_okay=False, path_type=Path))
def check(rules: Path) -> None:
    """Check a rule file; print what it holds, or the one-line reason it is wrong."""
    from cloud.alert_rules import load_rules

    cfg = load_rules(rules)
    routes = sum(1 for _ in cfg.route.walk())
    click.echo(
        f"{rules}: {len(cfg.rules)} rules, {routes} routes, {len(cfg.receivers)} receivers, "
        f"{len(cfg.inhibit)} inhibit rules: ok"
    )


@alerts.command("list")
@config_option
@click.option("--state", type=click.Choice(["firing", "resolved"]), help="Only these.")
@actor_options
@json_option
def list_alerts(
    config: Path, state: str | None, token: str | None, as_name: str | None, as_json: bool
) -> None:
    """List the alerts you may see, newest first."""
    from cloud import auth

    with session(config, token, as_name) as s:
        for a in s.db.alerts(state=state):
            if auth.sees_labels(s.actor, a.labels, a.kind):
                summary = a.annotations.get("summary", a.rule)
                _echo(a.to_json(), as_json, f"{a.state:8} {a.level:6} {a.fingerprint} {summary}")


@alerts.group(no_args_is_help=True)
def silence() -> None:
    """Silences: mute alerts for planned maintenance, with an expiry."""


@silence.command("add")
@config_option
@click.option(
    "--match",
    "matchers",
    multiple=True,
    required=True,
    help='A matcher, e.g. station="GX-M-001" (repeatable; all must match).',
)
@click.option("--comment", required=True, help="Why (shown with the silence).")
@click.option("--duration", help="How long, e.g. 2h, 30m, 1d.")
@click.option("--until", "until", help="Until this ISO 8601 time instead.")
@click.option("--starts", help="Start at this ISO 8601 time (default now).")
@actor_options
def silence_add(
    config: Path,
    matchers: tuple[str, ...],
    comment: str,
    duration: str | None,
    until: str | None,
    starts: str | None,
    token: str | None,
    as_name: str | None,
) -> None:
    """Create a silence and print its id."""
    from cloud.api_events import silence_from

    with session(config, token, as_name) as s:
        got = silence_from(
            s.db, s.actor, s.workflow.clock(), list(matchers), comment, starts, until, duration
        )
        click.echo(f"{got['id']} {got['state']} until {_t(got['ends_at'])}")


@silence.command("list")
@config_option
@json_option
def silence_list(config: Path, as_json: bool) -> None:
    """List silences (pending, active, expired), newest first."""
    with session(config) as s:
        now = s.workflow.clock()
        for sl in s.db.silences():
            j = sl.to_json(now)
            _echo(
                j,
                as_json,
                f"{sl.id} {j['state']:8} {_t(sl.starts_at)}..{_t(sl.ends_at)} "
                f"{' '.join(j['matchers'])} ({sl.created_by}: {sl.comment})",
            )


@silence.command("expire")
@config_option
@click.argument("silence_id")
@actor_options
def silence_expire(config: Path, silence_id: str, token: str | None, as_name: str | None) -> None:
    """End a silence now."""
    from cloud import auth
    from cloud.store import NotFound

    with session(config, token, as_name) as s:
        sl = s.db.get_silence(silence_id)
        if sl is None:
            raise NotFound(f"no silence {silence_id!r}")
        auth.check_silence(s.actor, sl.matchers)
        s.db.expire_silence(silence_id, s.workflow.clock())
        click.echo(f"{silence_id} expired")


@alerts.command("outbox")
@config_option
@click.option(
    "--status",
    type=click.Choice(["pending", "sent", "failed", "escalated"]),
    help="Only notifications in this state.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="How many, newest first.")
@json_option
def outbox(config: Path, status: str | None, limit: int, as_json: bool) -> None:
    """Show the notification outbox: what went where, retries, escalations."""
    with session(config) as s:
        for n in s.db.notifications(status, limit):
            target = n["payload"]["target"]
            where = target.get("url") or target.get("station") or "-"
            _echo(
                n,
                as_json,
                f"{n['id']} {n['status']:9} {n['receiver']} -> {where} "
                f"attempts {n['attempts']} {n['last_error'] or ''}",
            )


@alerts.group(no_args_is_help=True)
def user() -> None:
    """People who act through the API: roles, scopes and their tokens."""


@user.command("add")
@config_option
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["centre", "inspector", "officer", "maintainer"]),
    help="What they may do.",
)
@click.option("--site", help="The site an officer answers for.")
@click.option("--cell", "cells", multiple=True, help="A grid cell or area id (repeatable).")
@click.option("--webhook", help="Where their notifications go (person receivers).")
def user_add(
    config: Path,
    name: str,
    role: str,
    site: str | None,
    cells: tuple[str, ...],
    webhook: str | None,
) -> None:
    """Create a person (or replace their entry) and print a new token, shown only once."""
    import time

    from cloud import auth
    from cloud.alerts_store import Actor

    with session(config) as s:
        token = auth.add_actor(s.db, Actor(name, role, site, tuple(cells), webhook), time.time())
        click.echo(token)


@user.command("list")
@config_option
@json_option
def user_list(config: Path, as_json: bool) -> None:
    """List people, their roles and scopes (never their tokens)."""
    with session(config) as s:
        for a in s.db.actors():
            _echo(
                a.to_json(),
                as_json,
                f"{a.name:20} {a.role:10} site={a.site or '-'} cells={','.join(a.cells) or '-'}",
            )


# --------------------------------------------------------------------------- events


@click.group(no_args_is_help=True)
def events() -> None:
    """Events: list, show, acknowledge, report progress, rectify, verify, close."""


@events.command("list")
@config_option
@click.option("--state", "states", multiple=True, help="Only events in this state (repeatable).")
@click.option("--site", help="Only this site's events.")
@actor_options
@json_option
def list_events(
    config: Path,
    states: tuple[str, ...],
    site: str | None,
    token: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """List the events you may see, newest first."""
    from cloud import auth

    with session(config, token, as_name) as s:
        for ev in s.workflow.db.events(states=states or None, site=site):
            if auth.sees(s.actor, ev):
                esc = f" escalated x{ev.escalation}" if ev.escalation else ""
                _echo(
                    ev.to_json(),
                    as_json,
                    f"{ev.id} {ev.state:12} {ev.level:6} {ev.assignee or '-':12} {ev.title}{esc}",
                )


@events.command("show")
@config_option
@click.argument("event_id")
@actor_options
@json_option
def show(
    config: Path, event_id: str, token: str | None, as_name: str | None, as_json: bool
) -> None:
    """Show an event: its state, deadlines, audit trail, orders and evidence."""
    from cloud import auth
    from cloud.api_events import event_view

    with session(config, token, as_name) as s:
        ev = s.workflow.get(event_id)
        auth.check(s.actor, "view", ev)
        view = event_view(s.workflow, ev, s.workflow.clock())
        if as_json:
            click.echo(json.dumps(view, ensure_ascii=False, default=str))
            return
        click.echo(f"{ev.id} {ev.state} {ev.level} {ev.title}")
        click.echo(
            f"  key {ev.key}  assignee {ev.assignee or '-'}  rework {ev.rework}  "
            f"escalation {ev.escalation}"
        )
        click.echo(f"  ack due {_t(ev.ack_due)}  rectify due {_t(ev.rectify_due)}")
        for e in view["log"]:
            click.echo(
                f"  {_t(e['ts'])} {e['actor']:12} {e['action']:14} "
                f"{e['from_state'] or ''}->{e['to_state'] or ''} {json.dumps(e['detail'])}"
            )
        for o in view["orders"]:
            click.echo(f"  order {o['purpose']} {o['cmd']} -> {o['station']}: {o['status']}")
        evd = view["evidence"]
        click.echo(
            f"  evidence: {evd['verdict']} before {_rate(evd['before'])} "
            f"after {_rate(evd['after'])}"
        )


def _rate(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['rate_g_s']:.3f} +- {summary['sigma_g_s']:.3f} g/s ({summary['hours']} h)"


def _act(action: str, helptext: str, *, note: bool = False) -> None:
    @events.command(action, help=helptext)
    @config_option
    @click.argument("event_id")
    @click.option("--note", required=note, help="What was done, and why.")
    @actor_options
    def command(
        config: Path, event_id: str, note: str | None, token: str | None, as_name: str | None
    ) -> None:
        with session(config, token, as_name) as s:
            ev = s.workflow.act(event_id, action, s.actor, note=note)
            click.echo(f"{ev.id} {ev.state}")


_act("file", "File a new event (the centre confirms it is real).")
_act("acknowledge", "Acknowledge an event dispatched to you.")
_act("progress", "Report progress on an event you are handling.")
_act("rectify", "Submit the rectification: the event goes to verification.", note=True)
_act("close", "Close an event without verification (centre).", note=True)
_act("cancel", "Cancel an invalid event (centre).", note=True)
_act("note", "Add a note to an event's audit trail.", note=True)


@events.command("dispatch")
@config_option
@click.argument("event_id")
@click.option("--to", "assignee", required=True, help="The responsible person's name.")
@click.option("--note", help="Instructions.")
@actor_options
def dispatch(
    config: Path,
    event_id: str,
    assignee: str,
    note: str | None,
    token: str | None,
    as_name: str | None,
) -> None:
    """Dispatch a filed event to a named person (starts its deadlines)."""
    with session(config, token, as_name) as s:
        ev = s.workflow.act(event_id, "dispatch", s.actor, assignee=assignee, note=note)
        click.echo(f"{ev.id} {ev.state} -> {ev.assignee}")


@events.command("verify")
@config_option
@click.argument("event_id")
@click.option("--pass/--fail", "passed", required=True, help="The verification's outcome.")
@click.option("--note", help="Why (needed to fail, or to decide against the evidence).")
@actor_options
def verify(
    config: Path,
    event_id: str,
    passed: bool,
    note: str | None,
    token: str | None,
    as_name: str | None,
) -> None:
    """Verify a rectification against the evidence: pass closes, fail sends it back."""
    with session(config, token, as_name) as s:
        evd = s.workflow.evidence(event_id)
        click.echo(f"evidence: {evd.verdict}")
        ev = s.workflow.act(event_id, "verify", s.actor, passed=passed, note=note)
        click.echo(f"{ev.id} {ev.state}" + (f" (rework {ev.rework})" if ev.rework else ""))


@events.command("merge")
@config_option
@click.argument("event_id")
@click.option("--into", required=True, help="The open event it duplicates.")
@actor_options
def merge(config: Path, event_id: str, into: str, token: str | None, as_name: str | None) -> None:
    """Merge a duplicate event into another (centre)."""
    with session(config, token, as_name) as s:
        ev = s.workflow.act(event_id, "merge", s.actor, into=into)
        click.echo(f"{ev.id} merged into {ev.merged_into}")


__all__ = ["alerts", "events"]
