"""The command line's own rules: help everywhere, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import click
import pytest

from airtrace import __version__
from airtrace.cli import app, main


def _walk(
    group: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    out = [(path, group)]
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            out.extend(_walk(sub, (*path, name)))
    return out


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, cmd in _walk(app):
        if not (cmd.help or "").strip():
            missing.append(" ".join(("airtrace", *path)))
        for param in cmd.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{' '.join(('airtrace', *path))} {param.opts[0]}")
    assert missing == []


def test_design_verbs_exist() -> None:
    names = {" ".join(path) for path, _ in _walk(app)}
    for verb in (
        "demo",
        "gateway run",
        "gateway read",
        "cloud run",
        "cloud export",
        "cloud invert",
        "sim",
    ):
        assert verb in names


def test_version(cli) -> None:
    r = cli("--version")
    assert r.code == 0
    assert r.stdout.strip() == f"airtrace {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-verb"],
        ["cloud", "invert", "--obs", "x.csv"],
        ["--log-level", "loud", "demo"],
        ["gateway", "read", "--bogus"],
    ],
)
def test_bad_usage_exits_2_with_one_line(cli, args: list[str]) -> None:
    r = cli(*args)
    assert r.code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("airtrace: error: ")
    assert "Traceback" not in r.stderr


def test_help_on_every_level(cli) -> None:
    for path, _ in _walk(app):
        r = cli(*path, "--help")
        assert r.code == 0, (path, r.stderr)
        assert "Usage:" in r.stdout


def test_main_maps_unexpected_errors_to_exit_1(monkeypatch, capsys) -> None:
    @app.command("boom-for-test", hidden=True)
    def boom() -> None:
        """Raise an unexpected error."""
        raise RuntimeError("disk on fire")

    try:
        assert main(["boom-for-test"]) == 1
    finally:
        del app.commands["boom-for-test"]
    err = capsys.readouterr().err
    assert err.strip() == "airtrace: error: internal error: RuntimeError: disk on fire"
