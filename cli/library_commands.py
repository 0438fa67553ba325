"""``pic crops``: the crops a photographer already made, as pic reads them from their editors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from pic_plugin.library.harvest import LibraryCrop, collect_crops

from .common import note, show_path, verbosity_options


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON line per crop on stdout.")
@click.option(
    "--darktable-library",
    type=click.Path(dir_okay=True, path_type=Path),
    metavar="PATH",
    help="darktable's library.db (read-only); its edits win over the sidecars.",
)
@click.option(
    "--digikam-db",
    type=click.Path(dir_okay=True, path_type=Path),
    metavar="PATH",
    help="digiKam's digikam4.db or its folder (read-only), for version histories when sidecars are off.",
)
@verbosity_options
def crops(paths: tuple[Path, ...], as_json: bool, darktable_library: Path | None, digikam_db: Path | None) -> None:
    """List every crop pic finds for the photos under PATHS, in the displayed frame.

    Reads darktable sidecars (duplicates included), Lightroom/Camera Raw crs crops and digiKam versions, plus
    darktable's and digiKam's databases when named. Nothing is written. With --json each line is
    {"path", "crop": [l, t, r, b], "source", "approximate", "detail", ...}; one line per crop, so a photo
    cropped in two editors (or in two darktable duplicates) has two lines.
    """
    if not paths and darktable_library is None and digikam_db is None:
        raise click.UsageError("name at least one folder or photo (or --darktable-library / --digikam-db)")
    failed = False

    def error(path: str, message: str) -> None:
        nonlocal failed
        failed = True
        click.echo(f"error: {show_path(path)}: {message}", err=True)

    found = collect_crops(paths, darktable_library=darktable_library, digikam_db=digikam_db, on_error=error)
    out = sys.stdout
    for c in found:
        if as_json:
            out.write(json.dumps(c.as_json(), ensure_ascii=True) + "\n")
        else:
            out.write(crop_line(c) + "\n")
    out.flush()
    if not as_json:
        photos = len({os.path.abspath(c.image) for c in found})
        note(f"{len(found)} crop(s) on {photos} photo(s)")
    if failed:
        sys.exit(1)


def crop_line(c: LibraryCrop) -> str:
    left, top, right, bottom = c.crop
    flags = []
    if c.approximate:
        flags.append("approximate")
    if c.pic_suggestion:
        flags.append("pic's suggestion")
    where = c.key if c.key != c.source else c.source
    extra = f" ({', '.join(flags)})" if flags else ""
    return f"{show_path(c.image)}  {where}  left {left:.4f} top {top:.4f} right {right:.4f} bottom {bottom:.4f}{extra}"


COMMANDS = [crops]
