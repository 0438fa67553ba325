"""What a review does, without the web server: list photos with their suggestions, and record decisions.

A ``ReviewSession`` is a fixed, ordered list of catalog images (one ``pic review`` run) and one user. Decisions
(DESIGN section 1: accept, tweak or ignore; never a silent change; undo):

* **accept** (the suggestion or one of its alternatives, unchanged) and **adjust** (a crop the user dragged)
  write the crop as the *user's own* crop: into the sidecars through ``pic_plugin.editors.user_crop``
  (a darktable entry pic does not claim, so later ``pic batch`` runs keep it), suggestion status
  ``accepted``/``adjusted``, and a ``user_crops`` row (source ``review``, weight 0.5 for an accepted suggestion,
  1.0 for an adjusted crop) that fine-tuning learns from.
* **reject**: suggestion status ``rejected`` and a ``user_crops`` row with **weight 0** holding the rejected crop
  and ``detail.decision = "rejected"`` (training must only learn positives from weight > 0; a weight-0 row is a
  negative example). If ``pic batch`` had *applied* pic's crop in darktable, the entry is turned into a disabled
  suggestion (``write_suggestion(mode="suggest")``), so a rejected crop is no longer rendered.
* **undo** pops the last decision: sidecars get their previous bytes back (atomically, and only when a file
  still holds exactly what pic wrote; otherwise nothing is changed and the undo is refused), then the catalog
  rows are restored.

A photo's crop that the user made elsewhere (darktable, Lightroom) is never replaced silently: accept/adjust
answer ``ReviewConflict`` unless the request says ``replace``. All methods are thread-safe (one lock: the
catalog connection is shared by the web server's threads).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pic_plugin.analysis import features
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Box, Ratio, parse_ratio, snap_to_ratio
from pic_plugin.core.suggestion import Alternative, Scorer, Suggestion
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.catalog import Catalog, ImageRecord
from pic_plugin.library.options import SuggestOptions
from pic_plugin.library.scan import iter_images
from pic_plugin.model import scorers

#: Source name of review decisions in ``user_crops``.
SOURCE = "review"
WEIGHT_ACCEPTED = 0.5
WEIGHT_ADJUSTED = 1.0
WEIGHT_REJECTED = 0.0
#: Ratios the page cycles through (R key); the session's own ratio is added when it is not one of them.
RATIO_CYCLE = ("free", "original", "1:1", "4:5", "3:2", "2:3", "16:9")
PAGE_SIZE = 60
MAX_PAGE_SIZE = 200
UNDO_DEPTH = 50


class ReviewError(PicError):
    """A request the review cannot carry out; ``status`` is the HTTP status the server answers with."""

    status = 400


class NotFound(ReviewError):
    status = 404


class ReviewConflict(ReviewError):
    """The photo's state does not allow this (the user's own crop exists, a sidecar changed, nothing to undo)."""

    status = 409


#: ``pic review`` needs only the shared settings (the page asks for the rest).
ReviewOptions = SuggestOptions


@dataclass
class _FileBefore:
    path: Path
    before: bytes | None  # None: the file did not exist
    after_sha: str = ""


@dataclass
class _UndoEntry:
    action: str
    image_id: int
    suggestion_id: int
    status_before: str
    content_key: str
    user_crop_before: dict[str, Any] | None
    files: list[_FileBefore] = field(default_factory=list)
    decision_before: dict[str, Any] | None = None


class ReviewSession:
    def __init__(self, catalog: Catalog, image_ids: Sequence[int], options: ReviewOptions) -> None:
        self.catalog = catalog
        self.options = options
        self.ids: list[int] = list(dict.fromkeys(int(i) for i in image_ids))
        self._allowed = set(self.ids)
        self._ratio: dict[int, str] = {}  # per-photo ratio chosen on the page
        self._decisions: dict[int, dict[str, Any]] = {}  # this run's decisions (the only record without --user)
        self._undo: list[_UndoEntry] = []
        self._scorer: Scorer | None = None
        self.lock = threading.RLock()

    @classmethod
    def for_paths(cls, catalog: Catalog, paths: Iterable[Path], options: ReviewOptions) -> ReviewSession:
        """A session over the catalog's images found under ``paths`` (those with a readable record)."""
        ids = []
        for path in iter_images(list(paths)):
            rec = catalog.image(path)
            if rec is not None and rec.error is None and rec.content_key:
                ids.append(rec.id)
        return cls(catalog, ids, options)

    # --- reading ---

    @property
    def user(self) -> str | None:
        return self.options.user

    def ratios(self) -> list[str]:
        names = list(RATIO_CYCLE)
        if self.options.ratio.name not in names:
            names.insert(0, self.options.ratio.name)
        return names

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "user": self.user,
                "ratio": self.options.ratio.name,
                "ratios": self.ratios(),
                "total": len(self.ids),
                "reviewed": self._reviewed(),
                "page_size": PAGE_SIZE,
                "undo": len(self._undo),
                "learns": self.user is not None,
            }

    def _reviewed(self) -> int:
        """Photos of this review with a decision (at any ratio): one query, however many photos there are."""
        decided = {
            row[0]
            for row in self.catalog.db.execute(
                "SELECT DISTINCT image_id FROM suggestions WHERE user = ? AND status != 'suggested'", [self.user or ""]
            ).fetchall()
        }
        return len(decided & self._allowed)

    def page(self, number: int = 0, size: int = PAGE_SIZE) -> dict[str, Any]:
        """One page of photos (only that page is read from the catalog and serialized)."""
        size = max(1, min(int(size), MAX_PAGE_SIZE))
        number = max(0, int(number))
        with self.lock:
            chunk = self.ids[number * size : (number + 1) * size]
            photos = [self._photo_json(i) for i in chunk]
            return {
                "page": number,
                "page_size": size,
                "total": len(self.ids),
                "pages": (len(self.ids) + size - 1) // size,
                "photos": photos,
                "undo": len(self._undo),
            }

    def photo(self, image_id: int, with_sidecars: bool = True) -> dict[str, Any]:
        """One photo with its suggestion, alternatives, the user's decision and the crops found in its sidecars."""
        with self.lock:
            out = self._photo_json(self._check(image_id))
            if with_sidecars:
                rec = self._record(image_id)
                out["found"] = [
                    {"crop": f.crop.as_list(), "source": f.source, "pic": f.is_pic_suggestion}
                    for f in _find_crops(Path(rec.path), rec.orientation or 1)
                ]
            return out

    def image_file(self, image_id: int) -> tuple[Path, str]:
        """(path, content key) of a photo of this session; NotFound for anything else."""
        with self.lock:
            rec = self._record(self._check(image_id))
            assert rec.content_key is not None
            return Path(rec.path), rec.content_key

    # --- decisions ---

    def accept(self, image_id: int, index: int = 0, replace: bool = False) -> dict[str, Any]:
        """Take the suggestion (``index`` 0) or alternative ``index`` as the user's crop."""
        with self.lock:
            rec, sugg = self._current(image_id)
            crops = [sugg["crop"], *(Box(*a["crop"]) for a in sugg["alternatives"])]
            if not 0 <= index < len(crops):
                raise ReviewError(f"no alternative {index} (this photo has {len(crops)} crops)")
            detail = {"decision": "accepted", "alternative": index, "ratio": sugg["ratio"], "model": sugg["model"]}
            return self._decide(rec, sugg, "accepted", crops[index], WEIGHT_ACCEPTED, detail, replace)

    def adjust(self, image_id: int, crop: Sequence[float], replace: bool = False) -> dict[str, Any]:
        """Record ``crop`` (normalized, displayed frame), snapped to the photo's locked ratio, as the user's crop."""
        with self.lock:
            rec, sugg = self._current(image_id)
            box = _parse_box(crop)
            size = (int(rec.width or 0), int(rec.height or 0))
            ratio = parse_ratio(sugg["ratio"])
            if size[0] > 0 and size[1] > 0:
                box = snap_to_ratio(box, size, ratio)
            detail = {"decision": "adjusted", "ratio": sugg["ratio"], "model": sugg["model"],
                      "suggested": sugg["crop"].as_list()}
            return self._decide(rec, sugg, "adjusted", box, WEIGHT_ADJUSTED, detail, replace)

    def reject(self, image_id: int) -> dict[str, Any]:
        with self.lock:
            rec, sugg = self._current(image_id)
            if sugg["status"] in ("accepted", "adjusted"):
                raise ReviewConflict("this crop is already yours: undo (U) or adjust it instead of rejecting")
            entry = self._undo_entry("reject", rec, sugg)
            written = sugg.get("written") or {}
            if written.get("mode") == "apply" and written.get("darktable") in ("written", "unchanged"):
                # pic batch applied this crop in darktable: demote it to a disabled suggestion. (A crs crop pic
                # applied stays: the crs format has no disabled crop.)
                suggestion = _suggestion_from_row(rec, sugg)
                targets = tuple(t for t in written.get("targets", []) if t in ("pic", "darktable"))
                if targets:
                    entry.files = _snapshot(Path(rec.path), targets)
                    from pic_plugin.editors.sidecars import write_suggestion

                    report = write_suggestion(Path(rec.path), suggestion, rec.orientation or 1, targets=targets,
                                              mode="suggest")
                    self._finish_write(entry, report)
            detail = {"decision": "rejected", "ratio": sugg["ratio"], "model": sugg["model"]}
            return self._record_decision(entry, rec, sugg, "rejected", sugg["crop"], WEIGHT_REJECTED, detail)

    def set_ratio(self, image_id: int, ratio_text: str) -> dict[str, Any]:
        """Show ``image_id`` with a suggestion for another ratio (computed from cached features if needed)."""
        try:
            ratio = parse_ratio(ratio_text)
        except ValueError as exc:
            raise ReviewError(str(exc)) from exc
        with self.lock:
            rec = self._record(self._check(image_id))
            if self.catalog.suggestion(rec.id, self.user, ratio.name) is None:
                self._suggest(rec, ratio)
            self._ratio[rec.id] = ratio.name
            return self.photo(rec.id, with_sidecars=False)

    def undo(self) -> dict[str, Any]:
        """Undo the last decision. ReviewConflict (and nothing changed) if a sidecar was edited since."""
        with self.lock:
            if not self._undo:
                raise ReviewConflict("nothing to undo")
            entry = self._undo[-1]
            changed = [f.path for f in entry.files if _sha(_read(f.path)) != f.after_sha]
            if changed:
                names = ", ".join(p.name for p in changed)
                raise ReviewConflict(f"cannot undo safely: {names} changed since pic wrote it (edited in another "
                                     "program?); nothing was changed")
            for f in entry.files:
                _restore(f)
            self._undo.pop()
            self.catalog.set_suggestion_status(entry.suggestion_id, entry.status_before)
            if self.user is not None:
                prev = entry.user_crop_before
                if prev is None:
                    self.catalog.remove_user_crop(self.user, entry.content_key, SOURCE)
                else:
                    self.catalog.add_user_crop(self.user, entry.content_key, prev["path"], prev["crop"], SOURCE,
                                               weight=float(prev["weight"]), detail=prev["detail"])
            if entry.decision_before is None:
                self._decisions.pop(entry.image_id, None)
            else:
                self._decisions[entry.image_id] = entry.decision_before
            out = self._photo_json(entry.image_id)
            out["undone"] = entry.action
            return out

    # --- internals ---

    def _check(self, image_id: int) -> int:
        if image_id not in self._allowed:
            raise NotFound("no such photo in this review")
        return image_id

    def _record(self, image_id: int) -> ImageRecord:
        rec = self.catalog.image_by_id(image_id)
        if rec is None or not rec.content_key:
            raise NotFound("photo no longer in the catalog")
        return rec

    def _ratio_of(self, image_id: int) -> str:
        return self._ratio.get(image_id, self.options.ratio.name)

    def _current(self, image_id: int) -> tuple[ImageRecord, dict[str, Any]]:
        rec = self._record(self._check(image_id))
        sugg = self.catalog.suggestion(rec.id, self.user, self._ratio_of(rec.id))
        if sugg is None:
            raise ReviewConflict("this photo has no suggestion yet")
        return rec, sugg

    def _scorer_instance(self) -> Scorer:
        if self._scorer is None:
            self._scorer = scorers.load(self.options.scorer, catalog=self.catalog, user=self.user)
        return self._scorer

    def _suggest(self, rec: ImageRecord, ratio: Ratio) -> None:
        assert rec.content_key is not None
        cached = self.catalog.features(rec.content_key, features.FEATURE_VERSION)
        analysis: ImageAnalysis | None = None
        if cached is not None:
            try:
                analysis = ImageAnalysis.from_bytes(cached)
            except (ValueError, KeyError, OSError):
                analysis = None
        if analysis is None or analysis.version != features.FEATURE_VERSION:
            analysis = analyze_with_catalog(Path(rec.path), self.catalog).analysis  # decodes: not cached yet
        s = suggest(analysis, self._scorer_instance(), ratio, self.options.top_k, user=self.user, path=rec.path,
                    user_name=self.user)
        self.catalog.save_suggestion(
            rec.id, self.user, ratio.name, s.model, s.crop, s.score,
            [{"crop": a.crop.as_list(), "score": a.score} for a in s.alternatives], self.options.top_k,
            written={"targets": [], "mode": "apply", "by": "review"}, subject=s.subject, subject_kind=s.subject_kind,
        )

    def _decision(self, rec: ImageRecord) -> dict[str, Any] | None:
        if rec.id in self._decisions:
            return self._decisions[rec.id]
        if self.user is not None and rec.content_key:
            row = self.catalog.user_crop(self.user, rec.content_key, SOURCE)
            if row is not None:
                return {"decision": row["detail"].get("decision", "accepted"), "crop": row["crop"].as_list(),
                        "weight": row["weight"]}
        return None

    def _photo_json(self, image_id: int) -> dict[str, Any]:
        rec = self.catalog.image_by_id(image_id)
        if rec is None:
            return {"id": image_id, "missing": True}
        ratio = self._ratio_of(image_id)
        sugg = self.catalog.suggestion(image_id, self.user, ratio)
        out: dict[str, Any] = {
            "id": rec.id,
            "name": os.path.basename(rec.path),
            "folder": os.path.basename(os.path.dirname(rec.path)),
            "size": [rec.width, rec.height],
            "ratio": ratio,
            "key": rec.content_key,
            "status": sugg["status"] if sugg else "none",
            "crop": sugg["crop"].as_list() if sugg else None,
            "score": round(float(sugg["score"]), 4) if sugg and sugg["score"] is not None else None,
            "alternatives": sugg["alternatives"] if sugg else [],
            "model": sugg["model"] if sugg else None,
            "decision": self._decision(rec),
            # What pic framed (drawn by "show subject"); null when pic saw no subject or the row predates it.
            "subject": sugg["subject"].as_list(4) if sugg and sugg.get("subject") is not None else None,
            "subject_kind": sugg.get("subject_kind") if sugg else None,
        }
        return out

    def _undo_entry(self, action: str, rec: ImageRecord, sugg: dict[str, Any]) -> _UndoEntry:
        assert rec.content_key is not None
        before = self.catalog.user_crop(self.user, rec.content_key, SOURCE) if self.user is not None else None
        return _UndoEntry(action, rec.id, int(sugg["id"]), sugg["status"], rec.content_key, before,
                          decision_before=self._decisions.get(rec.id))

    def _decide(self, rec: ImageRecord, sugg: dict[str, Any], status: str, crop: Box, weight: float,
                detail: dict[str, Any], replace: bool) -> dict[str, Any]:
        if not crop.is_valid():
            raise ReviewError(f"invalid crop {list(crop)}")
        image = Path(rec.path)
        orientation = rec.orientation or 1
        if not replace:
            theirs = self._foreign_crops(rec, image, orientation)
            if theirs:
                raise ReviewConflict(f"this photo already has your own crop ({', '.join(theirs)}): "
                                     "press Shift+Enter to replace it")
        entry = self._undo_entry(status, rec, sugg)
        entry.files = _snapshot(image, self.options.targets)
        from pic_plugin.editors.user_crop import write_user_crop

        size = (int(rec.width), int(rec.height)) if rec.width and rec.height else None
        report = write_user_crop(image, crop, orientation, targets=self.options.targets, size=size, force=True)
        self._finish_write(entry, report)
        out = self._record_decision(entry, rec, sugg, status, crop, weight, detail)
        out["written"] = _written_summary(report)
        return out

    def _foreign_crops(self, rec: ImageRecord, image: Path, orientation: int) -> list[str]:
        """Sources of crops in the sidecars that neither pic nor this review wrote."""
        ours = []
        if rec.id in self._decisions and self._decisions[rec.id].get("crop"):
            ours.append(Box(*self._decisions[rec.id]["crop"]))
        if self.user is not None and rec.content_key:
            row = self.catalog.user_crop(self.user, rec.content_key, SOURCE)
            if row is not None:
                ours.append(row["crop"])
        out = []
        for found in _find_crops(image, orientation):
            if found.is_pic_suggestion or any(_close(found.crop, b) for b in ours):
                continue
            out.append(found.source)
        return sorted(set(out))

    def _finish_write(self, entry: _UndoEntry, report: Any) -> None:
        kept = [t for t, r in report.results.items() if r.status == "kept-user-crop"]
        if not report.ok or kept:
            # Put back what this write changed, then report; the catalog is untouched.
            for f in entry.files:
                if f.path in report.files:
                    f.after_sha = _sha(_read(f.path))
                    _restore(f)
            problems = [f"{t}: {m}" for t, m in report.errors.items()] + [f"{t}: your own crop is kept" for t in kept]
            raise ReviewError("sidecar not written: " + "; ".join(problems))
        written = set(report.files)
        entry.files = [f for f in entry.files if f.path in written]
        for f in entry.files:
            f.after_sha = _sha(_read(f.path))

    def _record_decision(self, entry: _UndoEntry, rec: ImageRecord, sugg: dict[str, Any], status: str, crop: Box,
                         weight: float, detail: dict[str, Any]) -> dict[str, Any]:
        self.catalog.set_suggestion_status(int(sugg["id"]), status)
        if self.user is not None:
            assert rec.content_key is not None
            self.catalog.add_user_crop(self.user, rec.content_key, rec.path, crop, SOURCE, weight=weight,
                                       detail=detail)
        self._decisions[rec.id] = {"decision": status, "crop": crop.as_list(), "weight": weight}
        self._undo.append(entry)
        del self._undo[:-UNDO_DEPTH]
        return self._photo_json(rec.id)


# --- helpers ---------------------------------------------------------------------------------------------------


def _written_summary(report: Any) -> dict[str, Any]:
    """Which sidecar targets a decision wrote, and why the others were not (darktable beside a Lightroom crop it
    imports itself), for the page to say."""
    targets = {t: {"status": r.status, "message": r.message} for t, r in report.results.items()}
    written = [t for t, r in report.results.items() if r.status in ("written", "unchanged")]
    notes = [f"{t}: {r.message}" for t, r in report.results.items() if r.status == "skipped" and r.message]
    return {"targets": targets, "written": written, "notes": notes}


def _find_crops(image: Path, orientation: int) -> list[Any]:
    from pic_plugin.editors.sidecars import find_crops

    return find_crops(image, orientation)


def _sidecar_paths(image: Path, targets: Iterable[str]) -> list[Path]:
    from pic_plugin.editors import crs, darktable

    targets = set(targets)
    paths = []
    if targets & {"pic", "darktable"}:
        paths.append(darktable.sidecar_path(image))
    if "crs" in targets:
        paths.append(crs.sidecar_path(image))
    return list(dict.fromkeys(paths))


def _snapshot(image: Path, targets: Iterable[str]) -> list[_FileBefore]:
    return [_FileBefore(p, _read(p)) for p in _sidecar_paths(image, targets)]


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _sha(data: bytes | None) -> str:
    return "missing" if data is None else hashlib.sha256(data).hexdigest()


def _restore(f: _FileBefore) -> None:
    """Put ``f.before`` back, atomically and only if the file still holds what pic wrote (``f.after_sha``)."""
    from pic_plugin.editors.xmp import read_bytes, write_sidecar_atomic

    data, stamp = read_bytes(f.path)
    if _sha(data) != f.after_sha:
        raise ReviewConflict(f"cannot undo safely: {f.path.name} changed since pic wrote it")
    if f.before is None:
        if data is not None:
            os.unlink(f.path)
        return
    write_sidecar_atomic(f.path, f.before, stamp)


#: How far past the frame a dragged handle may land (float rounding in the page); anything further is refused.
FRAME_SLACK = 1e-3
#: The smallest crop side accepted as a user's crop (1% of the frame): below that it is a slip, not a framing.
MIN_SIDE = 0.01


def _parse_box(values: Sequence[float]) -> Box:
    """Every number checked before it can become training data: finite, inside the frame, a minimum size."""
    try:
        box = Box(*(float(v) for v in values))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ReviewError("a crop is four numbers [left, top, right, bottom] in 0..1") from exc
    if not all(math.isfinite(v) and -FRAME_SLACK <= v <= 1 + FRAME_SLACK for v in box):
        raise ReviewError(f"invalid crop {list(values)}: every number must lie in 0..1")
    box = box.clamped()
    if not box.is_valid() or box.width < MIN_SIDE or box.height < MIN_SIDE:
        raise ReviewError(f"invalid crop {list(values)}")
    return box


def _close(a: Box, b: Box, tol: float = 2e-3) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _suggestion_from_row(rec: ImageRecord, sugg: dict[str, Any]) -> Suggestion:

    return Suggestion(
        path=rec.path,
        crop=sugg["crop"],
        score=float(sugg["score"] or 0.0),
        ratio=sugg["ratio"],
        size=(int(rec.width or 0), int(rec.height or 0)),
        model=sugg["model"],
        user=sugg["user"] or None,
        alternatives=[Alternative(Box(*a["crop"]), float(a["score"])) for a in sugg["alternatives"]],
        created=float(sugg["created"] or 0.0),
        subject=sugg.get("subject"),
        subject_kind=sugg.get("subject_kind"),
    )
