"""Sidecar formats: where pic writes its suggestions and where it finds the crops users made.

One module per format: ``xmp`` (hardened parsing, the document model, atomic writes), ``darktable`` (history
entries in ``IMG.ext.xmp``), ``crs`` (Lightroom/Camera Raw ``IMG.xmp``) and ``picns`` (pic's own namespace). This
module is the small API the batch pipeline and the watcher call:

* ``write_suggestion`` writes a suggestion to the requested targets and reports per target what happened. The
  ``pic`` record and the ``darktable`` entry share ``IMG.ext.xmp`` (the record is how a re-run recognises pic's
  own darktable entry, so a darktable write always records it); ``crs`` goes to ``IMG.xmp`` and is opt-in.
  A user's crop is never replaced unless ``force``; every file is replaced atomically after a concurrency check,
  and a concurrent change (an editor wrote the file meanwhile) is retried ``retries`` times.
* ``find_crops`` lists every crop pic finds for an image: darktable (main sidecar and duplicates), crs, and pic's
  own record, each in pic's displayed frame, with ``is_pic_suggestion`` telling pic's own crops from the user's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pic_plugin.core.errors import ConcurrentChangeError, SidecarError, UnsupportedSidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import displayed_size, normalize_orientation
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors import crs, darktable, picns
from pic_plugin.editors.darktable import DarktableWrite
from pic_plugin.editors.xmp import XmpDocument, parse_xmp, read_bytes, write_sidecar_atomic

log = logging.getLogger(__name__)

WRITE_TARGETS = ("pic", "darktable", "crs")

Status = Literal["written", "unchanged", "kept-user-crop", "removed", "skipped", "error"]


@dataclass
class TargetResult:
    target: str
    status: Status
    path: Path | None = None
    message: str = ""
    approximate: bool = False
    lasting: bool = False  # an error that stays until the file changes (UnsupportedSidecarError): no retry


@dataclass
class WriteReport:
    image: Path
    results: dict[str, TargetResult] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # sidecars actually (re)written
    darktable_entry: tuple[int, str] | None = None  # (num, params text) of pic's darktable entry

    @property
    def ok(self) -> bool:
        return all(r.status != "error" for r in self.results.values())

    @property
    def errors(self) -> dict[str, str]:
        return {t: r.message for t, r in self.results.items() if r.status == "error"}

    def status(self, target: str) -> Status | None:
        r = self.results.get(target)
        return None if r is None else r.status


@dataclass(frozen=True)
class FoundCrop:
    crop: Box  # pic's displayed frame
    source: Literal["darktable", "crs", "pic"]
    detail: dict[str, Any]
    approximate: bool
    is_pic_suggestion: bool  # exactly what pic itself wrote (accepted unchanged, or never touched)


# --- writing ---------------------------------------------------------------------------------------------------


def _check_target_path(image: Path, sidecar: Path) -> None:
    if os.path.abspath(sidecar) == os.path.abspath(image):
        raise SidecarError(f"{os.fsdecode(sidecar)}: the sidecar name is the image itself; refusing to write")


def _load(path: Path) -> tuple[XmpDocument, bytes | None, Any]:
    data, stamp = read_bytes(path)
    doc = parse_xmp(data, source=os.fsdecode(path)) if data is not None else XmpDocument.new()
    return doc, data, stamp


def _transact(path: Path, image: Path, edit, retries: int) -> tuple[Any, bool]:
    """Read ``path``, let ``edit(doc)`` change it, write it back atomically; retry on a concurrent change.

    ``edit`` returns (result, changed); nothing is written when it changed nothing. Returns (result, written)."""
    _check_target_path(image, path)
    attempt = 0
    while True:
        doc, data, stamp = _load(path)
        result, changed = edit(doc)
        out = doc.to_bytes()
        if not changed or out == data:
            return result, False
        try:
            write_sidecar_atomic(path, out, stamp)
            return result, True
        except ConcurrentChangeError:
            attempt += 1
            if attempt > retries:
                raise
            time.sleep(0.02 * attempt)


def _image_name(image: Path) -> str:
    return os.fsdecode(image.name).encode("utf-8", "replace").decode("utf-8")


def write_suggestion(
    image: Path,
    suggestion: Suggestion,
    orientation: int,
    *,
    targets: Iterable[str] = ("pic", "darktable"),
    mode: Literal["apply", "suggest"] = "apply",
    force: bool = False,
    retries: int = 3,
) -> WriteReport:
    """Write ``suggestion`` (crop in pic's displayed frame) for ``image`` into the sidecars of ``targets``.

    ``mode="apply"`` appends an enabled darktable crop and sets the crs crop; ``"suggest"`` records the suggestion
    and appends a *disabled* darktable crop (the crs format has no disabled crop, so crs is skipped). Per-target
    problems (a hostile or unsupported sidecar, a permission error, a concurrent change that persists) end up in
    the report with a ``SidecarError``-style message; the image file itself is never opened for writing.
    """
    image = Path(image)
    wanted = _checked_targets(targets)
    if mode not in ("apply", "suggest"):
        raise ValueError(f"mode must be 'apply' or 'suggest', not {mode!r}")
    orientation = normalize_orientation(orientation)
    report = WriteReport(image)
    crs_stored: Box | None = None

    if "crs" in wanted:
        crs_stored = _write_crs(image, suggestion, orientation, mode, force, retries, report)

    if "pic" in wanted or "darktable" in wanted:
        _write_editor_sidecar(image, suggestion, orientation, wanted, mode, force, retries, report, crs_stored)
    return report


def _write_editor_sidecar(image: Path, suggestion: Suggestion, orientation: int, wanted: tuple[str, ...], mode: str,
                          force: bool, retries: int, report: WriteReport, crs_stored: Box | None) -> None:
    """The pic record and the darktable entry, both in IMG.ext.xmp, in one read-modify-write."""
    size = tuple(suggestion.size) if suggestion.size else None
    path = darktable.sidecar_path(image)
    outcome: dict[str, Any] = {}

    def edit(doc: XmpDocument) -> tuple[DarktableWrite | None, bool]:
        outcome.clear()
        previous = picns.read_record(doc)
        dt: DarktableWrite | None = None
        dropped_own = False
        imported = _crop_darktable_imports(image, doc) if "darktable" in wanted else None
        if imported is not None:
            # darktable applies this crop itself on the first darkroom load: a crop entry as well would crop twice
            own = previous.darktable if previous else None
            dropped_own = own is not None and darktable.drop_own_entry(doc, own)
            dt = _left_to_lightroom_crop(imported, force, dropped_own)
        elif "darktable" in wanted:
            work = doc.copy()
            try:
                dt = darktable.write_crop(
                    work, suggestion.crop, orientation, mode=mode, force=force,
                    own=previous.darktable if previous else None, size=size,  # type: ignore[arg-type]
                    image_name=_image_name(image), ratio=suggestion.ratio,
                )
                doc.root, doc.prolog, doc.epilog = work.root, work.prolog, work.epilog
            except SidecarError as exc:
                outcome["darktable_error"] = _message(exc)
                outcome["darktable_lasting"] = isinstance(exc, UnsupportedSidecarError)
            if dt is not None and dt.status == "removed":  # darktable's decision: leave the file as it is
                outcome["dt"] = dt
                return dt, False
        applied = (dt is not None and dt.status in ("written", "unchanged") and dt.enabled) or crs_stored is not None
        rec = picns.PicRecord.from_suggestion(suggestion, orientation, "applied" if applied else "suggested")
        if dt is not None and dt.status in ("written", "unchanged"):
            rec.darktable = dt.own
        elif previous is not None and not dropped_own:
            rec.darktable = previous.darktable
        rec.crs = crs_stored if crs_stored is not None else (previous.crs if previous else None)
        dt_written = (dt is not None and dt.status == "written") or dropped_own
        if "pic" in wanted or dt_written:
            picns.write_record(doc, rec)
        outcome["dt"] = dt
        return dt, "pic" in wanted or dt_written

    try:
        _, written = _transact(path, image, edit, retries)
        _report_editor_sidecar(report, path, wanted, written, outcome.get("dt"), outcome.get("darktable_error"),
                               bool(outcome.get("darktable_lasting")))
    except (SidecarError, OSError) as exc:
        _report_editor_sidecar_error(report, path, wanted, exc)


@dataclass(frozen=True)
class ImportedCrop:
    """A crs crop in Lightroom's ``IMG.xmp`` that darktable imports on the photo's first darkroom load."""

    path: Path
    crop: crs.CrsCrop
    is_pic_own: bool  # the crs crop pic wrote (pic:CrsCrop), not the user's


def _crop_darktable_imports(image: Path, doc: XmpDocument) -> ImportedCrop | None:
    """The crop darktable will take from ``IMG.xmp`` for ``image`` (darktable sidecar ``doc``), if any.

    darktable reads ``IMG.xmp`` (or ``IMG.XMP``) whenever it loads a photo in the darkroom for the first time
    (auto-presets not applied yet, FORMATS.md 4.2) and appends its crop as a ``clipping`` entry after the history
    it has: pic's crop entry would then crop the Lightroom crop a second time. Once darktable has loaded the photo
    (``auto_presets_applied="1"``) it never reads ``IMG.xmp`` again, and an imported crop is a history entry that
    ``write_crop`` already keeps."""
    if (doc.get(darktable.NS_DT, "auto_presets_applied") or "").strip() == "1":
        return None
    return lightroom_crop(image)


def lightroom_crop(image: Path) -> ImportedCrop | None:
    """The crop to apply in ``image``'s Lightroom sidecar ``IMG.xmp`` (``crs:HasCrop=True``, not the whole frame,
    not already applied), which darktable imports on the photo's first darkroom load; None without one."""
    path = crs.sidecar_path(image)
    if path == darktable.sidecar_path(image) or not path.exists():
        return None
    lr = _read_doc(path)
    if lr is None:
        return None
    try:
        c = crs.read_crs(lr, 1)  # only whether there is a crop matters here, not its frame
    except SidecarError as exc:
        log.warning("%s: %s", os.fsdecode(path), exc)
        return None
    if c is None or not c.is_crop_to_apply:
        return None
    return ImportedCrop(path, c, _is_pics_crs_crop(lr, c))


def _left_to_lightroom_crop(imported: ImportedCrop, force: bool, dropped_own: bool) -> DarktableWrite:
    """The darktable result for a photo whose crop darktable will import from ``IMG.xmp``: no crop entry."""
    name = os.fsdecode(imported.path.name)
    c = imported.crop
    edges = f"L {c.corners.left:g} T {c.corners.top:g} R {c.corners.right:g} B {c.corners.bottom:g}"
    if c.angle:
        edges += f", angle {c.angle:g}"
    notes = []
    if imported.is_pic_own:
        notes.append(f"darktable imports pic's crs crop from {name} on the photo's first darkroom load: no darktable "
                     "crop entry (it would crop twice)")
        status: Literal["kept-user-crop", "skipped"] = "skipped"
    else:
        notes.append(f"your Lightroom crop in {name} (crs:HasCrop=True, {edges}) is kept: darktable applies it on the "
                     "photo's first darkroom load, so pic adds no darktable crop (it would crop twice)")
        if force:
            notes.append("--force does not replace it from darktable's side: add --targets crs to replace the "
                         "Lightroom crop itself")
        status = "kept-user-crop"
    if dropped_own:
        notes.append("pic's earlier darktable crop entry was taken out")
    return DarktableWrite(status, notes=notes)


def _checked_targets(targets: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(targets))
    unknown = [t for t in wanted if t not in WRITE_TARGETS]
    if unknown:
        raise ValueError(f"unknown sidecar targets {unknown}; choose from {WRITE_TARGETS}")
    return wanted


def _report_editor_sidecar(report: WriteReport, path: Path, wanted: tuple[str, ...], written: bool,
                           dt: DarktableWrite | None, darktable_error: str | None = None,
                           lasting: bool = False) -> None:
    """The results of one read-modify-write of ``IMG.ext.xmp`` (pic record + darktable entry), into ``report``."""
    if written:
        report.files.append(path)
    if "pic" in wanted:
        report.results["pic"] = TargetResult("pic", "written" if written else "unchanged", path)
    if "darktable" in wanted:
        if dt is None:
            report.results["darktable"] = TargetResult("darktable", "error", path, darktable_error or "not written",
                                                       lasting=lasting)
        else:
            report.results["darktable"] = TargetResult(
                "darktable", dt.status, path, "; ".join(dt.notes), dt.approximate)
            if dt.status in ("written", "unchanged") and dt.num is not None and dt.params_text is not None:
                report.darktable_entry = (dt.num, dt.params_text)


def _report_editor_sidecar_error(report: WriteReport, path: Path, wanted: tuple[str, ...], exc: Exception) -> None:
    for t in ("pic", "darktable"):
        if t in wanted:
            report.results[t] = TargetResult(t, "error", path, _message(exc),
                                             lasting=isinstance(exc, UnsupportedSidecarError))


def _write_crs(image: Path, suggestion: Suggestion, orientation: int, mode: str, force: bool, retries: int,
               report: WriteReport) -> Box | None:
    """The crs target (Lightroom's IMG.xmp); returns the stored-frame crop now in it, if it is pic's."""
    path = crs.sidecar_path(image)
    if mode == "suggest":
        report.results["crs"] = TargetResult("crs", "skipped", path, "crs has no disabled crop: suggest-only "
                                             "does not write it")
        return None
    size = tuple(suggestion.size) if suggestion.size else None

    def edit(doc: XmpDocument) -> tuple[crs.CrsWrite, bool]:
        res = crs.write_crs(doc, suggestion.crop, orientation, size=size, force=force)  # type: ignore[arg-type]
        return res, res.status == "written"

    try:
        if path == darktable.sidecar_path(image):
            raise SidecarError(f"{os.fsdecode(path)}: image without extension, the Lightroom and darktable "
                               "sidecar names coincide")
        res, written = _transact(path, image, edit, retries)
    except (SidecarError, OSError) as exc:
        report.results["crs"] = TargetResult("crs", "error", path, _message(exc),
                                             lasting=isinstance(exc, UnsupportedSidecarError))
        return None
    status: Status = "unchanged" if res.status == "written" and not written else res.status
    report.results["crs"] = TargetResult("crs", status, path, "; ".join(res.notes))
    if written:
        report.files.append(path)
    return res.stored if res.status in ("written", "unchanged") else None


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConcurrentChangeError):
        return f"{exc} (gave up after retries)"
    if isinstance(exc, OSError):
        name = os.fsdecode(exc.filename) if exc.filename is not None else "sidecar"
        return f"{name}: {exc.strerror or exc}"
    return str(exc)


# --- finding crops ---------------------------------------------------------------------------------------------


def _displayed_size(image: Path, orientation: int) -> tuple[int, int] | None:
    """The image's displayed size from its header (Pillow reads only the header), None if it cannot tell."""
    try:
        from PIL import Image

        with Image.open(image) as im:
            return displayed_size(im.size, orientation)
    except Exception:  # RAW files, missing or odd images: the size is only a refinement for rotated crops
        return None


def _read_doc(path: Path) -> XmpDocument | None:
    try:
        data, _ = read_bytes(path)
        return None if data is None else parse_xmp(data, source=os.fsdecode(path))
    except SidecarError as exc:
        log.warning("skipping sidecar: %s", exc)
        return None


def find_crops(image: Path, orientation: int) -> list[FoundCrop]:
    """Every crop pic finds for ``image`` in its sidecars, in pic's displayed frame (EXIF ``orientation``).

    darktable: the effective, enabled, non-full-frame crop of ``IMG.ext.xmp`` and of each duplicate
    ``IMG_NN.ext.xmp``. crs: a crop to apply in ``IMG.xmp`` or inside the darktable sidecar (HasCrop=False and
    AlreadyApplied=True are left out: stale values / crops already baked into the pixels). pic: pic's own record
    (``is_pic_suggestion`` is always true for it). Unreadable sidecars are logged and skipped.
    """
    image = Path(image)
    orientation = normalize_orientation(orientation)
    size = _displayed_size(image, orientation)
    found: list[FoundCrop] = []
    pic_found: list[FoundCrop] = []
    dt_paths = darktable.duplicate_sidecars(image)
    crs_path = crs.sidecar_path(image)
    for dup, path in dt_paths:
        doc = _read_doc(path)
        if doc is None:
            continue
        try:
            rec = picns.read_record(doc)
        except SidecarError as exc:
            log.warning("%s: ignoring pic record: %s", os.fsdecode(path), exc)
            rec = None
        try:
            c = darktable.read_crop(doc, orientation, size)
        except SidecarError as exc:
            log.warning("%s: %s", os.fsdecode(path), exc)
            c = None
        if c is not None and c.enabled and not c.is_full_frame:
            own = rec.darktable if rec is not None else None
            mine = own is not None and c.module != "clipping" and _same_params(own.params_text, c.params)
            detail = {**c.detail(), "sidecar": os.fsdecode(path), "duplicate": dup}
            found.append(FoundCrop(c.crop, "darktable", detail, c.approximate, mine))
        if path != crs_path:
            found.extend(_crs_found(doc, path, orientation))
        if rec is not None and dup == 0 and doc.get(picns.NS_PIC, "Crop") is not None:
            detail = {
                "score": rec.score, "ratio": rec.ratio, "model": rec.model, "user": rec.user,
                "created": rec.created, "state": rec.state, "size": list(rec.size) if rec.size else None,
                "alternatives": [{"crop": b.as_list(), "score": s} for b, s in rec.alternatives],
                "sidecar": os.fsdecode(path),
            }
            pic_found.append(FoundCrop(rec.crop, "pic", detail, False, True))
    if crs_path.exists():
        doc = _read_doc(crs_path)
        if doc is not None:
            found.extend(_crs_found(doc, crs_path, orientation))
    return found + pic_found


def _same_params(text: str, params: bytes) -> bool:
    try:
        return darktable.decode_params(text) == params
    except SidecarError:
        return False


def _crs_found(doc: XmpDocument, path: Path, orientation: int) -> list[FoundCrop]:
    try:
        c = crs.read_crs(doc, orientation)
    except SidecarError as exc:
        log.warning("%s: %s", os.fsdecode(path), exc)
        return []
    if c is None or not c.is_crop_to_apply:
        return []
    detail = {**c.detail(), "sidecar": os.fsdecode(path)}
    approximate = c.approximate
    if c.orientation != orientation:
        detail["notes"].append(f"tiff:Orientation {c.orientation} differs from the EXIF orientation {orientation}: "
                               "the crop is given by content in pic's frame")
    return [FoundCrop(c.in_frame(orientation), "crs", detail, approximate, _is_pics_crs_crop(doc, c))]


def _is_pics_crs_crop(doc: XmpDocument, c: crs.CrsCrop) -> bool:
    """Whether the crs crop is the one pic wrote (its own record keeps a copy in ``pic:CrsCrop``)."""
    own_text = doc.get(picns.NS_PIC, "CrsCrop")
    if own_text is None:
        return False
    try:
        own = picns.parse_box(own_text)
    except SidecarError:
        return False
    return c.angle == 0.0 and all(abs(a - b) <= 1e-9 for a, b in zip(c.corners, own, strict=True))
