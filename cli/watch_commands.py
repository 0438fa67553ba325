"""``pic watch`` (the daemon, in the foreground) and ``pic status``."""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from pic_plugin.core import jsontext
from pic_plugin.core.geometry import Ratio
from pic_plugin.library.options import parse_targets
from pic_plugin.model import scorers

from .common import (
    EXIT_INTERRUPTED,
    catalog_option,
    note,
    open_catalog,
    ratio_option,
    show_path,
    verbosity,
    verbosity_options,
)


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name (containers): a fixed one still lets pic learn
        return "me"


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@catalog_option
@click.option("--user", default=None, metavar="NAME", help="Whose crops to learn and whose style to suggest in (default: your login name).")
@ratio_option
@click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20), help="Crops per photo (best + alternatives).")
@click.option("--apply", "apply_crop", is_flag=True, help="Apply suggestions (enabled darktable crop) instead of only suggesting them.")
@click.option("--targets", default="pic,darktable", show_default=True, help="Sidecar formats to write: pic, darktable, crs.")
@click.option("--poll", is_flag=True, help="Poll instead of inotify (network drives; chosen automatically when needed).")
@click.option("--poll-interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600), help="Seconds between polls.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Analysis threads (default: all cores).")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model (default: the best available).")
@click.option("--no-scan", is_flag=True, help="Do not scan the folders at start (only react to changes).")
@click.option("--finetune-interval", default=60.0, show_default=True, type=click.FloatRange(0), help="At most one fine-tune per this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo looked at on stdout.")
@verbosity_options
def watch(
    paths: tuple[Path, ...],
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    apply_crop: bool,
    targets: str,
    poll: bool,
    poll_interval: float,
    jobs: int | None,
    scorer: str | None,
    no_scan: bool,
    finetune_interval: float,
    as_json: bool,
) -> None:
    """Watch PATHS: suggest crops for new photos, learn from the crops you make in darktable/digiKam.

    Runs in the foreground until Ctrl-C or SIGTERM (then it finishes the photo in hand and stops; anything still
    queued is picked up by the next start). Exit status: 130 after Ctrl-C, 0 after SIGTERM (a service manager's
    stop). -v logs every photo, -q only problems. Suggestions are suggest-only unless --apply: darktable gets a
    disabled crop entry, and a photo you cropped yourself is never written to. For a background service see
    contrib/systemd/pic-watch.service.
    """
    from pic_plugin.library.watch.daemon import Watcher, WatchOptions, WatchResult
    from pic_plugin.library.watch.state import DaemonRunning

    missing = [p for p in paths if not p.is_dir()]
    if len(missing) == len(paths):
        raise click.UsageError("no folder to watch: " + ", ".join(show_path(p) for p in missing))
    for p in missing:
        click.echo(f"warning: {show_path(p)} is not a folder now; watching for it to appear", err=True)
    try:
        options = WatchOptions(
            user=user or _default_user(),
            ratio=ratio,
            top_k=top_k,
            targets=parse_targets(targets),
            mode="apply" if apply_crop else "suggest",
            scorer=scorer,
            jobs=jobs or os.cpu_count() or 1,
            poll=poll,
            poll_interval=poll_interval,
            scan=not no_scan,
            finetune_interval=finetune_interval,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    level = verbosity()
    verbose = level > 0
    _setup_logging(level)

    def on_result(result: WatchResult) -> None:
        if as_json:
            click.echo(jsontext.dumps(result.to_json()))
        elif verbose and result.status in ("done", "learned"):
            crop = f" [{', '.join(f'{v:.3f}' for v in result.suggestion.crop)}]" if result.suggestion else ""
            click.echo(f"{result.status}: {show_path(result.path)}{crop}", err=True)

    stopped_by: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        watcher.stop()

    with open_catalog(catalog_path) as catalog:
        watcher = Watcher(list(paths), options, catalog, on_result=on_result)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            note(
                f"pic watch: {', '.join(show_path(r.path) for r in watcher.roots)} as user {options.user!r}"
                f" ({options.mode}); Ctrl-C stops"
            )
            watcher.run()
        except DaemonRunning as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    note("pic watch: stopped")
    if stopped_by and stopped_by[0] == signal.SIGINT:
        sys.exit(EXIT_INTERRUPTED)


def _setup_logging(level: int) -> None:
    """-v: every photo (DEBUG); -q: warnings and errors only."""
    logger = logging.getLogger("pic.watch")
    if not any(getattr(h, "_pic", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler._pic = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level > 0 else logging.WARNING if level < 0 else logging.INFO)
    logger.propagate = False


@click.command()
@catalog_option
@click.option("--user", default=None, metavar="NAME", help="Show only this user's model (default: every user).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(catalog_path: Path | None, user: str | None, as_json: bool) -> None:
    """Show the watcher: running or not, watched folders, queue, last fine-tune, model versions, problems."""
    from pic_plugin.library.catalog import default_path
    from pic_plugin.library.watch.state import status_report

    path = catalog_path if catalog_path is not None else default_path()
    if not path.exists():
        report: dict[str, Any] = {"catalog": os.fsdecode(path), "daemon": None, "images": 0, "roots": [],
                                  "queue": {"pending": 0, "by_reason": {}}, "users": {}, "problems": []}  # fmt: skip
    else:
        with open_catalog(path, readonly=True) as catalog:
            report = status_report(catalog, user)
    if as_json:
        click.echo(jsontext.dumps(report, default=str))
        return
    click.echo(_format_status(report))


def _ago(t: float | None) -> str:
    if not t:
        return "never"
    s = max(0.0, time.time() - float(t))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _format_status(r: dict[str, Any]) -> str:
    lines = [f"catalog: {r['catalog']} ({r['images']} photos)"]
    d = r.get("daemon")
    if d:
        lines.append(f"daemon: running, pid {d.get('pid')}, since {_ago(d.get('started'))}")
    else:
        lines.append("daemon: not running")
    roots = r.get("roots") or []
    lines.append("watched folders:" if roots else "watched folders: none yet")
    for root in roots:
        scan = root.get("scan") or {}
        if scan.get("complete"):
            progress = f"scanned {scan.get('seen', 0)} photos {_ago(scan.get('finished'))}"
        elif scan:
            progress = f"scan in progress ({scan.get('seen', 0)} photos so far)"
        else:
            progress = "not scanned"
        note = f", {root['note']}" if root.get("note") else ""
        lines.append(f"  {root['path']}  [{root['mode']}{note}]  {progress}")
    q = r.get("queue") or {}
    by = ", ".join(f"{n} {k}" for k, n in sorted((q.get("by_reason") or {}).items()))
    lines.append(f"queue: {q.get('pending', 0)} waiting" + (f" ({by})" if by else ""))
    for name, u in (r.get("users") or {}).items():
        ft = u.get("last_finetune") or {}
        if ft.get("error"):
            ft_text = f"failed {_ago(ft.get('time'))}: {ft['error']}"
        elif ft.get("skipped"):
            ft_text = f"skipped {_ago(ft.get('time'))} ({ft['skipped']})"
        else:
            ft_text = _ago(ft.get("time"))
        version = u.get("model_version")
        lines.append(
            f"user {name}: {u.get('crops', 0)} crops learned, model version {version if version else 'prior (none yet)'}"
            f", last fine-tune {ft_text}"
        )
    problems = r.get("problems") or []
    if problems:
        lines.append("recent problems:")
        for p in problems:
            where = f"{p['path']}: " if p.get("path") else ""
            lines.append(f"  {_ago(p['time'])}: {p['level']}: {where}{p['message']}")
    return "\n".join(lines)


COMMANDS = [watch, status]
