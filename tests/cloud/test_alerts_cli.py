"""``airtrace cloud alerts ...`` and ``airtrace cloud events ...`` through the real command
line, on a store an event was opened in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud.alert_types import Alert, fingerprint
from cloud.events import Workflow
from cloud.events_store import EventsDb
from cloud.places import Places
from cloud.store import open_store
from tests.cloud.alerting import world
from tests.cloud.test_alerts_rules import readme_rules


def cloud_toml(tmp_path: Path) -> tuple[Path, Path]:
    """The README's rule file and a cloud.toml with alerts on and ingest off."""
    rules = readme_rules(tmp_path)
    conf = tmp_path / "cloud.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/c.db"\n[ingest]\nenabled = false\n'
        f'[alerts]\nenabled = true\nrules = "{rules.name}"\n'
    )
    return rules, conf


def pm10_alert() -> Alert:
    labels = {"alertname": "site-pm10-5min", "site": "SITE-1", "cell": "g0_0"}
    return Alert(
        fingerprint(labels),
        "site-pm10-5min",
        "threshold",
        {**labels, "level": "orange"},
        "orange",
        annotations={"summary": "PM10 high"},
    )


@pytest.mark.slow
def test_a_person_walks_an_event_from_the_command_line(tmp_path: Path, cli: object) -> None:
    run: Any = cli
    _, conf = cloud_toml(tmp_path)
    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        world(store)
        a = pm10_alert()
        flow = Workflow(EventsDb(store), assignee=Places(store, None).assignee)
        ev = flow.on_alert(a, (500.0, 500.0))
        assert ev is not None
    c = ["-c", str(conf)]
    wang = run(
        "cloud", "alerts", "user", "add", *c, "Wang", "--role", "officer", "--site", "SITE-1"
    ).stdout.strip()
    li = run(
        "cloud", "alerts", "user", "add", *c, "Li", "--role", "officer", "--site", "SITE-2"
    ).stdout.strip()
    assert wang.startswith("at_") and wang != li
    listed = run("cloud", "events", "list", *c, "--token", wang, "--json")
    assert [json.loads(x)["id"] for x in listed.stdout.splitlines()] == [ev.id]
    refused = run("cloud", "events", "acknowledge", *c, ev.id, "--token", li)
    assert refused.code == 1 and "Li (officer) may not acknowledge" in refused.stderr
    for args in (
        ("acknowledge", ev.id, "--token", wang),
        ("rectify", ev.id, "--token", wang, "--note", "spoil heap covered"),
    ):
        r = run("cloud", "events", *args[:1], *c, *args[1:])
        assert r.code == 0, r.stderr
    bad = run("cloud", "events", "verify", *c, ev.id, "--fail")
    assert bad.code == 2 and "needs a note" in bad.stderr
    ok = run("cloud", "events", "verify", *c, ev.id, "--pass", "--as", "desk-zhang")
    assert ok.code == 0 and f"{ev.id} closed" in ok.stdout
    shown = json.loads(run("cloud", "events", "show", *c, ev.id, "--json").stdout)
    trail = [(e["actor"], e["action"]) for e in shown["log"]]
    assert trail[-3:] == [("Wang", "acknowledge"), ("Wang", "rectify"), ("desk-zhang", "verify")]
    assert ("Li", "denied") in trail
    s = run(
        "cloud",
        "alerts",
        "silence",
        "add",
        *c,
        "--match",
        'station="MICRO-1"',
        "--duration",
        "2h",
        "--comment",
        "filter change",
    ).stdout.split()[0]
    listed = run("cloud", "alerts", "silence", "list", *c, "--json").stdout
    assert json.loads(listed.splitlines()[0])["id"] == s


def test_the_commands_keep_the_services_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``AIRTRACE_CLOCK`` (the demo's, the end-to-end test's accelerated time) the
    event and silence commands stamp what they do on the service's clock, not the host's:
    a rectification stamped in the host's time would lie hours or years after the
    service's inversion hours and never be verified."""
    import time

    from cloud.cli_alerts import Session

    rules = readme_rules(tmp_path)
    conf = tmp_path / "cloud.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/c.db"\n[ingest]\nenabled = false\n'
        f'[alerts]\nenabled = true\nrules = "{rules.name}"\n'
    )
    start = 1_748_822_400.0  # 2025-06-02
    monkeypatch.setenv("AIRTRACE_CLOCK", f"{start}@600@{time.time()}")
    s = Session(conf)
    try:
        assert start <= s.workflow.clock() < start + 600 * 600
    finally:
        s.close()


def test_a_dispatch_from_the_command_line_sends_the_work_order(tmp_path: Path, cli: object) -> None:
    """``cloud events dispatch`` queues the work order for ``[events] notify`` in the store's
    outbox, as a dispatch through the API does, and the running service delivers it."""
    from cloud.alert_rules import load_rules
    from cloud.alerts import AlertEngine
    from cloud.events import EventsConfig
    from tests.cloud.alerting import WebhookServer

    run: Any = cli
    rules, conf = cloud_toml(tmp_path)
    hook = WebhookServer("persons-secret").start()
    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        world(store, officer_hook=hook.url("/wang"))  # Wang: SITE-1's officer
        a = pm10_alert()
        flow = Workflow(EventsDb(store), EventsConfig(auto_dispatch=False))
        ev = flow.on_alert(a, (500.0, 500.0))
        assert ev is not None and ev.state == "filed"
    try:
        c = ["-c", str(conf)]
        r = run("cloud", "events", "dispatch", *c, ev.id, "--to", "Wang", "--note", "cover it")
        assert r.code == 0 and f"{ev.id} dispatched -> Wang" in r.stdout, r.stderr
        queued = [
            json.loads(x)
            for x in run("cloud", "alerts", "outbox", *c, "--json").stdout.splitlines()
        ]
        assert [(n["receiver"], n["status"]) for n in queued] == [("assignee", "pending")]
        assert hook.bodies() == []  # the command line queues; it does not deliver
        with open_store(f"sqlite:///{tmp_path}/c.db") as store:
            engine = AlertEngine(store, load_rules(rules))
            try:
                engine.tick()
            finally:
                engine.close()
        (body,) = hook.bodies("/wang")
        assert (body["kind"], body["action"], body["by"]) == (
            "event",
            "dispatch",
            "cli:" + __import__("getpass").getuser(),
        )
        assert body["event"]["id"] == ev.id and body["common_labels"]["assignee"] == "Wang"
        assert hook.received[0].signed
    finally:
        hook.stop()
