"""Options and helpers shared by the ``pic`` commands."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from pic_plugin.core.geometry import Ratio, parse_ratio
from pic_plugin.library.catalog import Catalog, default_path

F = TypeVar("F", bound=Callable[..., Any])


#: The exit status of a command stopped by Ctrl-C: 128 + SIGINT, what a shell reports (1 means "some files failed").
EXIT_INTERRUPTED = 130

_QUIET, _VERBOSE = "pic.quiet", "pic.verbose"


def _remember(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:  # ctx.meta is shared by `pic` and its command: `pic -q batch` and `pic batch -q` are the same
            ctx.meta[key] = True

    return callback


def verbosity_options(fn: F) -> F:
    """-q/--quiet and -v/--verbose, the same on `pic` itself and on each command that reports progress."""
    fn = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_remember(_VERBOSE),
                      help="More detail on stderr: one line per photo, with timings.")(fn)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_remember(_QUIET),
                        help="Only errors on stderr: no progress, no summary.")(fn)


def verbosity() -> int:
    """-1 with --quiet, 1 with --verbose, else 0."""
    meta = click.get_current_context().meta
    if meta.get(_QUIET) and meta.get(_VERBOSE):
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other")
    return -1 if meta.get(_QUIET) else 1 if meta.get(_VERBOSE) else 0


def note(message: str) -> None:
    """A line for the person on stderr (a summary, a hint), unless --quiet."""
    if verbosity() >= 0:
        click.echo(message, err=True)


@contextlib.contextmanager
def finish_on_ctrl_c(announce: bool = True) -> Iterator[threading.Event]:
    """While inside: the first Ctrl-C sets the event (the command finishes the photo in hand, then stops), a second
    one stops at once (KeyboardInterrupt; sidecars are replaced atomically, so none is left half written)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if not announce:
            return
        with contextlib.suppress(OSError, ValueError):  # no print(): the main thread may be inside one
            os.write(sys.stderr.fileno(), b"\nstopping after the photo in hand (Ctrl-C again to stop now)\n")

    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield stop
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


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
