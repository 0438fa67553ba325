"""``pic batch``, ``pic suggest`` and ``pic demo``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from pic_plugin.analysis.suggest import suggest as make_suggestion
from pic_plugin.core import jsontext
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Ratio, pixel_words
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.batch import run_batch
from pic_plugin.library.options import BatchOptions, parse_targets
from pic_plugin.library.pipeline import UNCROPPED_AREA, FileResult
from pic_plugin.library.scan import parse_shard
from pic_plugin.model import scorers

from .common import (
    EXIT_INTERRUPTED,
    catalog_option,
    finish_on_ctrl_c,
    note,
    open_catalog,
    ratio_option,
    show_path,
    user_option,
    verbosity,
    verbosity_options,
)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@catalog_option
@user_option
@ratio_option
@click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20), help="Crops per photo (best + alternatives).")
@click.option("--write/--no-write", default=True, show_default=True, help="Write suggestions to sidecars.")
@click.option(
    "--targets",
    default="pic,darktable",
    show_default=True,
    help="Sidecar formats to write: pic (our namespace), darktable (crop history entry), crs (Lightroom IMG.xmp).",
)
@click.option(
    "--suggest-only",
    is_flag=True,
    help="Record the suggestion without applying it: darktable gets a disabled crop entry.",
)
@click.option("--force", is_flag=True, help="Replace crops the user made themselves and apply over review decisions "
              "(never done without this); revisits every photo (implies --refresh).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), help="Also write cropped copies here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo on stdout instead of a progress bar.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: all cores).")
@click.option("--dry-run", is_flag=True, help="List what would be done; read and write nothing.")
@click.option("--shard", metavar="I/N", help="Process only the I-th of N slices of the files (for clusters).")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help=f"Scoring model (default: {scorers.DEFAULT}, the learned model with your fine-tuning; composition: the explicit baseline).")
@click.option("--refresh", is_flag=True, help="Suggest again for every photo, even unchanged ones (from cached "
              "features where the photo is the same); a crop the user made is still kept.")
@click.option("--fast", is_flag=True, help="Skip the object detector: the subject comes from pic's subject map and faces alone (about twice as fast per photo, a less reliable subject on people, animals and vehicles).")
@click.option(
    "--darktable-library", "darktable_library", metavar="PATH",
    help="darktable's library.db (read-only; default ~/.config/darktable/library.db if it exists, 'none' to ignore): "
    "photos darktable imported get pic's crop through the darktable plugin, not the sidecar.",
)
@verbosity_options
def batch(
    paths: tuple[Path, ...],
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    write: bool,
    targets: str,
    suggest_only: bool,
    force: bool,
    export_dir: Path | None,
    as_json: bool,
    jobs: int | None,
    dry_run: bool,
    shard: str | None,
    scorer: str | None,
    refresh: bool,
    fast: bool,
    darktable_library: str | None,
) -> None:
    """Suggest a crop for every photo under PATHS and write it to the sidecars.

    Photos already done and unchanged are skipped without being read. A crop you made yourself in darktable
    or Lightroom is never replaced (unless --force): it is what pic learns from.

    Ctrl-C finishes the photos in hand (their sidecars written whole), then stops with exit status 130; the
    next run goes on where this one stopped. Exit status 1: some photos failed.
    """
    if not paths:
        raise click.UsageError("name at least one folder or photo (try `pic demo DIR` for sample photos)")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise click.UsageError("not found: " + ", ".join(show_path(p) for p in missing))
    try:
        options = BatchOptions(
            user=user,
            ratio=ratio,
            top_k=top_k,
            write=write and not dry_run,
            targets=parse_targets(targets),
            mode="suggest" if suggest_only else "apply",
            force=force,
            export_dir=export_dir.resolve() if export_dir else None,
            jobs=jobs or os.cpu_count() or 1,
            dry_run=dry_run,
            shard=parse_shard(shard),
            scorer=scorer,
            refresh=refresh,
            fast=fast,
            darktable_library=_darktable_library(darktable_library),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    level = verbosity()
    with open_catalog(catalog_path) as catalog, finish_on_ctrl_c(announce=level >= 0) as stop:
        progress = _Progress(as_json, level)
        try:
            summary = run_batch(
                list(paths), options, catalog, on_start=progress.start, on_result=progress.result, stop=stop
            )
        except (PicError, ValueError) as exc:
            progress.close()
            raise click.ClickException(str(exc)) from exc
        progress.close()
    note(summary.line())  # stdout is for data (--json lines); the summary is for the person
    library_line = summary.darktable_line()
    if library_line:
        note(library_line)
    hint = None if summary.interrupted else summary.style_hint(options)
    if hint:
        note(hint)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if summary.failed:
        sys.exit(1)


def _darktable_library(value: str | None) -> Path | None:
    """--darktable-library: a path, 'none', or darktable's default library when it exists."""
    from pic_plugin.library.darktable_route import default_library

    if value is None:
        default = default_library()
        return default if default.is_file() else None
    if value.lower() == "none":
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        path = path / "library.db"
    if not path.is_file():
        raise click.UsageError(f"--darktable-library: no such file {show_path(path)}")
    return path


class _Progress:
    """A progress bar on a terminal (none with -q or -v), JSON lines with --json, one line per photo with -v;
    errors always go to stderr as they happen."""

    def __init__(self, as_json: bool, level: int = 0) -> None:
        self.as_json = as_json
        self.level = level
        self.bar = None

    def start(self, total: int) -> None:
        if not self.as_json and self.level == 0 and sys.stderr.isatty() and total:
            self.bar = click.progressbar(length=total, label="cropping", file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def result(self, result: FileResult) -> None:
        if self.as_json:
            click.echo(jsontext.dumps(result.to_json()))
        if result.status == "error":
            click.echo(f"error: {show_path(result.path)}: {result.error}", err=True)
        elif self.level > 0:
            click.echo(photo_line(result), err=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def photo_line(result: FileResult) -> str:
    """-v: what was done to one photo, and how long it took."""
    line = f"{result.status}: {show_path(result.path)}"
    s = result.suggestion
    if s is not None:
        crop = "no crop suggested" if s.crop.area >= UNCROPPED_AREA else pixel_words(s.crop, s.size)
        line += f": {crop} (score {s.score:.2f}, {s.model})"
    if result.seconds:
        line += f" in {result.seconds:.2f}s" + (" (features from the catalog)" if result.cached_features else "")
    return line


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@catalog_option
@user_option
@ratio_option
@click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20), help="Crops per photo.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo: path, crop, score, ratio, alternatives, user, model.")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model.")
@verbosity_options
def suggest(
    images: tuple[Path, ...],
    catalog_path: Path | None,
    user: str | None,
    ratio: Ratio,
    top_k: int,
    as_json: bool,
    scorer: str | None,
) -> None:
    """Suggest crops for IMAGES without writing anything next to them."""
    failed = False
    verbose = verbosity() > 0
    with open_catalog(catalog_path) as catalog:
        model = scorers.load(scorer, catalog=catalog, user=user)
        for image in images:
            t0 = time.perf_counter()
            try:
                if not image.is_file():
                    raise PicError("not a file")
                fa = analyze_with_catalog(image, catalog)
                s = make_suggestion(fa.analysis, model, ratio, top_k, user=user, path=os.fsdecode(image), user_name=user)
            except PicError as exc:
                failed = True
                click.echo(f"error: {show_path(image)}: {exc}", err=True)
                continue
            if verbose:
                cached = " (features from the catalog)" if fa.cached else ""
                click.echo(f"{show_path(image)}: {time.perf_counter() - t0:.2f}s{cached}", err=True)
            if as_json:
                click.echo(jsontext.dumps(s.to_json()))
            else:
                crops = "  ".join(f"[{', '.join(f'{v:.3f}' for v in c)}]" for c in s.crops)
                click.echo(f"{show_path(image)}: {crops}  (score {s.score:.2f}, {s.ratio}, {s.model})")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("pic-demo"))
@click.option(
    "--recap",
    is_flag=True,
    help="After pic learn and pic batch on FOLDER: say what pic learned and how its suggestions differ from the "
    "generic ones.",
)
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), help="With --recap: "
              "the contact sheet made by pic report --html, to point at.")
@catalog_option
@verbosity_options
def demo(folder: Path, recap: bool, report_dir: Path | None, catalog_path: Path | None) -> None:
    """Set up a small example library in FOLDER: free sample photos, some cropped by an example photographer.

    Ada, a fictional photographer, cropped 7 of the 14 photos to 4:5 portrait in darktable (her sidecars are
    copied with the photos). Then teach pic her style and let it crop the others, as the printed steps say
    (make demo runs them all).
    """
    from pic_plugin.library.demo import DEMO_USER, copy_demo
    from pic_plugin.library.demo import recap as make_recap

    if recap:
        if not folder.is_dir():
            raise click.UsageError(f"{show_path(folder)} is not a folder: run pic demo {show_path(folder)} first")
        with open_catalog(catalog_path) as catalog:
            _print_recap(make_recap(catalog, folder, DEMO_USER), catalog, folder, report_dir, catalog_path)
        return
    copied = copy_demo(folder)
    click.echo(
        f"{copied.photos} sample photos and {copied.sidecars} darktable sidecars copied to {show_path(folder)}"
        + (f" ({copied.skipped} already there, left as they were)" if copied.skipped else "")
        + " (sources and licences: pic_plugin/data/demo/SOURCES.md)"
    )
    if verbosity() < 0:
        return
    click.echo(
        f"{DEMO_USER}, an example photographer, cropped 7 of these photos to 4:5 portrait in darktable. Next:",
        err=True,
    )
    cat = f" --catalog {show_path(catalog_path)}" if catalog_path else ""
    for step in (
        f"pic learn --user {DEMO_USER} --from-library {show_path(folder)}{cat}   # learn her style from her crops",
        f"pic batch {show_path(folder)} --user {DEMO_USER}{cat}   # crop the other photos her way",
        f"pic review {show_path(folder)} --user {DEMO_USER}{cat}   # see the suggestions, accept or adjust them",
    ):
        click.echo(f"  {step}", err=True)


def _print_recap(recap: object, catalog: object, folder: Path, report_dir: Path | None, catalog_path: Path | None) -> None:
    from pic_plugin.library.demo import Recap

    from .model_commands import _habit

    assert isinstance(recap, Recap)
    for error in recap.errors:
        click.echo(f"error: {error}", err=True)
    habit = _habit(catalog, recap.user)
    n = len(recap.photos)
    ratios = ", ".join(f"{count} in {ratio}" for ratio, count in recap.user_ratios().most_common())
    name = recap.user.capitalize()  # the demo's photographer, Ada
    if habit:
        click.echo(f"What pic learned from {name}'s {recap.own_crops} crops: {habit}.")
    else:
        click.echo(f"pic has not learned {name}'s style yet: pic learn --user {recap.user} --from-library "
                   f"{show_path(folder)}")
    click.echo(
        f"Of the {n} photos {name} has not cropped, pic now crops {recap.user_cropped()} in her style"
        + (f" ({ratios})" if ratios else "")
        + f"; for somebody it does not know it would crop {recap.generic_cropped()} and leave "
        f"{n - recap.generic_cropped()} as they are."
    )
    cat = f" --catalog {show_path(catalog_path)}" if catalog_path else ""
    if report_dir is not None:
        click.echo(f"Look: {show_path(report_dir / 'index.html')} (each photo before and after, in a browser)")
    click.echo(f"Review and accept them: pic review {show_path(folder)} --user {recap.user}{cat}")


COMMANDS = [batch, suggest, demo]
