"""Writing a crop the *user* chose (accepted or adjusted on the review page) into the sidecars.

``write_suggestion`` writes pic's crop and records it as pic's own, so that a later ``pic batch`` may replace it
with a better suggestion. A crop the user accepted or adjusted must never be replaced that way: it is the user's
edit and training data. ``write_user_crop`` therefore writes the same darktable entry / crs crop through the same
writers, but does **not** record it as pic's:

* darktable (``IMG.ext.xmp``): an *enabled* ``crop`` history entry (pic's own previous entry is replaced when it
  is the last one, as ``write_suggestion`` does); pic's record in the same file keeps its suggestion but drops its
  claim on any darktable entry (``pic:Darktable*``) and gets ``pic:State="accepted"``. ``find_crops`` then
  reports the entry with ``is_pic_suggestion=False`` and later ``pic batch`` runs keep it ("kept-user-crop").
* crs (``IMG.xmp``): the crop is set and pic's ``pic:CrsCrop`` marker is removed, for the same reason.
* pic: with no darktable target, only the record's state changes; no record is created for a crop the user made.
* A Lightroom crop in ``IMG.xmp`` that darktable imports on the photo's first darkroom load (the batch's rule,
  ``sidecars._crop_darktable_imports``): no darktable entry is added (darktable would crop twice) and pic's own
  earlier entry is taken out; darktable's result is ``skipped`` with the reason, pic's record is still marked
  ``accepted``, and the review page records the decision in the catalog as usual.

A crop the user made in another program is replaced only with ``force`` (the review page asks first).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.orientation import normalize_orientation
from pic_plugin.editors import crs, darktable, picns
from pic_plugin.editors.darktable import DarktableWrite
from pic_plugin.editors.sidecars import (
    ImportedCrop,
    TargetResult,
    WriteReport,
    _checked_targets,
    _crop_darktable_imports,
    _image_name,
    _message,
    _report_editor_sidecar,
    _report_editor_sidecar_error,
    _transact,
)
from pic_plugin.editors.xmp import XmpDocument

#: ``pic:State`` of a record whose crop the user took over.
STATE_ACCEPTED = "accepted"


def write_user_crop(
    image: Path,
    crop: Box,
    orientation: int,
    *,
    targets: Iterable[str] = ("pic", "darktable"),
    size: tuple[int, int] | None = None,
    force: bool = False,
    retries: int = 3,
) -> WriteReport:
    """Write ``crop`` (pic's displayed frame; ``size`` = displayed pixels) as the user's own crop of ``image``."""
    image = Path(image)
    wanted = _checked_targets(targets)
    if not crop.is_valid():
        raise ValueError(f"invalid crop {tuple(crop)}")
    orientation = normalize_orientation(orientation)
    report = WriteReport(image)

    if "crs" in wanted:
        path = crs.sidecar_path(image)
        try:
            if path == darktable.sidecar_path(image):
                raise SidecarError(f"{path}: image without extension, the Lightroom and darktable sidecar names "
                                   "coincide")

            def edit_crs(doc: XmpDocument) -> tuple[crs.CrsWrite, bool]:
                res = crs.write_crs(doc, crop, orientation, size=size, force=force)
                unmarked = _drop_crs_marker(doc) if res.status != "kept-user-crop" else False
                return res, res.status == "written" or unmarked

            res, written = _transact(path, image, edit_crs, retries)
            status = "kept-user-crop" if res.status == "kept-user-crop" else ("written" if written else "unchanged")
            report.results["crs"] = TargetResult("crs", status, path, "; ".join(res.notes))  # type: ignore[arg-type]
            if written:
                report.files.append(path)
        except (SidecarError, OSError) as exc:
            report.results["crs"] = TargetResult("crs", "error", path, _message(exc))

    if "pic" in wanted or "darktable" in wanted:
        path = darktable.sidecar_path(image)
        outcome: dict[str, Any] = {}

        def edit(doc: XmpDocument) -> tuple[DarktableWrite | None, bool]:
            outcome.clear()
            record = picns.read_record(doc)
            dt: DarktableWrite | None = None
            changed = False
            imported = _crop_darktable_imports(image, doc) if "darktable" in wanted else None
            if imported is not None:
                # darktable applies the Lightroom crop itself on the first darkroom load: an entry would crop twice
                own = record.darktable if record is not None else None
                changed = own is not None and darktable.drop_own_entry(doc, own)
                dt = _left_to_lightroom_crop(imported, crs_written="crs" in report.results and
                                             report.results["crs"].status in ("written", "unchanged"),
                                             dropped_own=changed)
            elif "darktable" in wanted:
                dt = darktable.write_crop(
                    doc, crop, orientation, mode="apply", force=force,
                    own=record.darktable if record is not None else None, size=size, image_name=_image_name(image),
                )
                changed = dt.status == "written"
            if record is not None and (dt is None or dt.status != "kept-user-crop"):
                # pic gives up its claim: the entry now in the history is the user's crop.
                record.darktable = None
                if "crs" in wanted:
                    record.crs = None
                record.state = STATE_ACCEPTED
                picns.write_record(doc, record)
                changed = True
            outcome["dt"] = dt
            return dt, changed

        try:
            _, written = _transact(path, image, edit, retries)
            # write_crop raises rather than returning None, so a wanted darktable target always has an outcome
            _report_editor_sidecar(report, path, wanted, written, outcome.get("dt"))
        except (SidecarError, OSError) as exc:
            _report_editor_sidecar_error(report, path, wanted, exc)
    return report


def _left_to_lightroom_crop(imported: ImportedCrop, crs_written: bool, dropped_own: bool) -> DarktableWrite:
    """darktable's result when it will import the crop of ``IMG.xmp``: no entry, and why (for the review page)."""
    name = imported.path.name
    if crs_written:
        notes = [f"darktable takes this crop from {name} on the photo's first darkroom load: no darktable crop "
                 "entry (it would crop twice)"]
    else:
        notes = [f"not written: your Lightroom crop in {name} stays, and darktable applies it on the photo's first "
                 "darkroom load, so a darktable crop entry would crop twice; your choice is recorded in pic's "
                 "catalog (add the crs target to write it into the Lightroom sidecar)"]
    if dropped_own:
        notes.append("pic's earlier darktable crop entry was taken out")
    return DarktableWrite("skipped", notes=notes)


def _drop_crs_marker(doc: XmpDocument) -> bool:
    """Remove pic's claim on the crs crop of a Lightroom sidecar; True if there was one."""
    if doc.get(picns.NS_PIC, "CrsCrop") is None:
        return False
    doc.remove(picns.NS_PIC, "CrsCrop")
    if picns.read_record(doc) is None:
        doc.remove(picns.NS_PIC, "Version")  # only the marker's version was left
    return True
