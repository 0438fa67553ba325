"""~/.config/pic/config.toml: defaults below flags and the environment."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pic_cli.main import cli


@pytest.fixture
def probe() -> click.Command:
    """A command with the shared options that prints what it got (added to the real group for the test)."""
    from pic_cli.common import catalog_option, ratio_option, user_option

    @click.command("probe-config")
    @user_option
    @ratio_option
    @catalog_option
    @click.option("--targets", default="pic,darktable")
    def probe_config(user: str | None, ratio: object, catalog_path: Path | None, targets: str) -> None:
        click.echo(f"{user}|{getattr(ratio, 'name', ratio)}|{catalog_path}|{targets}")

    cli.add_command(probe_config)
    yield probe_config
    cli.commands.pop("probe-config")


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    (tmp_path / "pic").mkdir(exist_ok=True)
    (tmp_path / "pic" / "config.toml").write_text(text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def test_file_gives_defaults_flags_and_env_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               probe: click.Command) -> None:
    monkeypatch.delenv("PIC_CATALOG", raising=False)
    _config(tmp_path, monkeypatch, 'user = "mara"\nratio = "4:5"\ntargets = "pic"\ncatalog = "/x/file.db"\n')
    runner = CliRunner()
    assert runner.invoke(cli, ["probe-config"]).output.strip() == "mara|4:5|/x/file.db|pic"
    out = runner.invoke(cli, ["probe-config", "--user", "me", "--ratio", "1:1", "--catalog", "/x/flag.db"]).output
    assert out.strip() == "me|1:1|/x/flag.db|pic"
    monkeypatch.setenv("PIC_CATALOG", "/x/env.db")  # the environment beats the file: pic reads it when unset
    assert runner.invoke(cli, ["probe-config"]).output.strip() == "mara|4:5|None|pic"


def test_a_bad_config_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            probe: click.Command) -> None:
    _config(tmp_path, monkeypatch, 'colour = "red"\n')
    r = CliRunner().invoke(cli, ["probe-config"])
    assert r.exit_code == 2 and "unknown key(s) colour" in r.output
    _config(tmp_path, monkeypatch, "user = \n")
    assert CliRunner().invoke(cli, ["probe-config"]).exit_code == 2
