"""``pic help [TOPIC]``: short guides for what no single command's --help covers (`man pic` is groff's pic(1))."""

from __future__ import annotations

import click

TOPICS: dict[str, str] = {
    "ratios": """\
Ratios (--ratio, the review page's R key)

  free       pic chooses the shape (the default)
  original   the photo's own ratio
  W:H        an exact ratio in pixels: 1:1, 4:5, 5:4, 3:2, 2:3, 16:9, 9:16 or any other (16x9 and 1.5 work too)

A ratio is written as you mean it: 4:5 is taller than wide on every photo. A whole-frame suggestion means
pic would keep the photo as it is ("no crop suggested").""",
    "sidecars": """\
Where pic writes (--targets, default pic,darktable)

  pic        pic's own record in IMG.ext.xmp (crop, score, alternatives), read by digiKam and exiv2
  darktable  an enabled crop entry in IMG.ext.xmp (--suggest-only: a disabled one, to review first)
  crs        Lightroom / Camera Raw crs:Crop* in IMG.xmp (opt-in: darktable imports IMG.xmp too)

Originals are never modified, and a crop you made yourself is never replaced (unless --force).""",
    "config": """\
Config file: ~/.config/pic/config.toml ($XDG_CONFIG_HOME/pic/config.toml)

  user = "me"                  # --user
  ratio = "4:5"                # --ratio
  targets = "pic,darktable"    # --targets
  catalog = "~/Pictures/pic.db"  # --catalog

Each applies to the commands that have that option. A flag wins over the environment ($PIC_CATALOG), which
wins over the file, which wins over pic's defaults.""",
    "exit-codes": """\
Exit codes

  0    all good
  1    some files failed (each is named on stderr)
  2    usage error
  130  interrupted with Ctrl-C (the photos in hand are finished and saved; the same command goes on from there)

stdout carries only data (--json lines); progress, the summary line and hints go to stderr.""",
    "completion": """\
Shell completion (click's own)

  bash:  eval "$(_PIC_COMPLETE=bash_source pic)"     (add the line to ~/.bashrc)
  zsh:   eval "$(_PIC_COMPLETE=zsh_source pic)"      (~/.zshrc)
  fish:  _PIC_COMPLETE=fish_source pic | source      (~/.config/fish/completions/pic.fish)""",
}


@click.command("help")
@click.argument("topic", required=False, type=click.Choice(sorted(TOPICS)))
@click.pass_context
def help_command(ctx: click.Context, topic: str | None) -> None:
    """Short guides: ratios, sidecars, config, exit-codes, completion (without TOPIC: the list and the commands)."""
    if topic is not None:
        click.echo(TOPICS[topic])
        return
    parent = ctx.parent
    if parent is not None:
        click.echo(parent.get_help())
    click.echo("\nTopics: pic help " + " | ".join(sorted(TOPICS)))


COMMANDS = [help_command]
