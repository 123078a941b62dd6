"""Config tables are read strictly, and errors name file, section, key and reason."""

from __future__ import annotations

import re

import pytest

from protocols.errors import ConfigError
from protocols.tomlconf import Table, parse_toml

DOC = """
[uplink]
mqtt = "mqtt://127.0.0.1:1883"
batch_max = 500
tls = false

[[sensor]]
name = "pm"
interval_s = 10

[[sensor]]
name = "th"
interval_s = -5
"""


def test_typed_values_and_defaults() -> None:
    doc = parse_toml(DOC, "station.toml")
    up = Table(doc, source="station.toml").table("uplink")
    assert up.text("mqtt", pattern=r"^mqtts?://") == "mqtt://127.0.0.1:1883"
    assert up.integer("batch_max", 100, min=1) == 500
    assert up.flag("tls") is False
    assert up.number("keepalive_s", 30.0) == 30.0
    up.done()


def test_errors_name_file_section_key_and_reason() -> None:
    root = Table(parse_toml(DOC, "station.toml"), source="station.toml")
    sensors = root.tables("sensor")
    assert sensors[0].number("interval_s", positive=True) == 10.0
    with pytest.raises(ConfigError) as info:
        sensors[1].number("interval_s", positive=True)
    assert str(info.value) == "station.toml [sensor #2] interval_s: must be > 0, got -5"


def test_unknown_keys_are_rejected_with_a_suggestion() -> None:
    t = Table({"batch_max": 1, "bach_max": 2}, source="s.toml", section="uplink")
    t.integer("batch_max")
    with pytest.raises(ConfigError, match=r'unknown key "bach_max" \(did you mean "batch_max"\?\)'):
        t.done()


@pytest.mark.parametrize(
    ("data", "call", "reason"),
    [
        ({}, lambda t: t.text("id"), "s.toml id: is required"),
        ({"id": 5}, lambda t: t.text("id"), "must be a string, got int 5"),
        ({"n": True}, lambda t: t.integer("n"), "must be an integer, got boolean true"),
        ({"n": "x"}, lambda t: t.number("n"), "must be a number"),
        ({"k": "z"}, lambda t: t.text("k", choices=("a", "b")), "must be one of a, b; got 'z'"),
        ({"n": 200}, lambda t: t.integer("n", max=100), "must be <= 100, got 200"),
        ({"l": [1, "x"]}, lambda t: t.array("l", float), "item 1 must be float"),
        ({"s": 3}, lambda t: t.tables("s"), "must be an array of tables"),
    ],
)
def test_bad_values(data, call, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        call(Table(data, source="s.toml"))


def test_syntax_error_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"station\.toml: not valid TOML"):
        parse_toml("[station\nid=1", "station.toml")
