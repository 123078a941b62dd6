"""The README's gateway sections are kept honest: every ``airtrace gateway`` command they
show parses with this checkout's CLI, and their JSON examples decode."""

from __future__ import annotations

import json
import re
import shlex

import click
import pytest

from airtrace.cli import app
from gateway.calibration import CalSet
from tests.conftest import ROOT

TEXT = (ROOT / "README.md").read_text()
MINE = TEXT[TEXT.index("### Running the gateway") : TEXT.index("<!-- section: operator")]
COMMANDS = sorted({
    line.split("#")[0].strip()
    for block in re.findall(r"```sh\n(.*?)```", MINE, re.S)
    for line in block.splitlines()
    if line.strip().startswith("airtrace gateway")
})  # fmt: skip


def test_the_sections_show_the_commands() -> None:
    verbs = {c.split()[2] for c in COMMANDS}
    assert {"read", "run", "status", "doctor", "calibrate"} <= verbs
    assert len(COMMANDS) >= 12


@pytest.mark.parametrize("line", COMMANDS)
def test_every_command_parses(line: str) -> None:
    args = shlex.split(line)[1:]
    cmd: click.Command = app
    while isinstance(cmd, click.Group):
        name = args.pop(0)
        assert name in cmd.commands, f"no command {name!r} in {line!r}"
        cmd = cmd.commands[name]
    cmd.make_context(name, args, resilient_parsing=False)  # a wrong option raises here


def test_the_json_examples_decode() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", MINE, re.S)]
    read_line = next(b for b in blocks if "cal_version" in b)
    assert set(read_line) == {"station", "sensor", "quantity", "raw", "value", "unit",
                              "flags", "reason", "cal_version", "ts"}  # fmt: skip
    cmd = next(b for b in blocks if "kappa" in b)
    cs = CalSet.from_args(cmd, now=0.0)
    assert (cs.kind, cs.source, cs.kappa) == ("rh", "colocation", 0.35)
