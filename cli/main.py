"""The ``pic`` command group. Each command lives in a module named after what it does; this file only lists them."""

from __future__ import annotations

import click

from pic_plugin import __version__

from . import batch_commands, editor_commands, library_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pic")
def cli() -> None:
    """pic: crop suggestions in your own style, written where darktable, digiKam and Lightroom see them."""


for command in batch_commands.COMMANDS + library_commands.COMMANDS + editor_commands.COMMANDS:
    cli.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    cli()
