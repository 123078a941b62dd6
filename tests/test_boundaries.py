"""The import rules of the house: protocols/ is pure, gateway/ and cloud/ never meet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocols", "gateway", "cloud", "firmware_sim", "airtrace")
ALLOWED = {
    "protocols": {"protocols"},
    "firmware_sim": {"protocols", "firmware_sim"},
    "gateway": {"protocols", "gateway"},
    "cloud": {"protocols", "cloud"},
    "airtrace": set(PACKAGES),
}
# protocols/ does no I/O: no sockets, serial ports, clocks, threads or logging
IMPURE = {"socket", "serial", "time", "threading", "asyncio", "logging", "sqlite3", "subprocess"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path) & set(PACKAGES):
            if name not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_protocols_is_pure() -> None:
    bad = []
    for path in sorted((ROOT / "protocols").rglob("*.py")):
        for name in _imports(path) & IMPURE:
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []
