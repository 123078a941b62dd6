"""The packages type-check: ``mypy`` with the config in pyproject.toml (strict, all five
packages) exits 0. A failure prints mypy's report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_packages_type_check_strictly() -> None:
    # from the repo root, so mypy reads [tool.mypy] and keeps its cache in .mypy_cache
    # (a warm cache takes seconds; a cold run about half a minute)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=170,
    )
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}{proc.stderr}"
