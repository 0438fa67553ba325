"""Documentation tests in the spirit of sqlite-utils': every ``pic`` command and option is in ``pic --help`` and in
the README, and the README's command reference is the one ``scripts/cli_reference.py`` makes from the code."""

from __future__ import annotations

import importlib.util
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import REPO_ROOT
from pic_cli.main import cli

ROOT = REPO_ROOT


def _reference_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_reference"] = module
    spec.loader.exec_module(module)
    return module


REF = _reference_module()
COMMANDS = REF.commands(cli)


def test_pic_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in cli.commands:
        assert f"  {name} " in out or f"  {name}\n" in out, f"pic --help does not list {name}"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_and_option_is_documented(name: str, command: click.Command) -> None:
    readme = (ROOT / "README.md").read_text()
    assert command.help, f"pic {name} has no help text"
    assert f"pic {name}" in readme, f"the README never mentions pic {name}"
    out = CliRunner().invoke(cli, [*name.split(), "--help"]).output
    for p in command.params:
        if isinstance(p, click.Option) and not p.hidden:
            assert p.help, f"pic {name} {p.opts[0]} has no help text"
            for flag in p.opts + p.secondary_opts:
                assert flag in out, f"pic {name} --help does not show {flag}"
                if flag.startswith("--"):
                    assert flag in readme, f"the README never mentions pic {name} {flag}"


def test_the_readme_reference_is_current() -> None:
    block = REF.readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md lacks the command reference block"
    assert block == REF.reference(cli), "README's command reference is stale: run python scripts/cli_reference.py --write"
