"""The shipped systemd unit runs the documented command and passes systemd's own check."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

UNIT = ROOT / "deploy" / "systemd" / "airtrace-gateway.service"


def test_the_unit_runs_the_daemon_and_stops_it_cleanly(tmp_path: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text())
    svc = parser["Service"]
    assert svc["ExecStart"].split()[1:] == [
        "gateway", "run", "--config", "/etc/airtrace/station.toml",
    ]  # fmt: skip
    assert (svc["KillSignal"], svc["Restart"], svc["StateDirectory"]) == (
        "SIGTERM", "always", "airtrace",
    )  # fmt: skip
    # the outbox and set_config's atomic rewrite of the config need these writable
    assert set(svc["ReadWritePaths"].split()) == {"/var/lib/airtrace", "/etc/airtrace"}
    assert "dialout" in svc["SupplementaryGroups"]
    if shutil.which("systemd-analyze"):
        exe = Path(sys.executable).with_name("airtrace")
        unit = tmp_path / UNIT.name
        unit.write_text(UNIT.read_text().replace("/opt/airtrace/bin/airtrace", str(exe)))
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr
