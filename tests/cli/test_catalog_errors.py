"""A catalog pic cannot open is one clear line and exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pic_cli.main import cli


@pytest.mark.parametrize("args", [["status"], ["batch", "{photos}", "--dry-run"]])
def test_a_file_that_is_no_database(tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "catalog.db"
    bad.write_bytes(b"garbage " * 200)
    (tmp_path / "photos").mkdir()
    argv = [a.replace("{photos}", str(tmp_path / "photos")) for a in args] + ["--catalog", str(bad)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output
    assert "cannot open the catalog" in result.stderr and "not a database" in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
