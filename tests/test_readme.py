"""The README's promises are checked: its two commands, and CI running exactly the second."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_the_two_commands() -> None:
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].endswith("airtrace demo")
    assert "pytest" in cmds[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_readme_telemetry_example_decodes() -> None:
    from protocols.telemetry import decode_pack

    text = (ROOT / "README.md").read_text()
    example = re.search(
        r"A telemetry pack, as a gateway publishes it:\n\n```json\n(.*?)```", text, re.S
    )
    assert example, "the README lost its SenML example"
    pack = decode_pack(example.group(1), station="GX-M-001")
    assert pack.epoch == "9f2c41d07ab3"
    assert [r.id for r in pack.records] == [10, 11, 12]
    assert pack.records[2].value is None and pack.records[2].flag == "B"
