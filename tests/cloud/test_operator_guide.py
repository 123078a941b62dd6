"""The README's operator guide stays true: its config parses, its commands and their
options exist, its endpoints are served."""

from __future__ import annotations

import re
import shlex

import click

from airtrace.cli import app
from cloud.api import ApiContext, create_app
from cloud.config import parse_config
from tests.conftest import ROOT


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- section: operator")
    return text[start : text.index("<!-- section:", start + 10)]


def test_the_config_example_parses() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", section(), re.S)
    assert blocks
    for block in blocks:
        cfg = parse_config(block, source="README.md")
        assert cfg.mqtt is not None
        assert cfg.api.enabled


def test_every_command_shown_exists_with_its_options() -> None:
    lines = [
        line.split("#")[0].split(">")[0].strip()
        for block in re.findall(r"```sh\n(.*?)```", section(), re.S)
        for line in block.splitlines()
        if line.strip().startswith("airtrace cloud")
    ]
    assert len(lines) >= 10
    for line in lines:
        words = shlex.split(line)[1:]
        cmd: click.Command = app
        while isinstance(cmd, click.Group) and words and words[0] in cmd.commands:
            cmd = cmd.commands[words.pop(0)]
        assert not isinstance(cmd, click.Group), line
        known = {o for p in cmd.params for o in getattr(p, "opts", [])}
        for w in words:
            if w.startswith("--"):
                assert w in known, f"{line}: {w} is not an option of {cmd.name}"


def test_every_endpoint_listed_is_served(tmp_path) -> None:
    from cloud.fusion import Fusion
    from cloud.registry import Registry
    from cloud.store import open_store

    with open_store(f"sqlite:///{tmp_path}/x.db") as store:
        app_ = create_app(ApiContext(store, Registry(store), Fusion(store)))
        paths = app_.openapi()["paths"]
        served = {
            (m.upper(), re.sub(r"\{\w+\}", "{id}", p)) for p, ops in paths.items() for m in ops
        }
    listed = re.findall(
        r"`((?:GET|PUT|POST|DELETE)(?:/(?:GET|PUT|POST|DELETE))*) (/[^` ?\[]*)", section()
    )
    assert len(listed) >= 10
    for methods, path in listed:
        for m in methods.split("/"):
            full = path if path.startswith("/api/v1") else "/api/v1" + path
            assert (m, full) in served, f"{m} {path}"
