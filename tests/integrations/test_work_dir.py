"""The plugins' work folder (``pic dtstyle --out /tmp/lua_XXXX.d``): a name another local user could plant in /tmp
is never followed (issue 15, point 11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.integrations.file_list import WorkDir


def test_a_planted_symlink_is_refused_and_nothing_is_written_through_it(tmp_path: Path, catalog_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(make_photo()))
    victim = tmp_path / "victim"
    victim.mkdir()
    work = tmp_path / "lua_abc123.d"
    work.symlink_to(victim)  # planted by someone else before pic ran
    result = CliRunner().invoke(cli, ["dtstyle", str(photo), "--out", str(work), "--catalog", str(catalog_path)])
    assert result.exit_code == 1
    assert "a symlink or not a folder" in result.stderr
    assert list(victim.iterdir()) == []


def test_own_folders_are_fine_and_others_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    WorkDir(tmp_path / "new").progress(0, 1)
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    WorkDir(existing).progress(0, 1)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)  # as if the folder were another user's
    with pytest.raises(OSError, match="belongs to another user"):
        WorkDir(existing)
