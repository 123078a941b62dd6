"""The README's simulator section keeps its promises: its Python runs, its district file
loads, and every command and fault flag it names exists."""

from __future__ import annotations

import re

import pytest

from firmware_sim.city_config import loads_config
from firmware_sim.cli import app
from tests.conftest import ROOT


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- section: simulator")
    return text[start : text.index("<!-- section:", start + 10)]


def test_python_example_runs() -> None:
    block = re.search(r"```python\n(.*?)```", _section(), re.S)
    assert block, "the simulator section lost its Python example"
    exec(compile(block.group(1), "README.md", "exec"), {})


def test_district_file_example_loads(tmp_path) -> None:
    block = re.search(r"```toml\n(.*?)```", _section(), re.S)
    assert block, "the simulator section lost its district file"
    config = loads_config(block.group(1), base=tmp_path)
    assert config.stations == 40 and "hj212" in config.transports
    assert config.outbox_path == tmp_path / "city" / "outbox"


@pytest.mark.parametrize("word", ["modbus-tcp", "modbus-rtu", "pms5003", "sds011", "hj212", "city"])
def test_commands_exist(word: str) -> None:
    assert word in app.commands


def test_fault_flags_exist() -> None:
    flags = set(re.findall(r"`(--[a-z-]+)", _section()))
    known = {o for cmd in app.commands.values() for p in cmd.params for o in p.opts}
    assert flags - known == set()
