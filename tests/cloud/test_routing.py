"""The routing tree, grouping timers, inhibition and silences, on a fake clock."""

from __future__ import annotations

import pytest

from cloud.alert_types import RESOLVED, Alert, fingerprint
from cloud.routing import (
    GroupState,
    InhibitRule,
    Matcher,
    Route,
    Router,
    Silence,
    parse_matchers,
    parse_route,
)
from protocols.errors import ConfigError, InputError
from protocols.tomlconf import Table, parse_toml

T = 1_000_000.0


def alert(name: str, level: str = "yellow", **labels: str) -> Alert:
    lab = {"alertname": name, **labels}
    return Alert(
        fingerprint(lab),
        name,
        "threshold",
        {**lab, "level": level},
        level,
        starts_at=T,
        updated_at=T,
    )


def route(text: str) -> Route:
    return parse_route(Table(parse_toml(text, "r.toml")["route"], source="r.toml", section="route"))


TREE = route("""
[route]
receiver = "centre"
group_by = ["site"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "1h"
  [[route.routes]]
  matchers = ['level="red"']
  receiver = "command"
  continue = true
  [[route.routes]]
  matchers = ['kind=~"health|drift"']
  receiver = "maintainers"
  [[route.routes]]
  matchers = ['site!=""']
  receiver = "officer"
    [[route.routes.routes]]
    matchers = ['source_type="traffic"']
    receiver = "traffic-police"
""")


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"site": "S1"}, ["officer"]),
        ({"site": "S1", "level": "red"}, ["command", "officer"]),
        ({"level": "red"}, ["command"]),
        ({"kind": "drift", "site": "S1"}, ["maintainers"]),
        ({"site": "S1", "source_type": "traffic"}, ["traffic-police"]),
        ({"cell": "g1_1"}, ["centre"]),
    ],
)
def test_tree_walk_is_alertmanagers(labels: dict[str, str], receivers: list[str]) -> None:
    assert [r.receiver for r in TREE.match(labels)] == receivers


def test_children_inherit_timers_and_grouping() -> None:
    officer = TREE.routes[2]
    assert (officer.group_by, officer.group_wait, officer.repeat_interval) == (("site",), 30, 3600)


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('site="S1"', {"site": "S1"}, True),
        ('site!="S1"', {}, True),
        ('level=~"red|orange"', {"level": "orange"}, True),
        ('level=~"red|orange"', {"level": "dark-red"}, False),  # whole value
        ('site!~".+"', {}, True),
        ("site=S1", {"site": "S1"}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["site", 'site=="x"', 'level=~"("', "1x=2"])
def test_bad_matchers_say_so(bad: str) -> None:
    with pytest.raises(InputError, match="matcher"):
        Matcher.parse(bad)


def test_root_takes_no_matchers_and_needs_a_receiver() -> None:
    with pytest.raises(ConfigError, match=r"r.toml \[route\] matchers"):
        route('[route]\nreceiver = "x"\nmatchers = [\'a="b"\']\n')
    with pytest.raises(ConfigError, match="repeat_interval"):
        route('[route]\nreceiver = "x"\ngroup_interval = "2h"\nrepeat_interval = "1h"\n')


def test_group_wait_then_interval_then_repeat() -> None:
    router = Router(TREE)
    a1 = alert("pm10", site="S1")
    n, g = router.flush(T, [a1], [], {})
    assert n == [] and next(iter(g.values())).next_flush == T + 30  # waits for fellows
    a2 = alert("pm25", site="S1")
    n, g = router.flush(T + 30, [a1, a2], [], g)
    assert len(n) == 1 and {a.rule for a in n[0].alerts} == {"pm10", "pm25"}
    assert n[0].receiver == "officer" and n[0].group_labels == {"site": "S1"}
    n, g = router.flush(T + 60, [a1, a2], [], g)  # before group_interval: nothing
    assert n == []
    n, g = router.flush(T + 330, [a1, a2], [], g)  # interval, nothing new: nothing
    assert n == []
    louder = alert("pm10", "orange", site="S1")  # the level changed: told at the interval
    n, g = router.flush(T + 630, [louder, a2], [], g)
    assert len(n) == 1 and {a.level for a in n[0].alerts} == {"orange", "yellow"}
    n, g = router.flush(T + 630 + 3600, [louder, a2], [], g)  # repeat_interval
    assert len(n) == 1


def test_resolved_alerts_are_told_once_and_end_the_group() -> None:
    router = Router(TREE)
    a = alert("pm10", site="S1")
    _, g = router.flush(T, [a], [], {})
    n, g = router.flush(T + 30, [a], [], g)
    assert n[0].status == "firing"
    done = Alert(a.fingerprint, a.rule, a.kind, a.labels, a.level, RESOLVED, ends_at=T + 100)
    n, g = router.flush(T + 330, [done], [], g)
    assert n[0].status == "resolved" and g == {}
    n, g = router.flush(T + 630, [done], [], g)
    assert n == []


def test_a_group_resolved_before_it_spoke_says_nothing() -> None:
    router = Router(TREE)
    a = alert("pm10", site="S1")
    _, g = router.flush(T, [a], [], {})
    done = Alert(a.fingerprint, a.rule, a.kind, a.labels, a.level, RESOLVED)
    assert router.flush(T + 30, [done], [], g) == ([], {})


def test_red_on_a_site_inhibits_its_yellow_not_other_sites() -> None:
    rule = InhibitRule(
        parse_matchers(['level="red"']), parse_matchers(['level=~"yellow|blue"']), ("site",)
    )
    router = Router(TREE, [rule])
    red = alert("source", "red", site="S1")
    yellow = alert("pm10", "yellow", site="S1")
    other = alert("pm10", "yellow", site="S2")
    assert router.muted_by(yellow, [red, yellow, other], [], T) == f"inhibited:{red.fingerprint}"
    assert router.muted_by(other, [red, yellow, other], [], T) is None
    assert router.muted_by(red, [red, yellow, other], [], T) is None
    n, g = router.flush(T, [red, yellow, other], [], {})
    n, g = router.flush(T + 30, [red, yellow, other], [], g)
    told = {(x.receiver, a.fingerprint) for x in n for a in x.alerts}
    assert (("officer", yellow.fingerprint)) not in told
    assert ("officer", other.fingerprint) in told and ("command", red.fingerprint) in told


def test_silence_mutes_until_it_expires() -> None:
    router = Router(TREE)
    a = alert("health", kind="health", station="M1")
    s = Silence("s1", parse_matchers(['station="M1"']), T, T + 3600, "maint", "filter change")
    assert s.state(T - 1) == "pending" and s.state(T) == "active" and s.state(T + 3600) == "expired"
    n, g = router.flush(T, [a], [s], {})
    assert g == {}
    n, g = router.flush(T + 3600, [a], [s], g)  # expired: the alert enters a group
    n, g = router.flush(T + 3630, [a], [s], g)
    assert [x.receiver for x in n] == ["maintainers"]


def test_silence_needs_matchers_comment_and_an_end_after_its_start() -> None:
    with pytest.raises(InputError, match="matcher"):
        Silence("s", (), T, T + 1, "me", "why")
    with pytest.raises(InputError, match="end after"):
        Silence("s", parse_matchers(['a="b"']), T, T, "me", "why")
    with pytest.raises(InputError, match="comment"):
        Silence("s", parse_matchers(['a="b"']), T, T + 1, "me", " ")


def test_group_state_survives_as_data() -> None:
    st = GroupState(created=T, next_flush=T + 30, notified_at=T, notified=frozenset({("f", "red")}))
    router = Router(TREE)
    a = alert("pm10", "red", site="S1")
    n, _ = router.flush(T + 30, [a], [], {("root.3", '{site="S1"}'): st})
    assert n  # a new fingerprint in a group that told something else
