"""The README's command reference, made from the ``pic`` command itself (so the two cannot drift apart).

    python scripts/cli_reference.py           # print the reference
    python scripts/cli_reference.py --write   # replace the block between the README's markers

``tests/cli/test_docs.py`` fails when the README's block is not what this prints, or when a command or option of
``pic`` is missing from ``pic --help`` or the README.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN = "<!-- cli-reference: made by scripts/cli_reference.py --write; do not edit by hand -->"
END = "<!-- /cli-reference -->"


def _first_line(text: str | None) -> str:
    text = (text or "").strip()
    first = text.split("\n\n")[0].replace("\n", " ")
    return re.sub(r"\s+", " ", first)


def _option(p: click.Parameter) -> str:
    assert isinstance(p, click.Option)
    names = " / ".join(p.opts + p.secondary_opts)
    meta = "" if p.is_flag or p.count else f" {p.make_metavar(click.Context(click.Command('pic')))}"
    return f"`{names}{meta}`" + (f": {_first_line(p.help)}" if p.help else "")


def commands(group: click.Group) -> list[tuple[str, click.Command]]:
    out = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in commands(cmd)]
        else:
            out.append((name, cmd))
    return out


def reference(cli: click.Group) -> str:
    lines = [BEGIN, ""]
    group_ctx = click.Context(cli, info_name="pic")
    lines.append(f"- **`pic {' '.join(cli.collect_usage_pieces(group_ctx))}`** {_first_line(cli.help)}")
    for p in cli.params:  # the options of `pic` itself (-q, -v, --version), before any command
        if isinstance(p, click.Option) and not p.hidden and p.name != "help":
            lines.append(f"  - {_option(p)}")
    for name, cmd in commands(cli):
        ctx = click.Context(cmd, info_name=f"pic {name}")
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines.append(f"- **`pic {name} {usage}`** {_first_line(cmd.help)}")
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden and p.name != "help":
                lines.append(f"  - {_option(p)}")
    lines += ["", END]
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        return None
    return text[start : end + len(END)]


def main() -> int:
    from pic_cli.main import cli

    ref = reference(cli)
    if "--write" not in sys.argv[1:]:
        print(ref)
        return 0
    text = README.read_text()
    old = readme_block(text)
    if old is None:
        print(f"README.md has no {BEGIN!r} ... {END!r} block", file=sys.stderr)
        return 1
    README.write_text(text.replace(old, ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
