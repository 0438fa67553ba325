"""Commands the editor plugins call: ``pic dtstyle`` (darktable Lua), ``pic crop-file`` (digiKam BQM) and
``pic learn-files``.

File names reach these commands through argv or through a ``--files-from`` list, never through a shell line the
plugin built (see ``pic_plugin.integrations.file_list``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

import click

from pic_plugin.core import jsontext
from pic_plugin.core.atomic import write_bytes_atomic
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Ratio
from pic_plugin.integrations import digikam_bqm as bqm
from pic_plugin.integrations.darktable_plugin import PlanOptions, PlanResult, pending_paths, plan
from pic_plugin.integrations.file_list import WorkDir, read_file_list
from pic_plugin.model import scorers

from .common import catalog_option, open_catalog, ratio_option, show_path, user_option


def _images(images: tuple[Path, ...], files_from: Path | None) -> list[Path]:
    found = list(images)
    if files_from is not None:
        try:
            found += read_file_list(files_from)
        except PicError as exc:
            raise click.UsageError(str(exc)) from exc
    if not found:
        raise click.UsageError("name at least one image (arguments or --files-from LIST)")
    return found


files_from_option = click.option(
    "--files-from",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read image paths from this file: NUL-separated (or one per line). Safe for any file name.",
)


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@files_from_option
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Work folder: styles, results.tsv and progress are written here; a file 'cancel' here stops the job.",
)
@click.option(
    "--snapshots", type=click.Path(file_okay=False, path_type=Path),
    help="Folder with snap-<N>.dtstyle (each image's history exported by darktable): plan an apply with undo.",
)
@click.option("--replace-crops", is_flag=True, help="Apply even where the user already cropped the image.")
@click.option("--write-sidecars", is_flag=True,
              help="Sidecar route (darktable 5.2+): also append the crop to each IMG.ext.xmp for image:apply_sidecar.")
@click.option("--pending", is_flag=True,
              help="The suggestions pic batch left for the plugin (photos in darktable's library): without images, "
              "list them in OUT/pending.list (NUL-separated); with images, plan applying exactly those.")
@catalog_option
@user_option
@ratio_option
@click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20), help="Crops per photo.")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per image on stdout.")
def dtstyle(
    images: tuple[Path, ...],
    files_from: Path | None,
    out_dir: Path,
    snapshots: Path | None,
    replace_crops: bool,
    write_sidecars: bool,
    pending: bool,
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    scorer: str | None,
    as_json: bool,
) -> None:
    """Write one darktable style per image that applies pic's crop (what the darktable Lua plugin imports).

    With --snapshots the styles are checked against each image's current history: an image the user already
    cropped is left alone, and an undo style that restores the previous crop is written next to each one.
    """
    if pending and not images and files_from is None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with open_catalog(catalog_path) as catalog:
                found = pending_paths(catalog)
            write_bytes_atomic(out_dir / "pending.list", b"".join(os.fsencode(p) + b"\0" for p in found))
        except OSError as exc:
            raise click.ClickException(f"cannot write {show_path(out_dir)}: {exc.strerror or exc}") from exc
        click.echo(f"{len(found)} photos wait for darktable")
        return
    paths = _images(images, files_from)
    options = PlanOptions(ratio=ratio, user=user, top_k=top_k, scorer=scorer, snapshots=snapshots,
                          replace_crops=replace_crops, write_sidecars=write_sidecars, pending=pending)

    def show(result: PlanResult) -> None:
        if as_json:
            click.echo(jsontext.dumps(result.to_json()))
        elif result.suggestion is not None:
            click.echo(f"{show_path(result.path)}: {result.status} [{', '.join(f'{v:.3f}' for v in result.suggestion.crop)}]"
                       f" score {result.suggestion.score:.2f}" + (f" ({result.message})" if result.message else ""))
        if result.status == "error":
            click.echo(f"error: {show_path(result.path)}: {result.message}", err=True)

    try:
        work = WorkDir(out_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot create {show_path(out_dir)}: {exc.strerror or exc}") from exc
    with open_catalog(catalog_path) as catalog:
        results = plan(paths, options, catalog, work, on_result=show)
    if any(r.status == "error" for r in results):
        sys.exit(1)


def _from_library_args(learn: click.Command, paths: list[str]) -> list[str]:
    """``--from-library`` as the learn command declares it: a repeatable option (one flag per path) or a flag
    followed by the paths as arguments."""
    option = next((p for p in learn.params if isinstance(p, click.Option) and "--from-library" in p.opts), None)
    if option is not None and not option.is_flag:
        return [arg for path in paths for arg in ("--from-library", path)]
    return ["--from-library", *paths]


@click.command("learn-files")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@files_from_option
@catalog_option
@click.option("--user", required=True, metavar="NAME", help="Whose crops these are.")
@click.pass_context
def learn_files(ctx: click.Context, paths: tuple[Path, ...], files_from: Path | None, catalog_path: Path | None,
                user: str) -> None:
    """Run `pic learn --user NAME --from-library PATH...` on the paths in a file list (for the editor plugins).

    The list may name images or their sidecars (`IMG.ext.xmp`, a darktable duplicate's `IMG_NN.ext.xmp`,
    `IMG.xmp`); a sidecar stands for its image, whose crops (all duplicates included) are then read."""
    from pic_plugin.library.watch.events import photos_for_sidecar

    found: list[Path] = []
    for p in _images(paths, files_from):
        images = photos_for_sidecar(p) if p.name.lower().endswith(".xmp") else [p]
        if not images:
            click.echo(f"error: {show_path(p)}: no image next to this sidecar", err=True)
        for image in images:
            absolute = Path(os.path.abspath(image))  # absolute: never mistaken for options
            if absolute not in found:
                found.append(absolute)
    if not found:
        sys.exit(1)
    root = ctx.find_root().command
    learn = root.get_command(ctx, "learn") if isinstance(root, click.Group) else None
    if learn is None:
        raise click.ClickException("this version of pic has no `learn` command yet")
    args = ["--user", user]
    if catalog_path is not None:
        args += ["--catalog", os.fspath(catalog_path)]
    args += _from_library_args(learn, [os.fspath(p) for p in found])
    learn.main(args=args, prog_name="pic learn", standalone_mode=True)


@click.command("crop-file")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--bqm-paths", type=click.File("rb"), metavar="FILE",
              help="Read INPUT and OUTPUT from FILE ('-' = stdin) as digiKam's BQM writes them into pic-bqm.sh's "
                   "here-document: two double-quoted lines (where there is no /proc; see --bqm-script-of).")
@click.option("--bqm-script-of", "bqm_script_of", type=click.IntRange(2), metavar="PID",
              help="Read INPUT and OUTPUT from the text of pic-bqm.sh as the shell PID (pic's parent: $$) runs it, "
                   "via /proc/PID/cmdline (Linux). The shell never parses them: safe for any file name.")
@click.option("--mode", type=click.Choice(["crop", "metadata"]), default="crop", show_default=True,
              help="crop: write the cropped image; metadata: copy the image and tag it pic/suggested in its sidecar.")
@click.option("--timeout", type=click.FloatRange(0, bqm.BQM_TIMEOUT), default=bqm.DEFAULT_TIMEOUT, show_default=True,
              help="Seconds for the suggestion; after that the uncropped copy is written (digiKam allows 60 s).")
@click.option("--sidecar-name", "naming", type=click.Choice(["ext", "base"]), default="ext", show_default=True,
              help="Sidecar digiKam reads: ext = IMG.jpg.xmp (default), base = IMG.xmp ('compatible' setting).")
@catalog_option
@user_option
@ratio_option
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
def crop_file(
    paths: tuple[Path, ...],
    bqm_paths: BinaryIO | None,
    bqm_script_of: int | None,
    mode: str,
    timeout: float,
    naming: str,
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    scorer: str | None,
    as_json: bool,
) -> None:
    """Write OUTPUT from INPUT for digiKam's Batch Queue Manager: pic's crop, or the copy plus a tagged sidecar.

    Usage: pic crop-file INPUT OUTPUT, or from plugins/digikam/pic-bqm.sh: pic crop-file --bqm-script-of $$
    (Linux) / --bqm-paths - (elsewhere).
    The original is never written; OUTPUT is always created, uncropped if the suggestion takes too long.
    """
    if sum((bool(paths), bqm_paths is not None, bqm_script_of is not None)) > 1:
        raise click.UsageError("give one of INPUT OUTPUT, --bqm-paths or --bqm-script-of")
    if bqm_paths is not None or bqm_script_of is not None:
        try:
            if bqm_script_of is not None:
                src, out = bqm.paths_from_script(bqm_script_of)
            else:
                assert bqm_paths is not None
                src, out = bqm.parse_bqm_paths(bqm_paths.read(1 << 20))
        except PicError as exc:
            raise click.UsageError(str(exc)) from exc
        try:
            bqm.check_substitution(src, out)
        except PicError as exc:
            raise click.ClickException(f"{show_path(src)}: {exc}") from exc
    elif len(paths) == 2:
        src, out = paths
    else:
        raise click.UsageError("give INPUT and OUTPUT (or --bqm-script-of $$ / --bqm-paths - from pic-bqm.sh)")
    try:
        with open_catalog(catalog_path) as catalog:
            result = bqm.crop_file(src, out, catalog, ratio=ratio, user=user, mode=mode,  # type: ignore[arg-type]
                                   timeout=timeout or None, naming=naming, scorer=scorer)  # type: ignore[arg-type]
    except (PicError, OSError) as exc:
        message = str(exc) if isinstance(exc, PicError) else (exc.strerror or str(exc))
        raise click.ClickException(f"{show_path(src)}: {message}") from exc
    if result.message:
        click.echo(f"pic: {show_path(src)}: {result.message}", err=True)
    if as_json:
        click.echo(jsontext.dumps(result.to_json()))
    elif result.suggestion is not None:
        crop = ", ".join(f"{v:.3f}" for v in result.suggestion.crop)
        click.echo(f"{show_path(src)}: {result.status} [{crop}] score {result.suggestion.score:.2f}")


COMMANDS = [dtstyle, crop_file, learn_files]
