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


def test_quiet_and_verbose_are_the_same_on_pic_and_on_the_command(photo_dir: Path, catalog_path: Path) -> None:
    base = ["--no-write", "-j", "1", "--refresh", "--catalog", str(catalog_path)]
    runner = CliRunner()
    for args in (["-q", "batch", str(photo_dir), *base], ["batch", str(photo_dir), "--quiet", *base]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and result.stdout == "", args  # nothing but errors, and there are none
    for args in (["--verbose", "batch", str(photo_dir), *base], ["batch", str(photo_dir), "-v", *base]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        lines = result.stderr.splitlines()
        per_photo = [line for line in lines if line.startswith("done: ")]
        assert len(per_photo) == 3 and all(line.endswith("s (features from the catalog)") for line in per_photo), lines
        assert lines[-1].startswith("3 photos: 3 done")
    result = runner.invoke(cli, ["-q", "batch", str(photo_dir), "-v", *base])
    assert result.exit_code == 2 and "contradict" in result.stderr


def test_quiet_leaves_only_errors_in_other_commands(tmp_path: Path, catalog_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["crops", str(tmp_path), "-q"])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "0 crop(s)" in runner.invoke(cli, ["crops", str(tmp_path)]).stderr
    crops = tmp_path / "crops.csv"
    crops.write_text("path,left,top,right,bottom\n")
    result = runner.invoke(cli, ["-q", "learn", "--user", "me", "--crops", str(crops), "--catalog", str(catalog_path)])
    assert result.exit_code == 0 and result.output == "", result.output
    result = runner.invoke(cli, ["-q", "demo", str(tmp_path / "demo")])
    assert result.exit_code == 0 and result.stderr == "", result.output
