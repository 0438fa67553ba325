"""Options and helpers shared by the ``pic`` commands."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pic_plugin.core.geometry import Ratio, parse_ratio
from pic_plugin.library.catalog import Catalog, default_path

F = TypeVar("F", bound=Callable[..., Any])


def catalog_option(fn: F) -> F:
    return click.option(
        "--catalog",
        "catalog_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Catalog file (default: $PIC_CATALOG or the XDG data dir, ~/.local/share/pic/catalog.db).",
    )(fn)


def user_option(fn: F) -> F:
    return click.option("--user", default=None, metavar="NAME", help="Whose style to crop in (default: generic).")(fn)


def _ratio(ctx: click.Context, param: click.Parameter, value: str | None) -> Ratio:
    try:
        return parse_ratio(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def ratio_option(fn: F) -> F:
    return click.option(
        "--ratio",
        default=None,
        callback=_ratio,
        metavar="W:H",
        help="Aspect ratio of the crop: 1:1, 4:5, 3:2, 16:9, any W:H, 'original' or 'free' (default).",
    )(fn)


def open_catalog(path: Path | None, readonly: bool = False) -> Catalog:
    target = path if path is not None else default_path()
    try:
        catalog = Catalog(target, readonly=readonly)
        catalog.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # "not a database" shows here, not later
        return catalog
    except (sqlite3.Error, OSError) as exc:  # a folder, a file that is no database, no permission: one clear line
        raise click.ClickException(f"cannot open the catalog {show_path(target)}: {exc}") from None


def show_path(path: os.PathLike[str] | str) -> str:
    """A path for a human-readable line: control characters (newlines in names) made visible."""
    text = os.fsdecode(path)
    return text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
