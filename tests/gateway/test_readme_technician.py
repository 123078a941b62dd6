"""The technician's guide in the README stays true: its example station config and
profile load, it documents every config key, and it lists every built-in profile."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway import config
from gateway.config import (
    ActuatorConfig,
    OutboxConfig,
    QcLimits,
    RuleConfig,
    SensorConfig,
    StationInfo,
    UplinkConfig,
)
from gateway.profiles import builtin_profiles, loads_profile
from protocols.registers import decode

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- section: technician")
    end = text.index("<!-- section: maintainer")
    return text[start:end]


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", _section(), re.S)


def test_the_example_station_config_loads() -> None:
    (station,) = [b for b in _toml_blocks() if "[station]" in b]
    cfg = config.loads(station, source="README station.toml")
    assert [s.name for s in cfg.sensors] == ["th", "pm", "pms", "site-dust"]
    assert {s.bus for s in cfg.sensors if s.transport == "modbus-rtu"} == {
        "modbus-rtu:/dev/ttyUSB0"
    }
    assert cfg.actuator("spray").coil == 0 and cfg.rules[0].actuator == "spray"


def test_the_example_profile_loads_and_decodes() -> None:
    (text,) = [b for b in _toml_blocks() if "[model]" in b]
    profile = loads_profile(text, source="acme-th.toml")
    assert profile.name == "acme-th" and profile.quantities == ("temp", "rh")
    (block,) = profile.blocks()
    assert (block.function, block.address, block.count) == (3, 0x10, 2)
    words = [0xFF9B, 0x0292]
    assert [decode(block.extract(words, s), s) for s in block.specs] == pytest.approx([-10.1, 65.8])


@pytest.mark.parametrize(
    "table",
    [StationInfo, SensorConfig, UplinkConfig, OutboxConfig, QcLimits, ActuatorConfig, RuleConfig],
)
def test_every_config_key_is_documented(table: type) -> None:
    section = _section()
    missing = [f.name for f in dataclasses.fields(table) if f"`{f.name}`" not in section]
    assert missing == []


def test_every_builtin_profile_is_in_the_table() -> None:
    section = _section()
    assert [n for n in builtin_profiles() if f"| `{n}` |" not in section] == []
