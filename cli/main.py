"""The ``pic`` command group. Each command lives in a module named after what it does; this file only lists them."""

from __future__ import annotations

import click

from pic_plugin import __version__

from . import (
    batch_commands,
    editor_commands,
    help_commands,
    library_commands,
    model_commands,
    review_commands,
    watch_commands,
)
from .common import EXIT_INTERRUPTED, verbosity_options
from .config import default_map, load_config

# One module per group of commands; each exports COMMANDS.
COMMAND_MODULES = (
    batch_commands,
    library_commands,
    model_commands,
    review_commands,
    editor_commands,
    watch_commands,
    help_commands,
)


class PicGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # click would say "Aborted!" and exit 1, which reads as "some files failed"; a shell's 130 it is
            click.echo("\ninterrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=PicGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pic")
@verbosity_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """pic: crop suggestions in your own style, written where darktable, digiKam and Lightroom see them.

    Defaults for --user, --ratio, --targets and --catalog can be set in ~/.config/pic/config.toml (pic help config).
    -q and -v work here (pic -q batch ...) and on each command that reports progress (pic batch -q ...). A
    command stopped by Ctrl-C exits with status 130; 1 means some photos failed, 2 a usage error.
    """
    # the subcommand's context is made after this runs, so it sees these defaults (below flags and $PIC_CATALOG)
    ctx.default_map = {**default_map(cli, load_config()), **(ctx.default_map or {})}


for module in COMMAND_MODULES:
    for command in module.COMMANDS:
        cli.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    cli()
