"""What the darktable Lua plugin asks pic for: per image a suggestion, the style that applies it and the style
that undoes it.

The plugin applies pic's crop as a one-item style, which darktable appends to the history (nothing of the user's
edit is replaced). Before applying, the plugin exports the image's current history as a style ("snapshot"); from
it pic learns

* whether the image already has a crop the user made: then nothing is applied (that crop is what pic learns
  from) unless ``replace_crops``; a crop pic applied earlier (recorded in the catalog) may be replaced;
* the crop frame: darktable crops after its ``flip`` module, so an image the user rotated in darktable gets its
  crop mapped into the rotated frame; modules that reshape the frame before ``crop`` (ashift, clipping,
  enlargecanvas, ...) make the crop land elsewhere, so such images are skipped with a message;
* the undo style: the crop item that was in effect (copied verbatim) or, if there was none, a disabled
  full-frame crop. Applying it restores the previous picture and again only appends to the history.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.errors import PicError, SidecarError
from pic_plugin.core.geometry import FULL_FRAME, Box, is_full_frame, parse_ratio
from pic_plugin.core.suggestion import Alternative, Suggestion
from pic_plugin.editors.darktable import CropParams, HistoryEntry, decode_params, displayed_to_frame, frame_orientation
from pic_plugin.editors.darktable.frames import frame_size
from pic_plugin.editors.darktable.styles import Style, StyleItem, crop_item, make_style, read_style, write_style
from pic_plugin.editors.sidecars import write_suggestion
from pic_plugin.integrations.file_list import WorkDir
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.darktable_route import pic_params
from pic_plugin.library.options import SuggestOptions
from pic_plugin.library.scan import file_signature
from pic_plugin.model import scorers

#: Modules before ``crop`` in the pipe that change the frame the crop is relative to (FORMATS.md 1.6.3).
FRAME_CHANGING = ("ashift", "clipping", "enlargecanvas", "rotatepixels", "scalepixels", "liquify")
#: Modules that move content a little but keep the frame: the crop is applied, flagged approximate.
CONTENT_SHIFTING = ("lens",)
FULL_FRAME_EPS = 1e-4
#: Style names as darktable shows them (and tags the image ``darktable|style|pic crop``). Fixed, not unique: the
#: plugin imports, applies and deletes one style at a time, so a constant name keeps the user's tag list clean.
STYLE_NAME = "pic crop"
UNDO_STYLE_NAME = "pic crop undo"
STYLE_DESCRIPTION_PREFIX = "pic:"


@dataclass
class PlanResult:
    """What pic decided for one image of the list (``index`` is 1-based, as in the Lua plugin)."""

    index: int
    path: Path
    status: str  # suggested | ready | kept-user-crop | skipped | error | cancelled
    suggestion: Suggestion | None = None
    style: tuple[str, Path] | None = None  # (style name, file) that applies the crop
    undo: tuple[str, Path] | None = None  # (style name, file) that restores the crop state before
    message: str = ""
    params: str = ""  # darktable params text of the applied crop
    sidecar: Path | None = None  # the darktable sidecar pic appended the crop to (sidecar route)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "path": os.fsdecode(self.path), "status": self.status}
        if self.suggestion is not None:
            out.update(self.suggestion.to_json())
            out["path"] = os.fsdecode(self.path)
        if self.style:
            out["style"] = {"name": self.style[0], "file": str(self.style[1])}
        if self.undo:
            out["undo_style"] = {"name": self.undo[0], "file": str(self.undo[1])}
        if self.params:
            out["darktable_params"] = self.params
        if self.message:
            out["message"] = self.message
        return out

    def row(self) -> list[object]:
        """The results.tsv line the Lua plugin reads (see ``plugins/darktable/pic.lua``, ``read_results``)."""
        s = self.suggestion
        crop = " ".join(f"{v:.6f}" for v in s.crop) if s else ""
        return [
            self.index,
            self.status,
            crop,
            f"{s.score:.4f}" if s else "",
            s.ratio if s else "",
            self.style[0] if self.style else "",
            self.style[1] if self.style else "",
            self.undo[0] if self.undo else "",
            self.undo[1] if self.undo else "",
            self.message,
        ]


def snapshot_name(index: int) -> str:
    """File name the Lua plugin gives the exported history snapshot of image ``index``."""
    return f"snap-{index}.dtstyle"


def _is_full(box: Box) -> bool:
    return is_full_frame(box, FULL_FRAME_EPS)


def _crop_box(item: StyleItem) -> Box | None:
    try:
        return CropParams.decode(item.modversion, decode_params(item.op_params)).box
    except PicError:
        return None


def _history_entry(item: StyleItem) -> HistoryEntry:
    """A style item as the sidecar module's history entry (what its frame helpers take)."""
    try:
        params = decode_params(item.op_params)
    except PicError:
        params = None
    return HistoryEntry(index=item.num, num=item.num, operation=item.operation, enabled=item.enabled,
                        modversion=item.modversion, params_text=item.op_params, multi_priority=item.multi_priority,
                        multi_name=item.multi_name, item=None, params=params)  # type: ignore[arg-type]


def crop_frame(snapshot: Style | None, exif_orientation: int) -> int:
    """EXIF number of darktable's crop frame (relative to the stored raster) for this history."""
    flip = snapshot.effective("flip") if snapshot else None
    return frame_orientation(_history_entry(flip) if flip else None, exif_orientation)[0]


@dataclass
class PlanOptions(SuggestOptions):
    snapshots: Path | None = None  # folder with snap-<index>.dtstyle: plan an apply (else only suggest)
    replace_crops: bool = False
    write_sidecars: bool = False  # sidecar route (darktable 5.2+ ``image:apply_sidecar``): append to IMG.ext.xmp
    pending: bool = False  # apply the suggestions ``pic batch`` left for the plugin (library route), not new ones


def pending_paths(catalog: Catalog) -> list[Path]:
    """Photos whose suggestion waits for the plugin (``pic batch`` found them in darktable's library)."""
    return [Path(p) for p in dict.fromkeys(path for path, _ in catalog.pending_darktable())]


def _pending_suggestion(catalog: Catalog, path: Path) -> tuple[dict[str, Any], Suggestion] | None:
    """The suggestion ``pic batch`` left pending for ``path``, as it computed it (same crop, ratio and user)."""
    record = catalog.image(path)
    if record is None or not record.width or not record.height:
        return None
    for row in catalog.suggestions_for_image(record.id):
        if (row.get("written") or {}).get("darktable_library") == "pending":
            s = Suggestion(
                path=os.fsdecode(path), crop=row["crop"], score=float(row["score"]), ratio=row["ratio"],
                size=(record.width, record.height), model=row["model"], user=row["user"] or None,
                alternatives=[Alternative(Box(*a["crop"]), float(a["score"])) for a in row["alternatives"]],
            )
            return row, s
    return None


def plan(
    images: list[Path],
    options: PlanOptions,
    catalog: Catalog,
    work: WorkDir,
    on_result: Callable[[PlanResult], None] | None = None,
) -> list[PlanResult]:
    """Suggest for every image and write its styles into ``work``; one result per image, in list order."""
    model = scorers.load(options.scorer, catalog=catalog, user=options.user)
    results: list[PlanResult] = []
    total = len(images)
    work.progress(0, total)
    for index, path in enumerate(images, start=1):
        if work.cancelled():
            result = PlanResult(index, path, "cancelled", message="cancelled")
        else:
            try:
                result = _plan_one(index, path, options, catalog, model, work)
            except PicError as exc:
                result = PlanResult(index, path, "error", message=str(exc))
            except OSError as exc:
                result = PlanResult(index, path, "error", message=exc.strerror or str(exc))
        results.append(result)
        work.add_row(result.row())
        work.progress(index, total)
        if on_result is not None:
            on_result(result)
    work.finish()
    return results


def _plan_one(
    index: int, path: Path, options: PlanOptions, catalog: Catalog, model: Any, work: WorkDir
) -> PlanResult:
    if not path.is_file():
        raise PicError("not a file")
    pending_row = None
    if options.pending:
        found = _pending_suggestion(catalog, path)
        if found is None:
            return PlanResult(index, path, "skipped", message="no suggestion waits for darktable (run pic batch)")
        pending_row, s = found
        options = replace(options, user=s.user, ratio=parse_ratio(s.ratio))
    fa = analyze_with_catalog(path, catalog)
    if pending_row is None:
        s = suggest(fa.analysis, model, options.ratio, options.top_k, user=options.user, path=os.fsdecode(path),
                    user_name=options.user)
    snapshot = None
    if options.snapshots is not None:
        snap_file = options.snapshots / snapshot_name(index)
        if snap_file.exists():
            snapshot = read_style(snap_file)
    result = PlanResult(index, path, "suggested", suggestion=s)

    if snapshot is not None:
        blocking = sorted(op for op in FRAME_CHANGING if (it := snapshot.effective(op)) is not None and it.enabled)
        if blocking:
            result.status = "skipped"
            result.message = f"{', '.join(blocking)} changes the frame before crop; crop by hand or disable it"
            return result
        if any((it := snapshot.effective(op)) is not None and it.enabled for op in CONTENT_SHIFTING):
            result.message = "lens correction is on: the crop may be off by a few pixels"

    frame_o = crop_frame(snapshot, fa.orientation)
    frame_box = displayed_to_frame(s.crop, frame_o, fa.orientation)
    item = crop_item(frame_box, ratio=s.ratio, frame=frame_size(tuple(s.size), frame_o, fa.orientation))
    result.params = item.op_params
    name = STYLE_NAME
    style_file = work.file(f"apply-{index}.dtstyle")
    write_style(style_file, make_style(name, _describe(s), [item]))
    result.style = (name, style_file)

    if options.snapshots is not None:
        existing = snapshot.effective("crop") if snapshot else None
        if existing is not None and existing.enabled and existing.op_params != item.op_params:
            box = _crop_box(existing)
            try:
                mine = decode_params(existing.op_params) in pic_params(catalog, path)
            except SidecarError:  # params darktable cannot have written are not pic's either
                mine = False
            if box is not None and not _is_full(box) and not mine and not options.replace_crops:
                result.status = "kept-user-crop"
                result.message = "already cropped by you (pic learns from that crop; apply anyway: replace crops)"
                result.style = None
                if pending_row is not None:  # the user decided: nothing waits any more
                    catalog.set_suggestion_written(
                        pending_row["id"], {**pending_row["written"], "darktable_library": "kept-user-crop"})
                return result
        undo_item = existing if existing is not None else crop_item(FULL_FRAME, enabled=False)
        undo_name = UNDO_STYLE_NAME
        undo_file = work.file(f"undo-{index}.dtstyle")
        write_style(undo_file, make_style(undo_name, f"{STYLE_DESCRIPTION_PREFIX} the crop before pic's suggestion",
                                           [undo_item]))
        result.undo = (undo_name, undo_file)
        result.status = "ready"
        if options.write_sidecars:
            _append_to_sidecar(path, s, fa.orientation, result)
    _record(catalog, path, fa, s, options, result)
    return result


def _append_to_sidecar(path: Path, s: Suggestion, orientation: int, result: PlanResult) -> None:
    """Sidecar route: append pic's crop to the sidecar darktable just wrote; the plugin then reloads it.

    The user-crop check was made on the snapshot already (the sidecar module would take pic's earlier style
    crop for the user's), hence ``force``.
    """
    report = write_suggestion(path, s, orientation, targets=("pic", "darktable"), mode="apply", force=True)
    dt = report.results.get("darktable")
    if dt is None or dt.status not in ("written", "unchanged"):
        result.status = "error"
        result.message = f"sidecar not written: {dt.message if dt else 'no result'}"
        return
    result.sidecar = dt.path


def _describe(s: Suggestion) -> str:
    return f"{STYLE_DESCRIPTION_PREFIX} crop suggestion ({s.ratio}, score {s.score:.2f}, {s.model})"


def _record(catalog: Catalog, path: Path, fa: Any, s: Suggestion, options: PlanOptions, result: PlanResult) -> None:
    """Remember the suggestion, and for an apply the exact params, so a later run recognises pic's own crop."""
    size, mtime = file_signature(path)
    image_id = catalog.upsert_image(
        path, file_size=size, mtime_ns=mtime, content_key=fa.content_key, width=s.size[0], height=s.size[1],
        orientation=fa.orientation, format=fa.format, error=None,
    )
    written: dict[str, Any] = {"targets": ["darktable-style"] if result.status == "ready" else [], "mode": "plugin"}
    if result.status == "ready":
        written["darktable_style"] = result.params
        if options.pending:
            written["darktable_library"] = "applied"
    else:  # a later suggest-only run must not forget what an earlier apply wrote
        before = catalog.suggestion(image_id, options.user, options.ratio.name)
        if before and (before.get("written") or {}).get("darktable_style"):
            written["darktable_style"] = before["written"]["darktable_style"]
    catalog.save_suggestion(
        image_id, options.user, options.ratio.name, s.model, s.crop, s.score,
        [{"crop": a.crop.as_list(), "score": a.score} for a in s.alternatives], options.top_k, written=written,
        subject=s.subject, subject_kind=s.subject_kind,
    )
