"""What users of other command-line tools expect of `pic`: plain help texts, data on stdout, the summary on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from pic_cli.main import cli


def test_help_texts_have_no_rest_markup_nor_documents_outside_the_program() -> None:
    parent = click.Context(cli)
    for name, command in cli.commands.items():
        text = command.get_help(click.Context(command, info_name=name, parent=parent))
        for bad in ("``", ":func:", ":class:", ".. ", "DESIGN", "FORMATS.md", "README"):
            assert bad not in text, f"pic {name} --help shows {bad!r}"


def test_batch_summary_goes_to_stderr_with_and_without_json(photo_dir: Path, catalog_path: Path) -> None:
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["batch", str(photo_dir), "--no-write", "-j", "1", "--refresh",
                                          "--catalog", str(catalog_path), *extra])
        assert result.exit_code == 0, result.output
        assert "3 photos:" in result.stderr and "photos:" not in result.stdout
        if extra:
            assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["done"] * 3
