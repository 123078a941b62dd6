"""The rule file: the README's example loads and routes as it says; a malformed file fails
at load with the file, the rule and the reason (and ``alerts check`` exits 2 with it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.alert_rules import load_rules, parse_rules
from protocols.errors import ConfigError
from tests.cloud.alerting import readme_rule_file

GOOD_TAIL = """
[route]
receiver = "log"
[[receiver]]
name = "log"
type = "log"
"""


def readme_rules(tmp_path: Path) -> Path:
    (tmp_path / "centre.secret").write_text("centre-secret\n")
    (tmp_path / "persons.secret").write_text("persons-secret\n")
    path = tmp_path / "alerts.toml"
    path.write_text(readme_rule_file())
    return path


def test_the_readme_rule_file_loads_and_routes_as_documented(tmp_path: Path) -> None:
    cfg = load_rules(readme_rules(tmp_path))
    assert [r.name for r in cfg.rules] == [
        "site-pm10-5min",
        "pm25-hourly",
        "pm25-rising",
        "station-health",
        "located-source",
    ]
    assert cfg.receivers["centre"].secret == "centre-secret"
    site = cfg.rules[0]
    assert site.level_for(149.9) is None and site.level_for(260) == ("orange", 250.0)
    assert site.for_periods == 2 and site.period == 300 and site.orders == ("spray",)

    def to(**labels: str) -> list[str]:
        return [r.receiver for r in cfg.route.match(labels)]

    assert to(alertname="EventEscalated", site="S", level="red") == ["centre"]
    assert to(site="S", level="red") == ["centre", "site-officer"]
    assert to(site="S", level="yellow") == ["site-officer"]
    assert to(kind="health", station="M") == ["maintainers"]
    assert to(cell="g1_2", level="orange") == ["grid-inspector"]
    assert cfg.events.sla["red"] == (1800.0, 4 * 3600.0)
    assert cfg.orders.ack_deadline_s == 120


def test_alerts_check_reads_it_like_the_service(tmp_path: Path, cli: object) -> None:
    path = readme_rules(tmp_path)
    r = cli("cloud", "alerts", "check", str(path))  # type: ignore[operator]
    assert r.code == 0 and "5 rules" in r.stdout
    path.write_text(path.read_text().replace('kind = "rise"', 'kind = "rose"'))
    r = cli("cloud", "alerts", "check", str(path))  # type: ignore[operator]
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "[rule #3 'pm25-rising'] kind: must be one of" in r.stderr


RULE = """
[[rule]]
name = "r1"
kind = "threshold"
quantity = "pm10"
levels = { yellow = 150, orange = 250 }
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULE.replace("{ yellow = 150, orange = 250 }", "{ yellow = 300, orange = 250 }")
            + GOOD_TAIL,
            "[rule #1 'r1'] levels: must rise from blue to red, got yellow 300 >= orange 250",
        ),
        (
            RULE.replace("yellow", "purple") + GOOD_TAIL,
            "[rule #1 'r1'] levels: unknown level 'purple'",
        ),
        (
            RULE.replace("pm10", "pm7") + GOOD_TAIL,
            "[rule #1 'r1'] quantity: unknown quantity 'pm7'",
        ),
        (
            RULE + 'priod = "hour"\n' + GOOD_TAIL,
            '[rule #1 \'r1\']: unknown key "priod" (did you mean "period"?)',
        ),
        (
            RULE + 'summary = "{station} {nope}"\n' + GOOD_TAIL,
            "[rule #1 'r1'] summary: bad template",
        ),
        (RULE + 'orders = ["sprinkle"]\n' + GOOD_TAIL, "[rule #1 'r1'] orders: unknown order"),
        (RULE + 'labels = { level = "red" }\n' + GOOD_TAIL, "'level' is set by the engine"),
        (RULE + RULE + GOOD_TAIL, "[rule #2 'r1'] name: used twice"),
        (
            RULE.replace('kind = "threshold"', 'kind = "inversion"')
            + 'tied = "maybe"\n'
            + GOOD_TAIL,
            "[rule #1 'r1'] tied: must be one of any, site, unregistered",
        ),
        (
            RULE + '[route]\nreceiver = "nobody"\n[[receiver]]\nname = "log"\ntype = "log"\n',
            "[route root] receiver: no [[receiver]] named 'nobody'",
        ),
        (
            GOOD_TAIL + '[[route.routes]]\nmatchers = ["site"]\n',
            "[route.routes #1] matchers: bad matcher 'site'",
        ),
        (
            GOOD_TAIL + '[[receiver]]\nname = "w"\ntype = "webhook"\nurl = "http://x"\n',
            "[receiver #2] secret: a webhook needs secret or secret_file",
        ),
        (
            GOOD_TAIL.replace('type = "log"', 'type = "log"\nescalate_to = "log"'),
            "[receiver log] escalate_to: loops (log -> log)",
        ),
        (GOOD_TAIL + '[events.sla.purple]\nack = "1h"\n', "[events.sla] purple: unknown level"),
        (
            GOOD_TAIL + '[events.sla.red]\nack = "soon"\n',
            "[events.sla.red]: not a duration: 'soon'",
        ),
        (GOOD_TAIL + "[orders]\nack_deadline_s = -1\n", "[orders] ack_deadline_s: must be > 0"),
        ("[[rule]\n", "not valid TOML"),
        ("", "bad.toml: needs at least one [[receiver]]"),
    ],
)
def test_malformed_rule_files_say_file_rule_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rules(text, source="bad.toml")
    assert str(err.value).startswith("bad.toml"), str(err.value)
    assert message in str(err.value), str(err.value)


def test_events_notify_must_name_a_receiver() -> None:
    with pytest.raises(ConfigError, match=r"\[events\] notify: no \[\[receiver\]\] named 'x'"):
        parse_rules(GOOD_TAIL + '[events]\nnotify = "x"\n', source="bad.toml")
