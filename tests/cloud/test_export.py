"""``airtrace cloud export`` in process, so the suite's warnings-as-errors reach it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from cloud.cli import app


def test_export_of_an_empty_store_writes_the_header_and_warns_of_nothing(tmp_path: Path) -> None:
    # `click.get_text_stream` is deprecated since Click 8.5 (gone in 9.0): the export wrote
    # through it, which a subprocess run hides (DeprecationWarning is silent there)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[store]\nurl = "sqlite:///{tmp_path}/c.db"\n')
    result = CliRunner().invoke(app, ["export", "--config", str(cfg)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert next(csv.reader(io.StringIO(result.output)))[:3] == ["station", "id", "quantity"]
