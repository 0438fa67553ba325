"""``pic batch``, ``pic suggest`` and ``pic demo``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import click

from pic_plugin.analysis.suggest import suggest as make_suggestion
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Ratio
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.batch import run_batch
from pic_plugin.library.options import BatchOptions, parse_targets
from pic_plugin.library.pipeline import FileResult
from pic_plugin.library.scan import parse_shard
from pic_plugin.model import scorers

from .common import catalog_option, open_catalog, ratio_option, show_path, user_option


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
@click.option("--force", is_flag=True, help="Replace crops the user made themselves (never done without this).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), help="Also write cropped copies here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo on stdout instead of a progress bar.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: all cores).")
@click.option("--dry-run", is_flag=True, help="List what would be done; read and write nothing.")
@click.option("--shard", metavar="I/N", help="Process only the I-th of N slices of the files (for clusters).")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help=f"Scoring model (default: {scorers.DEFAULT}, the learned model with your fine-tuning; composition: the explicit baseline).")
@click.option("--refresh", is_flag=True, help="Redo photos even when nothing changed since the last run.")
@click.option(
    "--darktable-library", "darktable_library", metavar="PATH",
    help="darktable's library.db (read-only; default ~/.config/darktable/library.db if it exists, 'none' to ignore): "
    "photos darktable imported get pic's crop through the darktable plugin, not the sidecar.",
)
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
    darktable_library: str | None,
) -> None:
    """Suggest a crop for every photo under PATHS and write it to the sidecars.

    Photos already done and unchanged are skipped without being read. A crop you made yourself in darktable
    or Lightroom is never replaced (unless --force): it is what pic learns from.
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
            darktable_library=_darktable_library(darktable_library),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    with open_catalog(catalog_path) as catalog:
        progress = _Progress(as_json)
        try:
            summary = run_batch(
                list(paths), options, catalog, on_start=progress.start, on_result=progress.result
            )
        except (PicError, ValueError) as exc:
            progress.close()
            raise click.ClickException(str(exc)) from exc
        progress.close()
    click.echo(summary.line(), err=as_json)
    library_line = summary.darktable_line()
    if library_line:
        click.echo(library_line, err=as_json)
    hint = summary.style_hint(options)
    if hint:
        click.echo(hint, err=True)
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
    """A progress bar on a terminal, JSON lines with --json; errors always go to stderr as they happen."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar = None

    def start(self, total: int) -> None:
        if not self.as_json and sys.stderr.isatty() and total:
            self.bar = click.progressbar(length=total, label="cropping", file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def result(self, result: FileResult) -> None:
        if self.as_json:
            click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        if result.status == "error":
            click.echo(f"error: {show_path(result.path)}: {result.error}", err=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@catalog_option
@user_option
@ratio_option
@click.option("--top", "top_k", default=3, show_default=True, type=click.IntRange(1, 20), help="Crops per photo.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per photo (DESIGN.md section 3).")
@click.option("--scorer", type=click.Choice(scorers.names()), default=None, help="Scoring model.")
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
    with open_catalog(catalog_path) as catalog:
        model = scorers.load(scorer, catalog=catalog, user=user)
        for image in images:
            try:
                if not image.is_file():
                    raise PicError("not a file")
                fa = analyze_with_catalog(image, catalog)
                s = make_suggestion(fa.analysis, model, ratio, top_k, user=user, path=os.fsdecode(image), user_name=user)
            except PicError as exc:
                failed = True
                click.echo(f"error: {show_path(image)}: {exc}", err=True)
                continue
            if as_json:
                click.echo(json.dumps(s.to_json(), ensure_ascii=False))
            else:
                crops = "  ".join(f"[{', '.join(f'{v:.3f}' for v in c)}]" for c in s.crops)
                click.echo(f"{show_path(image)}: {crops}  (score {s.score:.2f}, {s.ratio}, {s.model})")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("pic-demo"))
def demo(folder: Path) -> None:
    """Copy a few free sample photos (Kodak, scikit-image) into FOLDER to try pic on."""
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("pic_plugin") / "data" / "demo"
    copied = 0
    for item in source.iterdir():
        if item.name.lower().endswith(".jpg"):
            target = folder / item.name
            if not target.exists():
                with resources.as_file(item) as src:
                    shutil.copyfile(src, target)
                copied += 1
    click.echo(f"{copied} sample photos copied to {folder} (sources and licences: pic_plugin/data/demo/SOURCES.md)")


COMMANDS = [batch, suggest, demo]
