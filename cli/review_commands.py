"""``pic review`` (a local page to check and decide on suggestions) and ``pic report`` (a static contact sheet)."""

from __future__ import annotations

import os
import signal
import sys
import webbrowser
from pathlib import Path

import click

from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Ratio
from pic_plugin.library.batch import run_batch
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.library.pipeline import FileResult
from pic_plugin.model import scorers

from .common import (
    catalog_option,
    note,
    open_catalog,
    ratio_option,
    show_path,
    user_option,
    verbosity,
    verbosity_options,
)


def _paths_or_usage(paths: tuple[Path, ...]) -> None:
    if not paths:
        raise click.UsageError("name at least one folder or photo")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise click.UsageError("not found: " + ", ".join(show_path(p) for p in missing))


def _prepare(catalog: Catalog, paths: tuple[Path, ...], user: str | None, ratio: Ratio, top_k: int,
             jobs: int | None, scorer: str | None) -> int:
    """``pic batch --no-write`` over ``paths``: suggestions for photos that have none (or changed). Failures."""
    options = BatchOptions(user=user, ratio=ratio, top_k=top_k, write=False, jobs=jobs or os.cpu_count() or 1,
                           scorer=scorer)

    from .batch_commands import photo_line

    verbose = verbosity() > 0

    def on_result(result: FileResult) -> None:
        if result.status == "error":
            click.echo(f"error: {show_path(result.path)}: {result.error}", err=True)
        elif verbose:
            click.echo(photo_line(result), err=True)

    try:
        summary = run_batch(list(paths), options, catalog, on_result=on_result)
    except (PicError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    note(summary.line())
    return len(summary.failed)


def _common(fn):  # type: ignore[no-untyped-def]
    fn = click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model.")(fn)
    fn = click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
                      help="Worker processes for photos not suggested yet (default: all cores).")(fn)
    fn = click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20),
                      help="Crops per photo (best + alternatives).")(fn)
    fn = ratio_option(fn)
    fn = user_option(fn)
    fn = catalog_option(fn)
    fn = verbosity_options(fn)
    return click.argument("paths", nargs=-1, type=click.Path(path_type=Path))(fn)


@click.command()
@_common
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a random free one).")
@click.option("--no-browser", is_flag=True, help="Print the page's address instead of opening a browser.")
@click.option("--targets", default="pic,darktable", show_default=True,
              help="Sidecars that accepted crops are written to: pic, darktable, crs.")
def review(
    paths: tuple[Path, ...],
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    jobs: int | None,
    scorer: str | None,
    port: int,
    no_browser: bool,
    targets: str,
) -> None:
    """Check the crops pic suggests for PATHS on a local page, and accept, adjust or reject them.

    Photos without a suggestion are suggested first (nothing is written then). The page runs on 127.0.0.1
    only, behind a secret address printed here; it stops with Ctrl-C. Accepting or adjusting writes the crop
    as your own (sidecars and catalog) and teaches pic your style (--user); rejecting is recorded too, and U
    on the page undoes the last decisions.
    """
    from pic_plugin.library.options import parse_targets
    from pic_plugin.review.server import ReviewServer
    from pic_plugin.review.session import ReviewOptions, ReviewSession

    _paths_or_usage(paths)
    try:
        target_list = parse_targets(targets)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    with open_catalog(catalog_path) as catalog:
        _prepare(catalog, paths, user, ratio, top_k, jobs, scorer)
        options = ReviewOptions(user=user, ratio=ratio, top_k=top_k, targets=target_list, scorer=scorer)
        session = ReviewSession.for_paths(catalog, paths, options)
        try:
            server = ReviewServer(session, port=port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
        click.echo(f"{len(session.ids)} photos to review at {server.url}")
        click.echo("(this address is a secret for this run; press Ctrl-C to stop)")
        sys.stdout.flush()
        crops_before = _crop_snapshot(catalog, user)
        if not no_browser:
            webbrowser.open(server.url)
        _stop_on_signals()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            note("stopped")
        finally:
            server.httpd.server_close()
        if user and _crop_snapshot(catalog, user) != crops_before:
            _learn(catalog, user)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (a service manager, ``kill``) both stop the page cleanly, so this run's decisions are
    still learned. SIGINT is set explicitly: a shell starts background jobs with it ignored, and Python keeps that."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _crop_snapshot(catalog: Catalog, user: str | None) -> list[tuple[str, str, str, float]]:
    if not user:
        return []
    return [(r["content_key"], r["source"], str(r["crop"]), float(r["weight"])) for r in catalog.user_crops(user)]


def _learn(catalog: Catalog, user: str) -> None:
    """The decisions of this review are the user's crops now: fine-tune once, when the page closes."""
    from pic_plugin.library.learn import learn

    result = learn(catalog, user, note="after review")
    if result.version is not None:
        note(f"{user}: fine-tuned on {result.k} crops in {result.seconds:.1f}s -> model version {result.version}")
    for err in result.errors:
        click.echo(f"error: {err}", err=True)


@click.command()
@_common
@click.option("--html", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write index.html, thumbs/ and suggestions.jsonl into.")
@click.option("--title", default=None, help="Title of the sheet (default: the folders' names).")
def report(
    paths: tuple[Path, ...],
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    jobs: int | None,
    scorer: str | None,
    out_dir: Path,
    title: str | None,
) -> None:
    """Write a static contact sheet of the crops for PATHS (plain HTML + images, no server, no script).

    Photos without a suggestion are suggested first; nothing is written next to the photos.
    """
    from pic_plugin.review.report import entries, write_report

    _paths_or_usage(paths)
    with open_catalog(catalog_path) as catalog:
        failed = _prepare(catalog, paths, user, ratio, top_k, jobs, scorer)
        items = entries(catalog, paths, user, ratio.name)
    sheet_title = title or "pic: " + ", ".join(show_path(p.resolve().name or p) for p in paths)
    result = write_report(items, out_dir, title=sheet_title)
    for path, error in result.failed:
        click.echo(f"error: {show_path(path)}: {error}", err=True)
    if verbosity() >= 0:
        click.echo(f"{result.photos} photos in {show_path(result.index)}")
    if failed or result.failed:
        sys.exit(1)


COMMANDS = [review, report]
