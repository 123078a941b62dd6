"""The README's inversion section stays true: its worked example runs and gives the result
it shows, and it documents every column the readers accept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- section: inversion")
    end = text.index("<!-- section:", start + 10)
    return text[start:end]


@pytest.mark.slow
def test_the_worked_example_runs_and_gives_the_result_shown(tmp_path: Path) -> None:
    section = _section()
    (script,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    (shown,) = re.findall(r"```json\n(.*?)```", section, re.S)
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-euc", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp_path / "RESULT.json").read_text())
    want = json.loads(shown)
    assert len(got["sources"]) == len(want["sources"])
    for g, w in zip(got["sources"], want["sources"], strict=True):
        assert (g["x_m"], g["y_m"], g.get("site")) == (w["x_m"], w["y_m"], w.get("site"))
        assert g["rate_g_s"] == pytest.approx(w["rate_g_s"], rel=0.01)
    assert got["background_ug_m3"] == pytest.approx(want["background_ug_m3"], rel=0.01)
    assert (tmp_path / got["inventory_file"]).exists()
    assert (tmp_path / got["map_file"]).exists()
    assert "truth:" in proc.stdout


def test_every_column_the_readers_accept_is_documented() -> None:
    section = _section()
    for column in ("time", "station", "x_m", "y_m", "z_m", "value", "sigma", "kind",
                   "wind_speed_ms", "wind_dir_deg", "stability", "sigma_theta_deg",
                   "mixing_height_m", "obukhov_m", "cloud_okta", "site", "h_m"):
        assert f"`{column}`" in section, column
